package bundle

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// Two images sharing a layer, one of them a multi-arch index: every blob is stored once, the layout reads back
// with go-containerregistry's layout package, and a rerun fetches nothing.
func TestMirrorSharedLayersStoredOnce(t *testing.T) {
	reg := startRegistry(t, false)

	shared := layer(t, 64<<10)
	amd64 := imageOf(t, shared, layer(t, 32<<10))
	arm64 := imageOf(t, shared, layer(t, 32<<10))
	idx := indexOfImages(t, amd64, arm64)
	single := imageOf(t, shared, layer(t, 16<<10))

	idxDigest := reg.push(t, "apps/one:v1", idx)
	reg.push(t, "apps/two:v2", single)

	want := digestsOf(t, idx, single)

	dir := filepath.Join(t.TempDir(), "bundle")
	opts := Options{
		ExtraImages: []string{"registry.example/apps/one:v1", "registry.example/apps/two:v2"},
		SourceMap:   []string{"registry.example=" + reg.Addr},
		To:          dir,
	}

	res, err := mirrorT(t, opts)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Images)

	got := blobFiles(t, dir)
	assert.Equal(t, want, got, "every blob once, nothing else")

	var total int64
	for _, n := range want {
		total += n
	}

	mf := res.Manifest
	assert.Equal(t, len(want), mf.Blobs)
	assert.Equal(t, total, mf.Bytes)

	gets, _ := reg.counts()
	for d, n := range gets {
		assert.Equal(t, 1, n, "blob %s fetched once", d)
	}

	one, ok := mf.Image("registry.example/apps/one:v1")
	require.True(t, ok)
	assert.Equal(t, idxDigest.String(), one.Digest)
	assert.Equal(t, "registry.example/apps/one", one.Repository)
	assert.Equal(t, "v1", one.Tag)
	assert.Equal(t, RoleExtra, one.Role)
	assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, one.Platforms)

	// The layout reads back with go-containerregistry, under the original references.
	lp, err := layout.FromPath(dir)
	require.NoError(t, err)

	li, err := lp.ImageIndex()
	require.NoError(t, err)

	im, err := li.IndexManifest()
	require.NoError(t, err)

	refs := map[string]string{}
	for _, d := range im.Manifests {
		refs[d.Annotations[AnnotationRefName]] = d.Digest.String()
	}

	assert.Equal(t, map[string]string{
		"registry.example/apps/one:v1": idxDigest.String(),
		"registry.example/apps/two:v2": descOf(t, single).Digest.String(),
	}, refs)

	child, err := li.ImageIndex(idxDigest)
	require.NoError(t, err)

	imgs, err := child.IndexManifest()
	require.NoError(t, err)
	assert.Len(t, imgs.Manifests, 2)

	b, err := Open(dir)
	require.NoError(t, err)
	require.NoError(t, b.Verify(t.Context()))
	require.NoError(t, b.Close())

	// A rerun fetches no blob: everything is there and matches its digest.
	res, err = mirrorT(t, opts)
	require.NoError(t, err)

	gets, ranges := reg.counts()
	assert.Empty(t, gets)
	assert.Empty(t, ranges)
	assert.Zero(t, res.Fetched)
	manifests := descOf(t, idx).Size + descOf(t, amd64).Size + descOf(t, arm64).Size + descOf(t, single).Size
	assert.Equal(t, total-manifests, res.Reused, "every config and layer was there (manifests are not counted)")
	assert.NoDirExists(t, filepath.Join(dir, tmpDir), "a complete run leaves no work files")
}

// Signature tags and referrers travel with their images; signatures are checked with the keys given.
func TestMirrorSignaturesAndReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		name := "referrers API"
		if !api {
			name = "referrers tag fallback"
		}

		t.Run(name, func(t *testing.T) { testSignaturesAndReferrers(t, api) })
	}
}

func testSignaturesAndReferrers(t *testing.T, referrersAPI bool) {
	reg := startRegistry(t, referrersAPI)
	key, other := newKey(t), newKey(t)

	signed := indexOfImages(t, imageOf(t, layer(t, 4096)), imageOf(t, layer(t, 4096)))
	sd := reg.push(t, "rel/signed:v1", signed)
	sigDigest := reg.signImage(t, key, "rel/signed", sd)
	sbom := reg.attach(t, "rel/signed", descOf(t, signed), `{"spdxVersion":"SPDX-2.3"}`)

	reg.push(t, "rel/plain:v1", imageOf(t, layer(t, 4096)))

	origin := "mirror.example"
	base := Options{
		ExtraImages: []string{origin + "/rel/signed:v1", origin + "/rel/plain:v1"},
		SourceMap:   []string{origin + "=" + reg.Addr},
	}

	t.Run("verified", func(t *testing.T) {
		opts := base
		opts.To = filepath.Join(t.TempDir(), "b.tar")
		opts.PublicKeys = [][]byte{key.pem}

		res, err := mirrorT(t, opts)
		require.NoError(t, err)

		keys, err := signing.ParsePublicKeys(opts.PublicKeys...)
		require.NoError(t, err)

		img, ok := res.Manifest.Image(origin + "/rel/signed:v1")
		require.True(t, ok)
		require.Len(t, img.Signatures, 1)
		assert.Equal(t, Signature{Tag: signatureTag(sd), Digest: sigDigest.String(), Size: img.Signatures[0].Size,
			VerifiedWith: []string{keys[0].Fingerprint}}, img.Signatures[0])
		require.Len(t, img.Referrers, 1)
		assert.Equal(t, sbom.String(), img.Referrers[0].Digest)
		assert.Equal(t, "application/vnd.example.sbom.v1+json", img.Referrers[0].ArtifactType)
		assert.Equal(t, []PublicKey{{Fingerprint: keys[0].Fingerprint, PEM: keys[0].PEM}}, res.Manifest.PublicKeys)

		plain, ok := res.Manifest.Image(origin + "/rel/plain:v1")
		require.True(t, ok)
		assert.Empty(t, plain.Signatures, "unsigned, copied all the same")

		b, err := Open(opts.To)
		require.NoError(t, err)

		defer b.Close()

		require.NoError(t, b.Verify(t.Context()))

		refs := map[string]string{}
		for _, d := range b.Index() {
			refs[d.Annotations[AnnotationRefName]] = d.Digest.String()
		}

		assert.Equal(t, sigDigest.String(), refs[origin+"/rel/signed:"+signatureTag(sd)])
		assert.Equal(t, sbom.String(), refs[origin+"/rel/signed@"+sbom.String()])
	})

	t.Run("wrong key", func(t *testing.T) {
		opts := base
		opts.To = t.TempDir()
		opts.PublicKeys = [][]byte{other.pem}

		res, err := mirrorT(t, opts)

		var merr *Error
		require.ErrorAs(t, err, &merr)
		require.Len(t, merr.Failures, 1)
		assert.Equal(t, origin+"/rel/signed:v1", merr.Failures[0].What)
		assert.Contains(t, merr.Failures[0].Error, "does not verify")
		assert.Equal(t, 1, res.Images, "the other image is copied")
		assert.Equal(t, merr.Failures, res.Manifest.Incomplete)

		b, err := Open(opts.To)
		require.NoError(t, err)

		defer b.Close()

		require.NoError(t, b.Verify(t.Context()), "an incomplete directory bundle is consistent")
	})

	t.Run("required", func(t *testing.T) {
		opts := base
		opts.To = t.TempDir()
		opts.PublicKeys = [][]byte{key.pem}
		opts.RequireSignatures = true

		_, err := mirrorT(t, opts)

		var merr *Error
		require.ErrorAs(t, err, &merr)
		require.Len(t, merr.Failures, 1)
		assert.Equal(t, origin+"/rel/plain:v1", merr.Failures[0].What)
		assert.Contains(t, merr.Failures[0].Error, "signatures are required")
	})
}

// A registry target gets every image under its repository path, with signatures and referrers; a rerun sends
// nothing again.
func TestMirrorToRegistry(t *testing.T) {
	src, dst := startRegistry(t, true), startRegistry(t, true)
	key := newKey(t)

	shared := layer(t, 8192)
	idx := indexOfImages(t, imageOf(t, shared, layer(t, 4096)), imageOf(t, shared, layer(t, 4096)))
	d := src.push(t, "siderolabs/imager:v1.13.0", idx)
	sig := src.signImage(t, key, "siderolabs/imager", d)
	sbom := src.attach(t, "siderolabs/imager", descOf(t, idx), "sbom")

	k8s := imageOf(t, shared, layer(t, 2048))
	kd := src.push(t, "registry.k8s.io/kube-apiserver:v1.34.1", k8s)

	opts := Options{
		ExtraImages: []string{"ghcr.io/siderolabs/imager:v1.13.0", "registry.k8s.io/kube-apiserver@" + kd.String()},
		From:        src.Addr + "/siderolabs",
		SourceMap:   []string{"registry.k8s.io=" + src.Addr + "/registry.k8s.io"},
		To:          "docker://" + dst.Addr + "/mirror",
		PublicKeys:  [][]byte{key.pem},
	}

	res, err := mirrorT(t, opts)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Images)

	get := func(s string) v1.Hash {
		t.Helper()

		desc, err := remote.Get(dst.ref(t, s))
		require.NoError(t, err, s)

		return desc.Digest
	}

	assert.Equal(t, d, get("mirror/siderolabs/imager:v1.13.0"))
	assert.Equal(t, sig, get("mirror/siderolabs/imager:"+signatureTag(d)))
	assert.Equal(t, kd, get("mirror/kube-apiserver@"+kd.String()))

	refs, err := remote.Referrers(dst.ref(t, "mirror/siderolabs/imager@"+d.String()).(name.Digest))
	require.NoError(t, err)

	rm, err := refs.IndexManifest()
	require.NoError(t, err)
	require.Len(t, rm.Manifests, 1)
	assert.Equal(t, sbom, rm.Manifests[0].Digest)

	img, err := remote.Image(dst.ref(t, "mirror/kube-apiserver@"+kd.String()))
	require.NoError(t, err)

	ls, err := img.Layers()
	require.NoError(t, err)

	for _, l := range ls {
		rc, err := l.Compressed()
		require.NoError(t, err)
		require.NoError(t, rc.Close())
	}

	src.counts()
	dst.counts()

	res, err = mirrorT(t, opts)
	require.NoError(t, err)

	// The signature's payload is read again to verify it (a registry target keeps nothing between runs); nothing else.
	sigImg, err := remote.Image(src.ref(t, "siderolabs/imager:"+signatureTag(d)))
	require.NoError(t, err)

	payloads, err := sigImg.Layers()
	require.NoError(t, err)

	pd, err := payloads[0].Digest()
	require.NoError(t, err)

	gets, _ := src.counts()
	assert.Equal(t, map[string]int{pd.String(): 1}, gets, "a rerun reads no other blob from the source")
	assert.Zero(t, dst.uploadCount(), "a rerun uploads nothing")
	assert.Positive(t, res.Reused)
}

// An image that cannot be copied is named in the error, with why; the others are copied.
func TestMirrorFailingImageNamed(t *testing.T) {
	reg := startRegistry(t, false)
	reg.push(t, "apps/good:v1", imageOf(t, layer(t, 1024)))
	reg.push(t, "apps/refused:v1", imageOf(t, layer(t, 1024)))

	reg.mu.Lock()
	reg.deny["apps/refused"] = http.StatusForbidden
	reg.mu.Unlock()

	o := func(s string) string { return reg.Addr + "/" + s }
	dir := t.TempDir()

	res, err := mirrorT(t, Options{
		ExtraImages: []string{o("apps/good:v1"), o("apps/refused:v1"), o("apps/good:missing")},
		To:          dir,
	})

	var merr *Error
	require.ErrorAs(t, err, &merr)
	require.Len(t, merr.Failures, 2)
	assert.Equal(t, o("apps/good:missing"), merr.Failures[0].What)
	assert.Contains(t, merr.Failures[0].Error, "MANIFEST_UNKNOWN")
	assert.Equal(t, o("apps/refused:v1"), merr.Failures[1].What)
	assert.Contains(t, merr.Failures[1].Error, "DENIED")
	assert.Contains(t, err.Error(), "2 not copied (1 images copied):\n  "+o("apps/good:missing")+": ")

	assert.Equal(t, 1, res.Images)
	_, ok := res.Manifest.Image(o("apps/good:v1"))
	assert.True(t, ok)

	b, err := Open(dir)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))
	assert.Equal(t, merr.Failures, b.Manifest().Incomplete)
}

// A blob cut off mid-transfer is resumed by the rerun with a range request for the rest.
func TestMirrorResumesPartialBlob(t *testing.T) {
	reg := startRegistry(t, false)
	big := layer(t, 1<<20)
	reg.push(t, "apps/big:v1", imageOf(t, big))

	bd, err := big.Digest()
	require.NoError(t, err)

	size, err := big.Size()
	require.NoError(t, err)

	const cut = 300_000

	opts := Options{ExtraImages: []string{reg.Addr + "/apps/big:v1"}, To: t.TempDir(), Jobs: 1}
	opts.Transport = &cutTransport{next: http.DefaultTransport, digest: bd.String(), after: cut}

	_, err = mirrorT(t, opts)
	require.Error(t, err)

	st, err := os.Stat(filepath.Join(opts.To, tmpDir, bd.Hex+".partial"))
	require.NoError(t, err)
	assert.EqualValues(t, cut, st.Size())

	reg.counts()

	opts.Transport = nil
	_, err = mirrorT(t, opts)
	require.NoError(t, err)

	gets, ranges := reg.counts()
	assert.Zero(t, gets[bd.String()], "not fetched whole again")
	assert.Equal(t, []string{"bytes=300000-" + strconv.FormatInt(size-1, 10)}, ranges[bd.String()])

	b, err := Open(opts.To)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))
}

// cutTransport ends one blob's body with an error after some bytes, once.
type cutTransport struct {
	next   http.RoundTripper
	digest string
	after  int64
	done   bool
}

func (c *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && !c.done && strings.HasSuffix(req.URL.Path, "/blobs/"+c.digest) {
		c.done = true
		resp.Body = &cutBody{ReadCloser: resp.Body, left: c.after}
	}

	return resp, err
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("connection cut by the test")
	}

	if int64(len(p)) > c.left {
		p = p[:c.left]
	}

	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)

	return n, err
}
