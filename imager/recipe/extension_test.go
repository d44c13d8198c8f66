package recipe_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/archiver"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

const author = "Image Factory (https://factory.example)"

func schematicExtension(t *testing.T, yaml, author, version string) ([]byte, parsed) {
	t.Helper()

	p := parseSchematic(t, yaml)

	var buf bytes.Buffer
	require.NoError(t, recipe.SchematicExtension(&buf, p.id, p.canonical, author, version))

	return buf.Bytes(), p
}

type entry struct {
	header *tar.Header
	data   []byte
}

func readTar(t *testing.T, data []byte) []entry {
	t.Helper()

	var entries []entry

	tr := tar.NewReader(bytes.NewReader(data))

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}

		require.NoError(t, err)

		body, err := io.ReadAll(tr)
		require.NoError(t, err)

		entries = append(entries, entry{header: h, data: body})
	}
}

func TestSchematicExtensionLayout(t *testing.T) {
	t.Parallel()

	data, p := schematicExtension(t, "customization: {extraKernelArgs: [noapic]}\n", author, "v1.13.0")
	entries := readTar(t, data)

	var names []string
	for _, e := range entries {
		names = append(names, e.header.Name)

		require.True(t, e.header.ModTime.Equal(time.Unix(0, 0)), "%s: mtime %s", e.header.Name, e.header.ModTime)
		require.Zero(t, e.header.Uid, e.header.Name)
		require.Zero(t, e.header.Gid, e.header.Name)
		require.Empty(t, e.header.Uname, e.header.Name)
		require.Empty(t, e.header.Gname, e.header.Name)
	}

	require.Equal(t, []string{
		"manifest.yaml",
		"rootfs/",
		"rootfs/usr/",
		"rootfs/usr/local/",
		"rootfs/usr/local/share/",
		"rootfs/usr/local/share/schematic/",
		"rootfs/usr/local/share/schematic/" + p.id,
	}, names)

	// Parent directories precede what they contain.
	seen := map[string]bool{".": true}
	for _, n := range names {
		clean := strings.TrimSuffix(n, "/")
		require.True(t, seen[path.Dir(clean)], "%s before its parent", n)
		seen[clean] = true
	}

	marker := entries[len(entries)-1]
	require.Equal(t, byte(tar.TypeReg), marker.header.Typeflag)
	require.Empty(t, marker.data)
	require.Equal(t, int64(0o644), marker.header.Mode)

	for _, e := range entries[1 : len(entries)-1] {
		require.Equal(t, byte(tar.TypeDir), e.header.Typeflag, e.header.Name)
		require.Equal(t, int64(0o755), e.header.Mode, e.header.Name)
	}
}

func TestSchematicExtensionManifest(t *testing.T) {
	t.Parallel()

	const s = "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}\ncustomization: {}\n"

	for _, tc := range []struct {
		version   string
		extraInfo bool
	}{
		{"v1.13.0", true},
		{"v1.7.0", true},
		{"v1.7.0-alpha.1", true},
		{"v1.6.7", false},
		{"v1.5.0", false},
	} {
		data, p := schematicExtension(t, s, author, tc.version)
		entries := readTar(t, data)

		var m extensions.Manifest
		require.NoError(t, yaml.Unmarshal(entries[0].data, &m))

		want := extensions.Manifest{
			Version: "v1alpha1",
			Metadata: extensions.Metadata{
				Name:          "schematic",
				Version:       p.id,
				Author:        author,
				Description:   m.Metadata.Description,
				Compatibility: extensions.Compatibility{Talos: extensions.Constraint{Version: ">= 1.0.0"}},
			},
		}
		if tc.extraInfo {
			want.Metadata.ExtraInfo = string(p.canonical)
		}

		require.Equal(t, want, m, tc.version)
		require.NotEmpty(t, m.Metadata.Description)
	}
}

// The Talos imager unpacks the tarball with its own archiver and loads and validates it as an extension.
func TestSchematicExtensionLoadsInTalos(t *testing.T) {
	t.Parallel()

	data, p := schematicExtension(t, customized, author, "v1.13.0")
	dir := t.TempDir()

	require.NoError(t, archiver.Untar(t.Context(), bytes.NewReader(data), dir, nil))

	ext, err := extensions.Load(dir)
	require.NoError(t, err)
	require.Equal(t, p.id, ext.Manifest.Metadata.Version)
	require.Equal(t, string(p.canonical), ext.Manifest.Metadata.ExtraInfo)

	v := semver.MustParse("1.13.0")
	require.NoError(t, ext.Validate(
		extensions.WithValidateConstraints(), extensions.WithValidateContents(), extensions.WithTalosVersion(&v)))
	require.FileExists(t, path.Join(ext.RootfsPath(), "usr/local/share/schematic", p.id))
}

func TestSchematicExtensionDeterministic(t *testing.T) {
	t.Parallel()

	a, _ := schematicExtension(t, customized, author, "v1.13.0")
	b, _ := schematicExtension(t, customized, author, "v1.13.0")
	require.Equal(t, a, b)

	for what, other := range map[string][]byte{
		"schematic": first(schematicExtension(t, emptySchematic, author, "v1.13.0")),
		"author":    first(schematicExtension(t, customized, "someone else", "v1.13.0")),
		"version":   first(schematicExtension(t, customized, author, "v1.6.0")),
	} {
		require.NotEqual(t, a, other, what)
	}

	require.Error(t, recipe.SchematicExtension(io.Discard, "../etc", nil, author, "v1.13.0"))
}

func first(b []byte, _ parsed) []byte { return b }
