package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// testRegistry is go-containerregistry's in-process registry behind a handler that counts requests (blob GETs per
// digest, range requests apart), can refuse repositories, and can simulate an interruption: the blob GET after
// failAfter of them calls interrupt (the mirror's cancel) and never answers.
type testRegistry struct {
	Addr string
	h    http.Handler

	mu        sync.Mutex
	blobGets  map[string]int      // digest → GETs of the whole blob
	ranges    map[string][]string // digest → Range headers of range GETs
	uploads   int                 // blob uploads started (POST …/blobs/uploads/)
	blobTotal int
	failAfter int
	interrupt func()
	deny      map[string]int // repository path → status answered for anything under it
}

func startRegistry(t testing.TB, referrers bool) *testRegistry {
	t.Helper()

	r := &testRegistry{
		h:        registry.New(registry.WithReferrersSupport(referrers), registry.Logger(nopLogger())),
		blobGets: map[string]int{}, ranges: map[string][]string{}, deny: map[string]int{},
	}

	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	r.Addr = strings.TrimPrefix(srv.URL, "http://")

	return r
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path

	r.mu.Lock()

	for repo, status := range r.deny {
		if strings.HasPrefix(p, "/v2/"+repo+"/") {
			r.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"refused by the test"}]}`))

			return
		}
	}

	if req.Method == http.MethodPost && strings.HasSuffix(p, "/blobs/uploads/") {
		r.uploads++
	}

	if m := blobPath.FindStringSubmatch(p); m != nil && req.Method == http.MethodGet {
		d := m[1]
		r.blobTotal++

		if r.failAfter > 0 && r.blobTotal > r.failAfter {
			interrupt := r.interrupt
			r.mu.Unlock()

			interrupt()
			<-req.Context().Done()

			return
		}

		if rng := req.Header.Get("Range"); rng != "" {
			r.ranges[d] = append(r.ranges[d], rng)
		} else {
			r.blobGets[d]++
		}
	}

	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

// counts returns the blob GETs per digest so far and resets them.
func (r *testRegistry) counts() (map[string]int, map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()

	gets, ranges := r.blobGets, r.ranges
	r.blobGets, r.ranges, r.blobTotal, r.uploads = map[string]int{}, map[string][]string{}, 0, 0

	return gets, ranges
}

func (r *testRegistry) setFail(after int, interrupt func()) {
	r.mu.Lock()
	defer r.mu.Unlock()

	r.failAfter, r.interrupt = after, interrupt
}

func (r *testRegistry) uploadCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()

	return r.uploads
}

func (r *testRegistry) ref(t testing.TB, s string) name.Reference {
	t.Helper()

	ref, err := name.ParseReference(r.Addr + "/" + s)
	require.NoError(t, err)

	return ref
}

// push writes an image or index under repo:tag of the registry.
func (r *testRegistry) push(t testing.TB, s string, img any) v1.Hash {
	t.Helper()

	ref := r.ref(t, s)

	switch x := img.(type) {
	case v1.ImageIndex:
		require.NoError(t, remote.WriteIndex(ref, x))

		d, err := x.Digest()
		require.NoError(t, err)

		return d
	case v1.Image:
		require.NoError(t, remote.Write(ref, x))

		d, err := x.Digest()
		require.NoError(t, err)

		return d
	default:
		t.Fatalf("push %T", img)

		return v1.Hash{}
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// layer is a random gzip layer.
func layer(t testing.TB, size int64) v1.Layer {
	t.Helper()

	l, err := random.Layer(size, types.OCILayer)
	require.NoError(t, err)

	return l
}

// imageOf is an OCI image of the layers.
func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()

	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	require.NoError(t, err)

	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)

	return img
}

// indexOfImages is a linux/amd64 + linux/arm64 index of two images.
func indexOfImages(t testing.TB, amd64, arm64 v1.Image) v1.ImageIndex {
	t.Helper()

	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
}

// testKey is an ECDSA P-256 key and its public PEM.
type testKey struct {
	priv *ecdsa.PrivateKey
	pem  []byte
}

func newKey(t testing.TB) testKey {
	t.Helper()

	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)

	return testKey{priv: k, pem: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

// payloadFor is a cosign simple-signing payload naming a digest.
func payloadFor(t testing.TB, repo, d string) []byte {
	t.Helper()

	p, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": repo},
			"image":    map[string]string{"docker-manifest-digest": d},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	require.NoError(t, err)

	return p
}

func (k testKey) sign(t testing.TB, payload []byte) string {
	t.Helper()

	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	require.NoError(t, err)

	return base64.StdEncoding.EncodeToString(sig)
}

// signImage pushes a cosign signature of repo@d, signed with k, at repo:sha256-<hex>.sig.
func (r *testRegistry) signImage(t testing.TB, k testKey, repo string, d v1.Hash) v1.Hash {
	t.Helper()

	payload := payloadFor(t, r.Addr+"/"+repo, d.String())
	l := static.NewLayer(payload, signing.MediaTypeCosignSimpleSigning)

	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       l,
		Annotations: map[string]string{signing.AnnotationCosignSignature: k.sign(t, payload)},
	})
	require.NoError(t, err)

	return r.push(t, repo+":"+signatureTag(d), img)
}

// attach pushes an SBOM stand-in whose subject is repo@d, by digest.
func (r *testRegistry) attach(t testing.TB, repo string, subject v1.Descriptor, content string) v1.Hash {
	t.Helper()

	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: static.NewLayer([]byte(content), "application/spdx+json")})
	require.NoError(t, err)

	img = mutate.ConfigMediaType(img, "application/vnd.example.sbom.v1+json")
	img = mutate.Subject(img, subject).(v1.Image)

	d, err := img.Digest()
	require.NoError(t, err)

	require.NoError(t, remote.Write(r.ref(t, repo+"@"+d.String()), img))

	return d
}

// descOf is an image or index's descriptor.
func descOf(t testing.TB, x interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
},
) v1.Descriptor {
	t.Helper()

	d, err := x.Digest()
	require.NoError(t, err)

	n, err := x.Size()
	require.NoError(t, err)

	mt, err := x.MediaType()
	require.NoError(t, err)

	return v1.Descriptor{Digest: d, Size: n, MediaType: mt}
}

// mirrorT runs Mirror for the test.
func mirrorT(t testing.TB, opts Options) (*Result, error) {
	t.Helper()

	return Mirror(t.Context(), opts)
}

// blobFiles lists the digests under a layout directory's blobs.
func blobFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()

	entries, err := os.ReadDir(filepath.Join(dir, BlobsDir))
	require.NoError(t, err)

	out := map[string]int64{}

	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)

		out["sha256:"+e.Name()] = info.Size()
	}

	return out
}

// digestsOf lists every blob of images and indexes (manifests, configs, layers), each once.
func digestsOf(t testing.TB, xs ...any) map[string]int64 {
	t.Helper()

	out := map[string]int64{}

	addImage := func(img v1.Image) {
		desc := descOf(t, img)
		out[desc.Digest.String()] = desc.Size

		cd, err := img.ConfigName()
		require.NoError(t, err)

		raw, err := img.RawConfigFile()
		require.NoError(t, err)

		out[cd.String()] = int64(len(raw))

		ls, err := img.Layers()
		require.NoError(t, err)

		for _, l := range ls {
			d, err := l.Digest()
			require.NoError(t, err)

			n, err := l.Size()
			require.NoError(t, err)

			out[d.String()] = n
		}
	}

	for _, x := range xs {
		switch v := x.(type) {
		case v1.Image:
			addImage(v)
		case v1.ImageIndex:
			desc := descOf(t, v)
			out[desc.Digest.String()] = desc.Size

			im, err := v.IndexManifest()
			require.NoError(t, err)

			for _, m := range im.Manifests {
				img, err := v.Image(m.Digest)
				require.NoError(t, err)
				addImage(img)
			}
		}
	}

	return out
}
