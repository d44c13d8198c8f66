package inputs

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

type tarFile struct {
	name string
	data string
	typ  byte // 0: regular file
}

func tarOf(t *testing.T, files ...tarFile) []byte {
	t.Helper()

	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)

	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}

		hdr := &tar.Header{Name: f.name, Typeflag: typ, Mode: 0o644, Size: int64(len(f.data))}
		if typ != tar.TypeReg {
			hdr.Size = 0
			hdr.Linkname = "elsewhere"
		}

		require.NoError(t, tw.WriteHeader(hdr))

		if typ == tar.TypeReg {
			_, err := tw.Write([]byte(f.data))
			require.NoError(t, err)
		}
	}

	require.NoError(t, tw.Close())

	return buf.Bytes()
}

// layerOf makes a layer of files with the given compression: "gzip", "zstd" or "none".
func layerOf(t *testing.T, comp string, files ...tarFile) v1.Layer {
	t.Helper()

	data := tarOf(t, files...)

	if comp == "none" {
		return static.NewLayer(data, types.OCIUncompressedLayer)
	}

	opts := []tarball.LayerOption{}
	if comp == "zstd" {
		opts = append(opts, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	}

	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, opts...)
	require.NoError(t, err)

	return l
}

// wrongDigest is a layer that claims another digest than its bytes have.
type wrongDigest struct{ v1.Layer }

func (wrongDigest) Digest() (v1.Hash, error) {
	return v1.NewHash("sha256:" + strings.Repeat("0", 64))
}

func TestExtractFiles(t *testing.T) {
	const dir = "usr/install/amd64"

	all := func(prefix, tag string) []tarFile {
		return []tarFile{
			{name: prefix + dir + "/vmlinuz", data: "kernel-" + tag},
			{name: prefix + dir + "/initramfs.xz", data: "initramfs-" + tag},
			{name: prefix + dir + "/other", data: "not wanted"},
			{name: prefix + "usr/install/arm64/vmlinuz", data: "arm kernel"},
		}
	}

	tests := []struct {
		name   string
		layers func(t *testing.T) []v1.Layer
		want   map[string]string
		errHas string
	}{
		{name: "gzip", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{layerOf(t, "gzip", all("", "1")...)}
		}, want: map[string]string{"vmlinuz": "kernel-1", "initramfs.xz": "initramfs-1"}},
		{name: "zstd and ./ names", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{layerOf(t, "zstd", all("./", "z")...)}
		}, want: map[string]string{"vmlinuz": "kernel-z", "initramfs.xz": "initramfs-z"}},
		{name: "uncompressed and absolute names", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{layerOf(t, "none", all("/", "u")...)}
		}, want: map[string]string{"vmlinuz": "kernel-u", "initramfs.xz": "initramfs-u"}},
		{name: "a later layer replaces a file", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: dir + "/vmlinuz", data: "kernel-2"}),
			}
		}, want: map[string]string{"vmlinuz": "kernel-2", "initramfs.xz": "initramfs-1"}},
		{name: "whiteout removes a file", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: dir + "/.wh.vmlinuz"}),
			}
		}, errHas: "image has no vmlinuz in /usr/install/amd64"},
		{name: "whiteout then a new file", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: dir + "/.wh.vmlinuz"}),
				layerOf(t, "gzip", tarFile{name: dir + "/vmlinuz", data: "kernel-3"}),
			}
		}, want: map[string]string{"vmlinuz": "kernel-3", "initramfs.xz": "initramfs-1"}},
		{name: "whiteout of a parent directory", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: "usr/.wh.install"}),
			}
		}, errHas: "image has no vmlinuz, initramfs.xz"},
		{name: "opaque directory hides lower layers", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: "usr/install/.wh..wh..opq"},
					tarFile{name: dir + "/initramfs.xz", data: "initramfs-4"}),
			}
		}, errHas: "image has no vmlinuz in"},
		{name: "whiteout of a sibling changes nothing", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{
				layerOf(t, "gzip", all("", "1")...),
				layerOf(t, "gzip", tarFile{name: dir + "/.wh.other"}, tarFile{name: "usr/install/.wh.arm64"}),
			}
		}, want: map[string]string{"vmlinuz": "kernel-1", "initramfs.xz": "initramfs-1"}},
		{name: "symlink refused", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{layerOf(t, "gzip", tarFile{name: dir + "/vmlinuz", typ: tar.TypeSymlink})}
		}, errHas: "not a regular file"},
		{name: "bytes that do not match the layer digest", layers: func(t *testing.T) []v1.Layer {
			return []v1.Layer{wrongDigest{layerOf(t, "gzip", all("", "1")...)}}
		}, errHas: "digest mismatch"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, tc.layers(t)...)
			require.NoError(t, err)

			out := t.TempDir()

			n, err := extractFiles(img, dir, []string{"vmlinuz", "initramfs.xz"}, out)
			if tc.errHas != "" {
				require.ErrorContains(t, err, tc.errHas)

				return
			}

			require.NoError(t, err)
			require.Positive(t, n)

			entries, err := os.ReadDir(out)
			require.NoError(t, err)
			require.Len(t, entries, len(tc.want), "only wanted files are written")

			for name, data := range tc.want {
				got, err := os.ReadFile(filepath.Join(out, name))
				require.NoError(t, err)
				require.Equal(t, data, string(got))
			}
		})
	}
}

// pushImagerVariant pushes the synthetic imager's amd64 image with extra files layered on top and returns it pinned.
func pushImagerVariant(t *testing.T, reg *testRegistry, files ...tarFile) recipe.Image {
	t.Helper()

	vi, _ := reg.manifest.Version(testVersion)

	src, err := name.NewDigest(reg.addr+"/"+vi.Imager.Repository+"@"+vi.Imager.Platforms["amd64"], name.Insecure)
	require.NoError(t, err)

	base, err := remote.Image(src)
	require.NoError(t, err)

	img, err := mutate.AppendLayers(base, layerOf(t, "gzip", files...))
	require.NoError(t, err)

	const repo = "siderolabs/imager-variant"

	dst, err := name.NewTag(reg.addr+"/"+repo+":test", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(dst, img))

	d, err := img.Digest()
	require.NoError(t, err)

	return recipe.Image{Repository: repo, Digest: d.String()}
}

// TestFetchRefusesOldStub: an imager image with a systemd-stub older than 257 is never stored.
func TestFetchRefusesOldStub(t *testing.T) {
	reg := startRegistry(t)
	p := realParts(t)

	stub := p.File("amd64", "systemd-stub.efi")
	old := bytes.Replace(stub, []byte("LoaderInfo: systemd-stub 257"), []byte("LoaderInfo: systemd-stub 252"), 1)
	require.NotEqual(t, stub, old, "the real stub carries a systemd 257 LoaderInfo marker")

	oldBoot := bytes.ReplaceAll(p.File("amd64", "systemd-boot.efi"),
		[]byte("LoaderInfo: systemd-boot 257"), []byte("LoaderInfo: systemd-boot 252"))

	tests := []struct {
		name   string
		file   tarFile
		errHas []string
	}{
		{name: "stub 252", file: tarFile{name: "usr/install/amd64/systemd-stub.efi", data: string(old)},
			errHas: []string{"refusing the imager's UKI stub", "252", "257", "wipe"}},
		{name: "sd-boot 252", file: tarFile{name: "usr/install/amd64/systemd-boot.efi", data: string(oldBoot)},
			errHas: []string{"refusing the imager's systemd-boot", "252"}},
		{name: "stub not a PE file", file: tarFile{name: "usr/install/amd64/systemd-stub.efi", data: "MZ not really"},
			errHas: []string{"cannot tell its version"}},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), reg.source())
			in := recipe.Inputs{Imager: pushImagerVariant(t, reg, tc.file)}

			_, err := s.Fetch(context.Background(), in, "amd64")
			require.Error(t, err)

			for _, want := range tc.errHas {
				require.ErrorContains(t, err, want)
			}

			require.NoDirExists(t, filepath.Join(s.Dir(), "sha256", strings.TrimPrefix(in.Imager.Digest, "sha256:")))
			requireNoTemp(t, s)
		})
	}

	// The same layering with a 257 stub is accepted: the later layer's file is the one stored.
	s := openStore(t, t.TempDir(), reg.source())
	renamed := bytes.Replace(stub, []byte("257.13-1~deb13u1"), []byte("257.99-1~test001"), 1)
	in := recipe.Inputs{Imager: pushImagerVariant(t, reg, tarFile{name: "usr/install/amd64/systemd-stub.efi", data: string(renamed)})}

	paths, err := s.Fetch(context.Background(), in, "amd64")
	require.NoError(t, err)
	requireSameFile(t, renamed, paths.SDStub)
}

// TestFetchCorruptBlob: bytes altered on the wire are caught, for extracted boot files and for layouts alike.
func TestFetchCorruptBlob(t *testing.T) {
	reg := startRegistry(t)
	vi, _ := reg.manifest.Version(testVersion)

	layerDigest := func(repo, manifest string) string {
		ref, err := name.NewDigest(reg.addr+"/"+repo+"@"+manifest, name.Insecure)
		require.NoError(t, err)

		img, err := remote.Image(ref)
		require.NoError(t, err)

		layers, err := img.Layers()
		require.NoError(t, err)

		d, err := layers[len(layers)-1].Digest()
		require.NoError(t, err)

		return d.String()
	}

	tests := []struct {
		name  string
		in    recipe.Inputs
		layer string
	}{
		{
			name:  "imager layer",
			in:    recipe.Inputs{Imager: recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Digest}},
			layer: layerDigest(vi.Imager.Repository, vi.Imager.Platforms["amd64"]),
		},
		{
			name: "extension layer",
			in: recipe.Inputs{
				Imager:     recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Digest},
				Extensions: []recipe.Image{{Repository: vi.Extensions[0].Repository, Digest: vi.Extensions[0].Digest}},
			},
			layer: layerDigest(vi.Extensions[0].Repository, vi.Extensions[0].Platforms["amd64"]),
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), reg.source())

			reg.corrupt.Store(&tc.layer)
			defer reg.corrupt.Store(nil)

			_, err := s.Fetch(context.Background(), tc.in, "amd64")
			require.Error(t, err)
			require.Regexp(t, "digest mismatch|checksum", err.Error())
			requireNoTemp(t, s)

			// Served correctly again, the same store completes.
			reg.corrupt.Store(nil)

			_, err = s.Fetch(context.Background(), tc.in, "amd64")
			require.NoError(t, err)
		})
	}
}
