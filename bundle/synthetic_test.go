package bundle

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// startSynthetic pushes the synthetic release (stand-in parts unless given) into a counting registry.
func startSynthetic(t testing.TB, parts *synthetic.Parts, versions ...string) (*testRegistry, *synthetic.Manifest) {
	t.Helper()

	if parts == nil {
		parts = synthetic.StandInParts()
	}

	reg := startRegistry(t, false)

	m, err := synthetic.Push(t.Context(), reg.Addr, synthetic.Options{Parts: parts, Versions: versions, Insecure: true})
	require.NoError(t, err)

	reg.counts()

	return reg, m
}

// byRole lists the references of a bundle's images of a role.
func byRole(mf *Manifest, role Role) []string {
	var out []string

	for _, im := range mf.Images {
		if im.Role == role {
			out = append(out, im.Reference)
		}
	}

	return out
}

// A semver range over the published versions, and --extensions by name, into a tar read back with Open.
func TestMirrorVersionRangeAndSelection(t *testing.T) {
	reg, rel := startSynthetic(t, nil, "v1.11.0", "v1.12.0", "v1.13.0")

	to := filepath.Join(t.TempDir(), "release.tar")

	res, err := mirrorT(t, Options{
		From:       reg.Addr + "/siderolabs",
		Versions:   ">=v1.12.0",
		Extensions: []string{"hello-world-service"},
		Overlays:   []string{"all"},
		Talosctl:   true,
		To:         to,
	})
	require.NoError(t, err)

	mf := res.Manifest
	assert.Equal(t, []string{"v1.12.0", "v1.13.0"}, mf.Versions)
	assert.Equal(t, []string{"ghcr.io/siderolabs/imager:v1.12.0", "ghcr.io/siderolabs/imager:v1.13.0"}, byRole(mf, RoleImager))
	assert.Equal(t, []string{"ghcr.io/siderolabs/installer-base:v1.12.0", "ghcr.io/siderolabs/installer-base:v1.13.0"},
		byRole(mf, RoleInstallerBase))
	assert.Equal(t, []string{"ghcr.io/siderolabs/extensions:v1.12.0", "ghcr.io/siderolabs/extensions:v1.13.0"},
		byRole(mf, RoleExtensions))
	assert.Equal(t, []string{"ghcr.io/siderolabs/overlays:v1.12.0", "ghcr.io/siderolabs/overlays:v1.13.0"},
		byRole(mf, RoleOverlays))
	assert.Equal(t, []string{"ghcr.io/siderolabs/talosctl-all:v1.12.0", "ghcr.io/siderolabs/talosctl-all:v1.13.0"},
		byRole(mf, RoleTalosctlAll))
	assert.Equal(t, []string{"ghcr.io/siderolabs/hello-world-service:v1.12.0", "ghcr.io/siderolabs/hello-world-service:v1.13.0"},
		byRole(mf, RoleExtension), "only the extension asked for")
	assert.Equal(t, []string{"ghcr.io/siderolabs/sbc-raspberrypi:v0.1.7"}, byRole(mf, RoleOverlay))

	v13, _ := rel.Version("v1.13.0")
	imager, ok := mf.Image("ghcr.io/siderolabs/imager:v1.13.0")
	require.True(t, ok)
	assert.Equal(t, v13.Imager.Digest, imager.Digest)
	assert.Equal(t, []string{"v1.13.0"}, imager.Versions)
	assert.Greater(t, imager.TotalBytes, imager.Size)

	overlay, _ := mf.Image("ghcr.io/siderolabs/sbc-raspberrypi:v0.1.7")
	assert.Equal(t, []string{"v1.12.0", "v1.13.0"}, overlay.Versions, "one image serving both versions")

	assert.NoDirExists(t, to+".partial", "the work directory goes once the tar is written")

	b, err := Open(to)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))
	assert.Equal(t, mf.Images, b.Images())

	// Blobs read in place, by digest.
	rc, n, err := b.Blob(imager.Digest)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	assert.Equal(t, imager.Size, n)

	t.Run("unknown extension", func(t *testing.T) {
		res, err := mirrorT(t, Options{
			From: reg.Addr + "/siderolabs", Versions: "v1.13.0", Extensions: []string{"hello-world-service", "nope"},
			To: t.TempDir(),
		})

		var merr *Error
		require.ErrorAs(t, err, &merr)
		assert.Equal(t, []Failure{{What: "v1.13.0 extension nope", Error: "not in the extensions catalog of v1.13.0"}},
			merr.Failures)
		assert.Equal(t, []string{"ghcr.io/siderolabs/hello-world-service:v1.13.0"}, byRole(res.Manifest, RoleExtension))
	})

	t.Run("no version in range", func(t *testing.T) {
		_, err := mirrorT(t, Options{From: reg.Addr + "/siderolabs", Versions: ">=v2.0.0", To: t.TempDir()})

		var merr *Error
		require.ErrorAs(t, err, &merr)
		assert.Contains(t, merr.Failures[0].Error, "no version of "+reg.Addr+"/siderolabs/imager matches")
	})
}

// syntheticOpts mirror every part of the (stand-in) release.
func syntheticOpts(reg *testRegistry, to string) Options {
	return Options{
		From: reg.Addr + "/siderolabs", Versions: "v1.12.0,v1.13.0", Extensions: []string{"all"},
		Overlays: []string{"all"}, Talosctl: true, To: to,
	}
}

// The done-when case: a mirror into a tar interrupted halfway, then rerun, fetches no blob twice (counted at the
// source registry), and yields the same bundle as an uninterrupted run.
func TestMirrorInterruptedRerunFetchesNoBlobTwice(t *testing.T) {
	reg, _ := startSynthetic(t, nil)

	// An uninterrupted run, for reference: how many blob reads a whole mirror makes.
	ref, err := mirrorT(t, syntheticOpts(reg, t.TempDir()))
	require.NoError(t, err)

	whole, _ := reg.counts()

	total := 0
	for _, n := range whole {
		total += n
	}

	require.Greater(t, total, 20)

	to := filepath.Join(t.TempDir(), "release.tar")
	opts := syntheticOpts(reg, to)
	opts.Jobs = 1 // no other blob in flight when the interruption comes: each read is whole, or never answered

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	reg.setFail(total/2, cancel)

	_, err = Mirror(ctx, opts)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "rerun to resume")
	assert.NoFileExists(t, to)
	assert.DirExists(t, to+".partial")

	reg.setFail(0, nil)
	first, _ := reg.counts()

	res, err := mirrorT(t, opts)
	require.NoError(t, err)

	second, ranges := reg.counts()
	assert.Empty(t, ranges)

	fetched := map[string]int{}

	for d, n := range first {
		fetched[d] += n
	}

	for d, n := range second {
		fetched[d] += n
	}

	for d, n := range fetched {
		assert.Equal(t, 1, n, "blob %s fetched %d times", d, n)
	}

	assert.Len(t, fetched, total, "every blob fetched once in all")
	assert.NotEmpty(t, first)
	assert.NotEmpty(t, second)
	assert.Positive(t, res.Reused)

	assert.Equal(t, ref.Manifest.Blobs, res.Manifest.Blobs)
	assert.Equal(t, ref.Manifest.Bytes, res.Manifest.Bytes)
	assert.Equal(t, ref.Manifest.Images, res.Manifest.Images)

	b, err := Open(to)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))

	// A third run over the complete tar fetches nothing: its blobs come from the tar itself.
	res, err = mirrorT(t, opts)
	require.NoError(t, err)

	third, _ := reg.counts()
	assert.Empty(t, third)
	assert.Zero(t, res.Fetched)
}

// A blob of the work directory whose bytes do not match its digest is fetched again; the others are not.
func TestMirrorCorruptBlobFetchedAgain(t *testing.T) {
	reg, _ := startSynthetic(t, nil)

	to := filepath.Join(t.TempDir(), "release.tar")
	opts := syntheticOpts(reg, to)
	opts.Jobs = 1

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	reg.setFail(25, cancel)

	_, err := Mirror(ctx, opts)
	require.ErrorIs(t, err, context.Canceled)

	reg.setFail(0, nil)
	first, _ := reg.counts()

	// Damage the largest blob fetched so far, keeping its size.
	var victim string

	var size int64

	for d, n := range blobFiles(t, to+".partial") {
		if first[d] > 0 && n > size {
			victim, size = d, n
		}
	}

	require.NotEmpty(t, victim)

	p := filepath.Join(to+".partial", BlobsDir, victim[len("sha256:"):])
	data, err := os.ReadFile(p)
	require.NoError(t, err)

	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(p, data, 0o644))

	_, err = mirrorT(t, opts)
	require.NoError(t, err)

	second, _ := reg.counts()
	assert.Equal(t, 1, second[victim], "the damaged blob is fetched again")

	for d := range first {
		if d != victim {
			assert.Zero(t, second[d], "blob %s was whole: not fetched again", d)
		}
	}

	b, err := Open(to)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))
}

// realParts are the synthetic release's real parts (`make deps`); the test is skipped without them.
func realParts(t testing.TB) *synthetic.Parts {
	t.Helper()

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("synthetic release parts missing (%v): run `make deps`", parts.Missing())
	}

	return parts
}

// syntheticSourceMap reads the cluster images of the synthetic release where it keeps them: under their original
// names, as repository paths of the synthetic registry.
func syntheticSourceMap(reg *testRegistry) []string {
	return []string{"registry.k8s.io=" + reg.Addr + "/registry.k8s.io", "gcr.io=" + reg.Addr + "/gcr.io"}
}

// The real synthetic release (two versions, signed, with extensions, overlays, talosctl-all and the cluster images
// its stand-in `talosctl images default` lists), mirrored into a tar with every signature verified.
func TestMirrorSyntheticRelease(t *testing.T) {
	reg, rel := startSynthetic(t, realParts(t))

	to := filepath.Join(t.TempDir(), "release.tar")
	opts := syntheticOpts(reg, to)
	opts.ClusterImages = true
	opts.SourceMap = syntheticSourceMap(reg)
	opts.PublicKeys = [][]byte{synthetic.PublicKeyPEM()}
	opts.RequireSignatures = true

	res, err := mirrorT(t, opts)
	require.NoError(t, err)

	keys, err := signing.ParsePublicKeys(opts.PublicKeys...)
	require.NoError(t, err)

	type signed struct{ digest, signature string }

	want := map[string]signed{} // original reference → digests of the image and its signature

	for _, p := range rel.Images() {
		want[synthetic.UpstreamName(p.Repository)+":"+p.Tag] = signed{p.Digest, p.Signature.Digest}
	}

	got := map[string]signed{}

	for _, im := range res.Manifest.Images {
		if assert.Len(t, im.Signatures, 1, im.Reference) {
			s := im.Signatures[0]
			got[im.Reference] = signed{im.Digest, s.Digest}
			assert.Equal(t, []string{keys[0].Fingerprint}, s.VerifiedWith, "%s: signature verified", im.Reference)
		}
	}

	assert.Equal(t, want, got, "every image of the release under its original name, with its signature")
	assert.Equal(t, []PublicKey{{Fingerprint: keys[0].Fingerprint, PEM: keys[0].PEM}}, res.Manifest.PublicKeys)

	for _, v := range []string{"v1.12.0", "v1.13.0"} {
		for _, c := range []string{"imager", "installer-base", "extensions", "overlays", "talosctl-all"} {
			im, ok := res.Manifest.Image("ghcr.io/siderolabs/" + c + ":" + v)
			if assert.True(t, ok, c+":"+v) {
				assert.True(t, slices.Contains(im.Versions, v))
			}
		}

		for _, ref := range synthetic.ClusterImageList(synthetic.DefaultNamespace, v) {
			im, ok := res.Manifest.Image(ref)
			if assert.True(t, ok, ref) {
				assert.Equal(t, RoleCluster, im.Role, ref)
				assert.Contains(t, im.Versions, v, ref)
			}
		}
	}

	b, err := Open(to)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))

	var unique int64
	for _, bi := range b.Blobs() {
		unique += bi.Size
	}

	assert.Equal(t, res.Manifest.Bytes, unique, "every blob stored once")
	assert.Equal(t, res.Manifest.Blobs, len(b.Blobs()))
}
