package bundle

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ipxeDir writes three iPXE binaries (random bytes of different sizes) and a VERSION file; it returns the directory
// and each file's digest by name.
func ipxeDir(t *testing.T) (string, map[string]string) {
	t.Helper()

	dir := t.TempDir()
	digests := map[string]string{}

	for i, name := range []string{"undionly.kpxe", "ipxe.efi", "ipxe-arm64.efi"} {
		data := make([]byte, 70_000+i*1000)
		_, err := rand.Read(data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))

		sum := sha256.Sum256(data)
		digests[name] = "sha256:" + hex.EncodeToString(sum[:])
	}

	require.NoError(t, os.WriteFile(filepath.Join(dir, "VERSION"), []byte("trixie all ipxe 1.0-test\n"), 0o644))

	return dir, digests
}

// TestMirrorIPXE: with IPXEDir a directory bundle and a tar bundle carry the three binaries as blobs, bundle.json
// lists them (with the VERSION text) apart from the images, whose counts they do not change; the bundle verifies
// and reads them back byte for byte; a rerun copies nothing again.
func TestMirrorIPXE(t *testing.T) {
	reg := startRegistry(t, false)
	reg.push(t, "apps/one:v1", imageOf(t, layer(t, 16<<10)))

	src, digests := ipxeDir(t)

	for _, target := range []string{"bundle", "bundle.tar"} {
		t.Run(target, func(t *testing.T) {
			to := filepath.Join(t.TempDir(), target)
			opts := Options{ExtraImages: []string{"registry.example/apps/one:v1"},
				SourceMap: []string{"registry.example=" + reg.Addr}, To: to, IPXEDir: src}

			res, err := mirrorT(t, opts)
			require.NoError(t, err)

			x := res.Manifest.IPXE
			require.NotNil(t, x, "bundle.json lists the iPXE binaries")
			assert.Equal(t, "trixie all ipxe 1.0-test", x.Source)
			require.Len(t, x.Files, 3)

			var total int64

			for _, f := range x.Files {
				assert.Equal(t, digests[f.Name], f.Digest, f.Name)
				total += f.Size
			}

			assert.Equal(t, total, res.Copied, "every binary copied once")
			assert.Contains(t, res.Summary(), "the iPXE binaries (3 files")

			b, err := Open(to)
			require.NoError(t, err)

			defer b.Close()

			require.NoError(t, b.Verify(t.Context()))
			assert.Equal(t, x, b.Manifest().IPXE, "bundle.json as written")
			assert.Len(t, b.Blobs(), res.Manifest.Blobs+3, "the binaries are blobs beside the images'")

			for _, f := range x.Files {
				rc, n, err := b.Blob(f.Digest)
				require.NoError(t, err, f.Name)

				got, err := io.ReadAll(rc)
				rc.Close()
				require.NoError(t, err)

				want, err := os.ReadFile(filepath.Join(src, f.Name))
				require.NoError(t, err)
				assert.Equal(t, want, got, f.Name)
				assert.Equal(t, f.Size, n)
			}

			for _, d := range b.Index() {
				assert.NotContains(t, digests, d.Annotations[AnnotationRefName], "not in index.json")
			}

			again, err := mirrorT(t, opts)
			require.NoError(t, err)
			assert.Zero(t, again.Copied, "a rerun copies no binary again")
			assert.GreaterOrEqual(t, again.Reused, total, "it reuses them")
			assert.Equal(t, x.Files, again.Manifest.IPXE.Files)
		})
	}
}

// TestMirrorIPXERefused: a directory lacking a binary is named before anything is fetched, a registry target refuses
// the binaries, and a bundle whose bundle.json lists a binary it does not hold does not verify.
func TestMirrorIPXERefused(t *testing.T) {
	reg := startRegistry(t, false)
	reg.push(t, "apps/one:v1", imageOf(t, layer(t, 4096)))

	src, digests := ipxeDir(t)
	opts := Options{ExtraImages: []string{"registry.example/apps/one:v1"},
		SourceMap: []string{"registry.example=" + reg.Addr}, IPXEDir: src}

	toRegistry := opts
	toRegistry.To = "docker://" + reg.Addr + "/mirror"
	reg.counts()

	_, err := mirrorT(t, toRegistry)
	require.ErrorContains(t, err, "--ipxe-dir")
	require.ErrorContains(t, err, "a registry has no place for loose files")
	assert.Zero(t, reg.uploadCount(), "nothing pushed")

	dir := filepath.Join(t.TempDir(), "bundle")
	toDir := opts
	toDir.To = dir

	_, err = mirrorT(t, toDir)
	require.NoError(t, err)

	require.NoError(t, os.Remove(filepath.Join(dir, BlobsDir, strings.TrimPrefix(digests["ipxe.efi"], "sha256:"))))

	b, err := Open(dir)
	require.NoError(t, err)
	require.ErrorContains(t, b.Verify(t.Context()), "iPXE binary ipxe.efi")
	b.Close()

	require.NoError(t, os.Remove(filepath.Join(src, "ipxe-arm64.efi")))
	reg.counts()

	_, err = mirrorT(t, toDir)
	require.ErrorContains(t, err, "ipxe-arm64.efi is missing")

	gets, _ := reg.counts()
	assert.Empty(t, gets, "refused before anything is fetched")
}

// TestReadBundleWithoutIPXE: a bundle.json without the ipxe field (every bundle before it) still reads, and says it
// carries no binaries.
func TestReadBundleWithoutIPXE(t *testing.T) {
	reg := startRegistry(t, false)
	reg.push(t, "apps/one:v1", imageOf(t, layer(t, 4096)))

	dir := filepath.Join(t.TempDir(), "bundle")
	_, err := mirrorT(t, Options{ExtraImages: []string{"registry.example/apps/one:v1"},
		SourceMap: []string{"registry.example=" + reg.Addr}, To: dir})
	require.NoError(t, err)

	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	require.NoError(t, err)

	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &fields))
	assert.NotContains(t, fields, "ipxe", "no field when no binaries")

	b, err := Open(dir)
	require.NoError(t, err)

	defer b.Close()

	assert.Nil(t, b.Manifest().IPXE)
	require.NoError(t, b.Verify(t.Context()))
}
