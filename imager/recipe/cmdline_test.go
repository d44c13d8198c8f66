package recipe_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/siderolabs/talos/pkg/imager"
	"github.com/siderolabs/talos/pkg/reporter"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// v1130Metal is the official service's cmdline-metal-amd64 for v1.13.0 and the empty schematic (docs/api.md §3.3).
const v1130Metal = "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 " +
	"nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never"

// TestCmdlineFromTalosImager runs the real Talos imager on the profile: a cmdline output needs no host tools, and
// the kernel and initramfs are never read, so small stand-in files do. Not parallel: it points TMPDIR at the test.
func TestCmdlineFromTalosImager(t *testing.T) {
	in := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())

	for _, f := range []string{"vmlinuz", "initramfs.xz"} {
		require.NoError(t, os.WriteFile(filepath.Join(in, f), []byte("stand-in "+f), 0o644))
	}

	const metaSchematic = `customization:
  meta:
    - key: 0xa
      value: '{"externalIPs":["1.2.3.4"]}'
`

	for _, tc := range []struct {
		name, path, schematic, want string
		pxe                         bool
	}{
		{name: "empty", path: "cmdline-metal-amd64", schematic: emptySchematic, want: v1130Metal},
		{name: "pxe alias", path: "metal-x86_64", pxe: true, schematic: emptySchematic, want: v1130Metal},
		{
			name: "meta", path: "cmdline-metal-amd64", schematic: metaSchematic,
			want: v1130Metal + " talos.environment=INSTALLER_META_BASE64=MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ==",
		},
		{
			name: "extra args", path: "cmdline-metal-amd64", schematic: "customization: {extraKernelArgs: [noapic, nolapic]}\n",
			want: v1130Metal + " noapic nolapic",
		},
		{
			name: "secure boot", path: "cmdline-metal-amd64-secureboot", schematic: emptySchematic,
			want: v1130Metal + " lockdown=confidentiality",
		},
		{
			name: "equinix", path: "equinixMetal-amd64", pxe: true, schematic: emptySchematic,
			want: "talos.platform=equinixMetal console=ttyS1,115200n8 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 " +
				"nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := recipe.ParsePath
			if tc.pxe {
				parse = recipe.ParsePXEPath
			}

			a, err := parse(tc.path)
			require.NoError(t, err)

			p := parseSchematic(t, tc.schematic)
			r, err := recipe.Plan(a, p.id, p.canonical, p.s, catalog("v1.13.0"), planOpts)
			require.NoError(t, err)

			prof, err := r.Profile(recipe.Paths{
				Kernel:    filepath.Join(in, "vmlinuz"),
				Initramfs: filepath.Join(in, "initramfs.xz"),
			})
			require.NoError(t, err)

			img, err := imager.New(prof)
			require.NoError(t, err)

			out, err := img.Execute(t.Context(), t.TempDir(), reporter.New())
			require.NoError(t, err)

			cmdline, err := os.ReadFile(out)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(cmdline))
		})
	}
}
