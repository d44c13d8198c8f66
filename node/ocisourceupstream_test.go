package node_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatedUpstream is a real registry behind a proxy that answers blob GETs with a chosen status while blobStatus is
// set (HEADs still pass: the upstream knows the blob but will not send it).
type gatedUpstream struct {
	*registryProxy
	blobStatus atomic.Int32
}

func startGatedUpstream(t testing.TB, registry string) *gatedUpstream {
	t.Helper()

	g := &gatedUpstream{}
	g.registryProxy = startRegistryProxy(t, registry, func(w http.ResponseWriter, r *http.Request) bool {
		status := int(g.blobStatus.Load())
		if status == 0 || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}

		answerRegistryError(w, status, "DENIED", "upstream refuses")

		return true
	})

	return g
}

// TestOCISourceBlobUpstreamRefuses: the upstream answers a blob's HEAD (so its size is known) but not its GET
// (rate limited, failing, refusing): the client gets the registry's error envelope naming the upstream failure,
// 503 UNAVAILABLE while the upstream fails and 404 BLOB_UNKNOWN when it says it does not have the blob — never a
// dropped connection.
func TestOCISourceBlobUpstreamRefuses(t *testing.T) {
	up := startGatedUpstream(t, upstream(t))
	n := startReady(t, testConfig(t, t.TempDir(), up.addr))

	blob := imagerLayer(t, &member{running: n, name: "test-node"})
	path := "/v2/siderolabs/imager/blobs/" + blob

	for _, tc := range []struct {
		upstream int
		status   int
		code     string
	}{
		{http.StatusForbidden, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{http.StatusNotFound, http.StatusNotFound, "BLOB_UNKNOWN"},
		{http.StatusTooManyRequests, http.StatusServiceUnavailable, "UNAVAILABLE"}, // after the client's retries
	} {
		t.Run(http.StatusText(tc.upstream), func(t *testing.T) {
			up.blobStatus.Store(int32(tc.upstream))

			resp := n.do(t, "GET", path, "", nil)
			require.Equal(t, tc.status, resp.StatusCode, resp.Body)
			assert.Equal(t, tc.code, registryError(t, resp), resp.Body)
			assert.Contains(t, resp.Body, "upstream", "the message says where it failed")
			assert.False(t, n.HasBlob(blob), "nothing was stored")
		})
	}

	up.blobStatus.Store(0)

	resp := n.do(t, "GET", path, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	assert.Equal(t, blob, "sha256:"+sha256Hex(resp.Body), "served once the upstream sends it")
}

// TestOCISourceManifestDigests: a source manifest asked for by a malformed or unsupported digest is 400
// DIGEST_INVALID, answered without asking the upstream registry.
func TestOCISourceManifestDigests(t *testing.T) {
	up := startGatedUpstream(t, upstream(t))
	n := startReady(t, testConfig(t, t.TempDir(), up.addr))
	id := n.createSchematic(t, `customization: {}`)

	// The node is ready once the catalog is read; the talosctl-all images are read after that, in the same round.
	require.Eventually(t, func() bool { return n.metric(t, "edgefactory_catalog_syncs_total") >= 1 },
		30*time.Second, 20*time.Millisecond, "the first catalog round ends")

	before := len(up.requests("/manifests/"))

	for _, ref := range []string{
		"sha256:xyz",
		"sha256:" + strings.Repeat("AB", 32),
		"sha256:" + strings.Repeat("ab", 31),
		"sha512:" + strings.Repeat("ab", 64),
		"md5:" + strings.Repeat("a", 32),
	} {
		for _, repo := range []string{"/v2/siderolabs/imager", "/v2/siderolabs/installer-base", "/v2/installer/" + id} {
			resp := n.do(t, "GET", repo+"/manifests/"+ref, "", nil)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %s: %s", repo, ref, resp.Body)
			assert.Equal(t, "DIGEST_INVALID", registryError(t, resp), resp.Body)
			assert.Contains(t, resp.Body, "invalid digest", resp.Body)

			head := n.do(t, "HEAD", repo+"/manifests/"+ref, "", nil)
			assert.Equal(t, http.StatusBadRequest, head.StatusCode, "HEAD %s %s", repo, ref)
		}
	}

	assert.Equal(t, before, len(up.requests("/manifests/")), "no bad digest reached the upstream: %v",
		up.requests("/manifests/")[before:])
}

// TestOCISourceLargeManifest: a source manifest larger than 4 MiB (go-containerregistry accepts up to 100 MiB) is
// served whole by tag and by digest, its body hashing to the digest it is served under.
func TestOCISourceLargeManifest(t *testing.T) {
	reg := upstream(t)
	n := startReady(t, testConfig(t, t.TempDir(), reg))

	// An image whose manifest carries a 5 MiB annotation, pushed to the real upstream registry.
	img, ok := mutate.Annotations(empty.Image, map[string]string{"padding": strings.Repeat("x", 5<<20)}).(v1.Image)
	require.True(t, ok)

	raw, err := img.RawManifest()
	require.NoError(t, err)
	require.Greater(t, len(raw), 5<<20)

	digest, err := img.Digest()
	require.NoError(t, err)

	dst, err := name.ParseReference(reg+"/siderolabs/talosctl-all:big", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(dst, img))

	for _, ref := range []string{"big", digest.String()} {
		resp := n.do(t, "GET", "/v2/siderolabs/talosctl-all/manifests/"+ref, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %.200s", ref, resp.Body)
		assert.Equal(t, digest.String(), resp.Header.Get("Docker-Content-Digest"), ref)
		assert.Equal(t, strconv.Itoa(len(raw)), resp.Header.Get("Content-Length"), ref)
		require.Len(t, resp.Body, len(raw), "%s: the whole manifest", ref)
		assert.Equal(t, digest.String(), "sha256:"+sha256Hex(resp.Body), "%s: the body hashes to its digest", ref)
	}
}
