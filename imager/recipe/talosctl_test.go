package recipe_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
)

// talosctlCatalog is catalog(version) with a talosctl-all image of two binaries.
func talosctlCatalog(version string) release.Version {
	v := catalog(version)
	v.Talosctl = &release.Talosctl{
		Repository: "siderolabs/talosctl-all",
		Tag:        digest("talosctl-all index"),
		Image:      digest("talosctl-all amd64"),
		Files: []release.TalosctlFile{
			{Name: "talosctl-linux-amd64", Size: 10, Digest: digest("linux amd64 binary")},
			{Name: "talosctl-windows-amd64.exe", Size: 12, Digest: digest("windows amd64 binary")},
		},
	}

	return v
}

// TestPlanTalosctl: a talosctl binary's recipe pins the image by its amd64 digest and the file by the catalog's size
// and digest; its key changes with the version, the file, the image and the extractor, and with nothing else.
func TestPlanTalosctl(t *testing.T) {
	t.Parallel()

	plan := func(v release.Version, name, builder string) recipe.Recipe {
		t.Helper()

		r, err := recipe.PlanTalosctl(v, name, builder)
		require.NoError(t, err)
		require.Regexp(t, hexKey, r.Key)

		return r
	}

	base := plan(talosctlCatalog("v1.13.0"), "talosctl-linux-amd64", "extract/1")
	require.Equal(t, &recipe.TalosctlFile{
		Image:  recipe.Image{Repository: "siderolabs/talosctl-all", Digest: digest("talosctl-all amd64"), Tag: "v1.13.0"},
		Name:   "talosctl-linux-amd64",
		Size:   10,
		Digest: digest("linux amd64 binary"),
	}, base.Talosctl)
	require.Equal(t, "talosctl-linux-amd64", base.Asset.Path)
	require.Equal(t, "talosctl", base.Kind())
	require.Empty(t, base.SchematicID)

	other := talosctlCatalog("v1.13.0")
	other.Extensions = nil // the rest of the catalog plays no part
	require.Equal(t, base.Key, plan(other, "talosctl-linux-amd64", "extract/1").Key)

	moved := talosctlCatalog("v1.13.0")
	moved.Talosctl.Image = digest("another talosctl-all")

	seen := map[string]string{base.Key: "base"}
	for what, key := range map[string]string{
		"version":   plan(talosctlCatalog("v1.13.1"), "talosctl-linux-amd64", "extract/1").Key,
		"file":      plan(talosctlCatalog("v1.13.0"), "talosctl-windows-amd64.exe", "extract/1").Key,
		"image":     plan(moved, "talosctl-linux-amd64", "extract/1").Key,
		"extractor": plan(talosctlCatalog("v1.13.0"), "talosctl-linux-amd64", "extract/2").Key,
	} {
		if dup, ok := seen[key]; ok {
			t.Fatalf("%s gives the same key as %s", what, dup)
		}

		seen[key] = what
	}

	_, err := recipe.PlanTalosctl(talosctlCatalog("v1.13.0"), "talosctl-plan9-amd64", "extract/1")
	require.ErrorContains(t, err, `"talosctl-plan9-amd64"`)

	_, err = recipe.PlanTalosctl(catalog("v1.13.0"), "talosctl-linux-amd64", "extract/1")
	require.Error(t, err, "a catalog without talosctl-all")
}

// TestPlanKeysOfBuiltAssetsIgnoreTalosctl: the talosctl field stays out of built assets' encodings, so their keys
// (and the assets already built under them) are what they were before it existed, whatever the catalog's talosctl.
func TestPlanKeysOfBuiltAssetsIgnoreTalosctl(t *testing.T) {
	t.Parallel()

	p := parseSchematic(t, "customization: {}\n")
	opts := recipe.PlanOptions{Builder: "b", HostArch: "amd64"}

	without, err := recipe.Plan(mustParse(t, "metal-amd64.iso"), p.id, p.canonical, p.s, catalog("v1.13.0"), opts)
	require.NoError(t, err)

	with, err := recipe.Plan(mustParse(t, "metal-amd64.iso"), p.id, p.canonical, p.s, talosctlCatalog("v1.13.0"), opts)
	require.NoError(t, err)
	require.Equal(t, without.Key, with.Key)

	data, err := json.Marshal(with)
	require.NoError(t, err)
	require.NotContains(t, string(data), "talosctl")
}
