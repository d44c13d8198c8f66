package inspect

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"
)

type tarFile struct {
	name string
	dir  bool
	data string
}

func layerOf(t *testing.T, files ...tarFile) v1.Layer {
	t.Helper()

	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}

		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write([]byte(f.data))
		require.NoError(t, err)
	}

	require.NoError(t, tw.Close())

	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	require.NoError(t, err)

	return l
}

// installerTarball writes an installer like the imager's: the installer-base layer plus the artifacts layer.
func installerTarball(t *testing.T) string {
	t.Helper()

	img, err := mutate.AppendLayers(empty.Image,
		layerOf(t, tarFile{name: "usr/", dir: true}, tarFile{name: "usr/bin/", dir: true},
			tarFile{name: "usr/bin/installer", data: "#!/bin/sh\n"}),
		layerOf(t, tarFile{name: "usr/install/amd64/", dir: true},
			tarFile{name: "usr/install/amd64/vmlinuz.efi", data: "MZ uki"},
			tarFile{name: "usr/install/amd64/systemd-boot.efi", data: "MZ sd-boot"}),
	)
	require.NoError(t, err)

	cfg, err := img.ConfigFile()
	require.NoError(t, err)

	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{"/usr/bin/installer"}

	img, err = mutate.ConfigFile(img, cfg)
	require.NoError(t, err)

	path := filepath.Join(t.TempDir(), "installer-amd64.tar")
	require.NoError(t, tarball.WriteToFile(path, name.MustParseReference("ghcr.io/siderolabs/installer-base:v1.13.0"), img))

	return path
}

func TestInstallerTar(t *testing.T) {
	rep, err := InstallerTar(installerTarball(t))
	require.NoError(t, err)

	require.Equal(t, []string{"ghcr.io/siderolabs/installer-base:v1.13.0"}, rep.Tags)
	require.Equal(t, "linux", rep.OS)
	require.Equal(t, "amd64", rep.Architecture)
	require.Equal(t, []string{"/usr/bin/installer"}, rep.Entrypoint)
	require.Len(t, rep.Layers, 2)

	require.Equal(t, []string{"usr/bin/installer"}, rep.Layers[0].Files)
	require.Equal(t, []string{"usr", "usr/bin"}, rep.Layers[0].Dirs)
	require.True(t, rep.Layers[1].HasOnly("usr/install/amd64/vmlinuz.efi", "usr/install/amd64/systemd-boot.efi"))
	require.False(t, rep.Layers[1].HasOnly("usr/install/amd64/vmlinuz.efi"))
	require.True(t, strings.HasPrefix(rep.Layers[1].DiffID, "sha256:"))
	require.NotZero(t, rep.Layers[1].Size)
}

// rewriteTar copies a tar, passing each member's content through edit.
func rewriteTar(t *testing.T, path string, edit func(name string, data []byte) []byte) string {
	t.Helper()

	in, err := os.Open(path)
	require.NoError(t, err)
	defer in.Close()

	var out bytes.Buffer

	tr, tw := tar.NewReader(in), tar.NewWriter(&out)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)

		data = edit(h.Name, data)
		h.Size = int64(len(data))
		require.NoError(t, tw.WriteHeader(h))
		_, err = tw.Write(data)
		require.NoError(t, err)
	}

	require.NoError(t, tw.Close())

	p := filepath.Join(t.TempDir(), "edited.tar")
	require.NoError(t, os.WriteFile(p, out.Bytes(), 0o644))

	return p
}

func TestInstallerTarRejectsCorruption(t *testing.T) {
	good := installerTarball(t)
	data, err := os.ReadFile(good)
	require.NoError(t, err)

	truncated := filepath.Join(t.TempDir(), "truncated.tar")
	require.NoError(t, os.WriteFile(truncated, data[:len(data)-3000], 0o644))

	notTar := filepath.Join(t.TempDir(), "random.tar")
	require.NoError(t, os.WriteFile(notTar, randomBytes(4096, 12), 0o644))

	// Swap the two layers' blobs: each still decompresses, but no longer matches its diff ID.
	var blobs []string

	tr := tar.NewReader(bytes.NewReader(data))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if strings.HasSuffix(h.Name, ".tar.gz") {
			blobs = append(blobs, h.Name)
		}
	}

	require.Len(t, blobs, 2)

	contents := map[string][]byte{}
	_ = rewriteTar(t, good, func(name string, d []byte) []byte { contents[name] = d; return d })
	swapped := rewriteTar(t, good, func(name string, d []byte) []byte {
		switch name {
		case blobs[0]:
			return contents[blobs[1]]
		case blobs[1]:
			return contents[blobs[0]]
		}

		return d
	})

	config := rewriteTar(t, good, func(name string, d []byte) []byte {
		if strings.HasPrefix(name, "sha256:") {
			return bytes.Replace(d, []byte(`"amd64"`), []byte(`"arm64"`), 1)
		}

		return d
	})

	// Reorder manifest.json's layers: names match contents, but contents no longer match the config's diff IDs.
	reordered := rewriteTar(t, good, func(name string, d []byte) []byte {
		if name == "manifest.json" {
			d = bytes.Replace(d, []byte(blobs[0]), []byte("@"), 1)
			d = bytes.Replace(d, []byte(blobs[1]), []byte(blobs[0]), 1)
			d = bytes.Replace(d, []byte("@"), []byte(blobs[1]), 1)
		}

		return d
	})

	for _, tc := range []struct {
		name    string
		path    string
		is      error
		message string
	}{
		{"swapped layer blobs", swapped, ErrMalformed, "its name says otherwise"},
		{"reordered layers", reordered, ErrMalformed, "diff ID"},
		{"edited config", config, ErrMalformed, "config digest"},
		{"truncated", truncated, nil, "installer tarball"},
		{"not a tar", notTar, nil, "manifest.json"},
		{"missing", filepath.Join(t.TempDir(), "nope.tar"), os.ErrNotExist, "nope.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := InstallerTar(tc.path)
			require.Error(t, err)
			t.Log(err)

			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}

			require.Contains(t, err.Error(), tc.message)
		})
	}
}
