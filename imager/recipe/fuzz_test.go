package recipe_test

import (
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// FuzzParsePath drives the last segment of /image/{schematic}/{version}/{path} and of /pxe/... through the path
// grammar. A refusal must be an *InvalidError (a 400, never a 500 or a panic); an accepted path must be in normal
// form: its Path parses back to the very same Asset. The cache and the Raft index key assets by that form, so two
// spellings that normalised to different Paths, or a Path that no longer parsed, would build the same image twice
// or serve none.
func FuzzParsePath(f *testing.F) {
	for _, seed := range []string{
		"kernel-amd64", "kernel-x86_64", "cmdline-metal-amd64", "cmdline-metal-rpi_generic-arm64",
		"initramfs-arm64.xz", "metal-amd64.iso", "metal-amd64-secureboot.iso", "metal-amd64-secureboot-uki.efi",
		"installer-amd64.tar", "installer-arm64-secureboot.tar", "digital-ocean-installer-amd64.tar",
		"metal-amd64.raw.xz", "metal-amd64.raw.zst", "aws-amd64.raw.tar.gz", "azure-amd64.vhd.xz", "metal-amd64.qcow2",
		"vmware-amd64.ova", "metal-rpi_generic-arm64.raw.xz", "digital-ocean-amd64.raw.gz", "metal-i386.iso",
		"metal-amd64.ssd", "metal", "", "-", "cmdline-", "kernel-", ".iso", "-installer-.tar", "metal-a-b-arm64",
		"metal-rpi-amd64.raw.xz", "metal-rpi_generic-arm64-secureboot.raw.xz", "digital-amd64.iso",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, p string) {
		a, err := recipe.ParsePath(p)
		requireNormalForm(t, a, err, recipe.ParsePath)

		// The PXE grammar is the command line's without its prefix; whatever it accepts is a command line asset
		// whose Path, less that prefix, is again a PXE path of the same asset.
		pxe, err := recipe.ParsePXEPath(p)
		requireNormalForm(t, pxe, err, func(p string) (recipe.Asset, error) {
			rest, ok := strings.CutPrefix(p, "cmdline-")
			require.True(t, ok, "PXE asset path %q lacks the cmdline- prefix", p)

			return recipe.ParsePXEPath(rest)
		})

		if err == nil {
			require.Equal(t, profile.OutKindCmdline, pxe.Kind)
		}
	})
}

// requireNormalForm checks one parse result: an invalid request, or an asset whose Path re-parses to itself.
func requireNormalForm(t *testing.T, a recipe.Asset, err error, parse func(string) (recipe.Asset, error)) {
	t.Helper()

	if err != nil {
		require.True(t, recipe.IsInvalid(err), "%T is not an InvalidError: %v", err, err)
		require.Equal(t, recipe.Asset{}, a)

		return
	}

	require.NotEmpty(t, a.Path)
	require.NotEmpty(t, a.Platform)
	require.Contains(t, []string{"amd64", "arm64"}, a.Arch)
	require.NotEmpty(t, recipe.MediaType(a))
	require.Equal(t, a.Path, a.Filename())

	again, err := parse(a.Path)
	require.NoError(t, err, "normal form %q does not parse", a.Path)
	require.Equal(t, a, again)
}
