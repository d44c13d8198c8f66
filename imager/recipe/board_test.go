package recipe_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/siderolabs/talos/pkg/imager"
	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/reporter"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

func withBoard(a recipe.Asset, board string) recipe.Asset {
	a.Board = board

	return a
}

// TestParsePathBoards covers the predecessor image-service's board syntax: recognised only in the command line and
// disk image forms, when the platform is known and the last segment is an architecture; everything else keeps its
// board-less meaning.
func TestParsePathBoards(t *testing.T) {
	t.Parallel()

	rpiDisk := func(path, platform string, sb bool, out profile.OutFormat, size uint64) recipe.Asset {
		return withBoard(diskAsset(path, platform, "arm64", sb, out, profile.DiskFormatRaw, size, ""), "rpi_generic")
	}

	for _, tc := range []struct {
		path string
		want recipe.Asset
		err  string
	}{
		{path: "metal-rpi_generic-arm64.raw.xz", want: rpiDisk("metal-rpi_generic-arm64.raw.xz", "metal", false, profile.OutFormatXZ, minRaw)},
		{path: "metal-rpi_generic-arm64.raw", want: rpiDisk("metal-rpi_generic-arm64.raw", "metal", false, profile.OutFormatRaw, minRaw)},
		{
			path: "digital-ocean-rpi_generic-arm64.raw.gz",
			want: rpiDisk("digital-ocean-rpi_generic-arm64.raw.gz", "digital-ocean", false, profile.OutFormatGZ, defaultSize),
		},
		{
			path: "cmdline-metal-rpi_generic-arm64",
			want: withBoard(kindAsset("cmdline-metal-rpi_generic-arm64", profile.OutKindCmdline, "metal", "arm64", false), "rpi_generic"),
		},
		{
			path: "cmdline-metal-jetson_nano-arm64",
			want: withBoard(kindAsset("cmdline-metal-jetson_nano-arm64", profile.OutKindCmdline, "metal", "arm64", false),
				"jetson_nano"),
		},
		// overlay names may have dashes: the board is everything between platform and architecture
		{
			path: "metal-nanopi-r4s-arm64.raw.xz",
			want: withBoard(diskAsset("metal-nanopi-r4s-arm64.raw.xz", "metal", "arm64", false, profile.OutFormatXZ,
				profile.DiskFormatRaw, minRaw, ""), "nanopi-r4s"),
		},
		// an unknown board parses: whether it exists depends on the version's overlays catalog (Plan)
		{
			path: "metal-foo_bar-arm64.raw.xz",
			want: withBoard(diskAsset("metal-foo_bar-arm64.raw.xz", "metal", "arm64", false, profile.OutFormatXZ,
				profile.DiskFormatRaw, minRaw, ""), "foo_bar"),
		},

		{path: "metal-rpi_generic-amd64.raw.xz", err: `board "rpi_generic" is arm64 only: there is no amd64 build of a board`},
		{path: "metal-rpi_generic-x86_64.raw.xz", err: `board "rpi_generic" is arm64 only: there is no amd64 build of a board`},
		{path: "cmdline-metal-rpi_generic-amd64", err: `board "rpi_generic" is arm64 only: there is no amd64 build of a board`},
		{path: "cmdline-metal-rpi_generic-arm64-secureboot", err: `board "rpi_generic" has no secure-boot images: drop -secureboot`},
		{path: "metal-rpi_generic-arm64-secureboot.raw.xz", err: `board "rpi_generic" has no secure-boot images: drop -secureboot`},
		// no board form: the board-less errors, unchanged
		{path: "metal-rpi_generic-arm64.iso", err: `invalid architecture: "rpi_generic-arm64"`},
		{path: "metal-rpi_generic-arm64-uki.efi", err: `invalid architecture: "rpi_generic-arm64"`},
		{path: "mars-rpi_generic-arm64.raw.xz", err: `invalid architecture: "rpi_generic-arm64"`},
		{path: "metal-amd64-extra.raw.xz", err: `invalid architecture: "amd64-extra"`},
		{path: "metal-rpi_generic-riscv64.raw.xz", err: `invalid architecture: "rpi_generic-riscv64"`},
		{path: "metal--arm64.raw.xz", err: `invalid architecture: "-arm64"`},
		{path: "cmdline-metal-amd64-extra", err: `invalid architecture: "amd64-extra"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			checkParse(t, tc.path, tc.want, tc.err)
		})
	}

	t.Run("pxe", func(t *testing.T) {
		t.Parallel()

		a, err := recipe.ParsePXEPath("metal-rpi_generic-arm64")
		require.NoError(t, err)
		require.Equal(t, withBoard(kindAsset("cmdline-metal-rpi_generic-arm64", profile.OutKindCmdline, "metal", "arm64", false),
			"rpi_generic"), a)

		_, err = recipe.ParsePXEPath("metal-rpi_generic-amd64")
		require.EqualError(t, err, `board "rpi_generic" is arm64 only: there is no amd64 build of a board`)
	})

	t.Run("a board path is the board-less asset plus the board", func(t *testing.T) {
		t.Parallel()

		for board, plain := range map[string]string{
			"metal-rpi_generic-arm64.raw.xz":   "metal-arm64.raw.xz",
			"aws-rpi_generic-arm64.qcow2":      "aws-arm64.qcow2",
			"cmdline-metal-rpi_generic-arm64":  "cmdline-metal-arm64",
			"nocloud-rpi_generic-arm64.raw.gz": "nocloud-arm64.raw.gz",
		} {
			a, p := mustParse(t, board), mustParse(t, plain)
			require.Equal(t, "rpi_generic", a.Board)
			require.Equal(t, board, a.Path)

			a.Board, a.Path = "", p.Path
			require.Equal(t, p, a, board)
		}
	})
}

const rpiSchematic = "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}\ncustomization: {}\n"

func TestPlanBoards(t *testing.T) {
	t.Parallel()

	t.Run("a board is its overlay, for the disk image and the command line", func(t *testing.T) {
		t.Parallel()

		want := &recipe.Overlay{Image: recipe.Image{
			Repository: "siderolabs/sbc-raspberrypi", Digest: digest("siderolabs/sbc-raspberrypi"),
			Platform: "linux/amd64", Tag: "v0.1.7",
		}, Name: "rpi_generic"}

		board := mustPlan(t, "metal-rpi_generic-arm64.raw.xz", emptySchematic, "v1.13.0")
		overlay := mustPlan(t, "metal-arm64.raw.xz", rpiSchematic, "v1.13.0")
		require.Equal(t, want, board.Inputs.Overlay)
		require.Equal(t, overlay.Inputs, board.Inputs, "the same inputs as the overlay schematic's")
		require.NotEqual(t, overlay.Key, board.Key, "different requests, different keys")
		require.Equal(t, "rpi_generic", board.Asset.Board)

		cmdline := mustPlan(t, "cmdline-metal-rpi_generic-arm64", emptySchematic, "v1.13.0")
		require.Equal(t, want, cmdline.Inputs.Overlay, "a board's command line carries the board's kernel arguments")
		require.Nil(t, cmdline.Inputs.OverlayInstaller)
		require.Empty(t, cmdline.Author)

		plain := mustPlan(t, "cmdline-metal-arm64", emptySchematic, "v1.13.0")
		require.Nil(t, plain.Inputs.Overlay)
		require.NotEqual(t, plain.Key, cmdline.Key)
	})

	t.Run("extensions still come from the schematic", func(t *testing.T) {
		t.Parallel()

		r := mustPlan(t, "metal-rpi_generic-arm64.raw.xz",
			"customization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode]}}\n", "v1.13.0")
		require.Len(t, r.Inputs.Extensions, 1)
		require.NotNil(t, r.Inputs.Overlay)
	})

	const (
		optionsOnly = "overlay: {options: {configTxtAppend: x}}\ncustomization: {}\n"
		otherName   = "overlay: {name: foo, image: bar}\ncustomization: {}\n"
	)

	for _, tc := range []struct{ name, path, schematic, version, err string }{
		{name: "unknown board image", path: "metal-foo_bar-arm64.raw.xz", schematic: emptySchematic, version: "v1.13.0",
			err: `unknown board "foo_bar": Talos version v1.13.0 has no overlay of that name`},
		{name: "unknown board cmdline", path: "cmdline-metal-foo_bar-arm64", schematic: emptySchematic, version: "v1.13.0",
			err: `unknown board "foo_bar": Talos version v1.13.0 has no overlay of that name`},
		{name: "board and overlay", path: "metal-rpi_generic-arm64.raw.xz", schematic: rpiSchematic, version: "v1.13.0",
			err: `board "rpi_generic" conflicts with the schematic's overlay "rpi_generic": name the overlay in the ` +
				`schematic or the board in the path, not both`},
		{name: "board and other overlay cmdline", path: "cmdline-metal-rpi_generic-arm64", schematic: otherName, version: "v1.13.0",
			err: `board "rpi_generic" conflicts with the schematic's overlay "foo": name the overlay in the ` +
				`schematic or the board in the path, not both`},
		{name: "board and overlay options", path: "metal-rpi_generic-arm64.raw.xz", schematic: optionsOnly, version: "v1.13.0",
			err: `board "rpi_generic" conflicts with the schematic's overlay section: name the overlay in the ` +
				`schematic or the board in the path, not both`},
		{name: "board before overlays", path: "metal-rpi_generic-arm64.raw.xz", schematic: emptySchematic, version: "v1.6.7",
			err: `board "rpi_generic" is not supported for Talos version v1.6.7: boards are built from overlays, ` +
				`which need Talos v1.7.0 or later`},
		{name: "board on 1.7", path: "metal-rpi_generic-arm64.raw.xz", schematic: emptySchematic, version: "v1.7.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			r, err := plan(t, tc.path, tc.schematic, tc.version, planOpts)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotEmpty(t, r.Key)

				return
			}

			require.EqualError(t, err, tc.err)
			require.True(t, recipe.IsInvalid(err), "%T must be invalid", err)
		})
	}
}

// A board disk image is built from exactly the profile of the overlay schematic's disk image.
func TestProfileBoardIsOverlayProfile(t *testing.T) {
	t.Parallel()

	const customization = "customization: {extraKernelArgs: [noapic], meta: [{key: 0xa, value: x}]}\n"

	for board, plain := range map[string]string{
		"metal-rpi_generic-arm64.raw.xz": "metal-arm64.raw.xz",
		"metal-rpi_generic-arm64.raw":    "metal-arm64.raw",
	} {
		t.Run(board, func(t *testing.T) {
			t.Parallel()

			b := mustPlan(t, board, customization, "v1.13.0")
			o := mustPlan(t, plain, "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}\n"+customization, "v1.13.0")

			bp, err := b.Profile(pathsFor(b))
			require.NoError(t, err)

			op, err := o.Profile(pathsFor(o))
			require.NoError(t, err)

			require.Equal(t, op, bp)
			require.Equal(t, "rpi_generic", bp.BaseProfileName)
		})
	}
}

// TestBoardCmdlineFromTalosImager runs the real Talos imager on a board's command line: it extracts the overlay
// (an OCI layout holding the synthetic overlay's installer) and asks it for the board's kernel arguments. Not
// parallel: it points TMPDIR at the test.
func TestBoardCmdlineFromTalosImager(t *testing.T) {
	in := t.TempDir()
	t.Setenv("TMPDIR", t.TempDir())

	for _, f := range []string{"vmlinuz", "initramfs.xz"} {
		require.NoError(t, os.WriteFile(filepath.Join(in, f), []byte("stand-in "+f), 0o644))
	}

	overlay := overlayLayout(t)

	for _, tc := range []struct{ name, path, schematic, want string }{
		{"board args", "metal-rpi_generic-arm64", emptySchematic, "talos.platform=metal " + strings.Join(synthetic.OverlayKernelArgs, " ") +
			" init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 " +
			"module.sig_enforce=1 proc_mem.force_override=never"},
		{"the schematic's console wins", "metal-rpi_generic-arm64", "customization: {extraKernelArgs: [console=ttyS0]}\n", "talos.platform=metal " +
			"console=ttyS0 sysctl.kernel.kexec_load_disabled=1 talos.dashboard.disabled=1" +
			" init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 " +
			"module.sig_enforce=1 proc_mem.force_override=never"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := recipe.ParsePXEPath(tc.path)
			require.NoError(t, err)

			p := parseSchematic(t, tc.schematic)
			r, err := recipe.Plan(a, p.id, p.canonical, p.s, catalog("v1.13.0"), planOpts)
			require.NoError(t, err)

			prof, err := r.Profile(recipe.Paths{
				Kernel:    filepath.Join(in, "vmlinuz"),
				Initramfs: filepath.Join(in, "initramfs.xz"),
				Overlay:   overlay,
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

// overlayLayout writes an OCI layout holding, for this host's architecture, an overlay image with the synthetic
// rpi_generic installer and profile, as the build's input store would.
func overlayLayout(t *testing.T) string {
	t.Helper()

	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
		mode       int64
	}{
		{name: "installers/", mode: 0o755},
		{name: "installers/rpi_generic", body: synthetic.OverlayInstallerScript(), mode: 0o755},
		{name: "profiles/", mode: 0o755},
		{name: "profiles/rpi_generic.yaml", body: rpiProfile, mode: 0o644},
	} {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}

		require.NoError(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(e.body))
		require.NoError(t, err)
	}

	require.NoError(t, tw.Close())

	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	require.NoError(t, err)

	img, err := mutate.AppendLayers(empty.Image, l)
	require.NoError(t, err)

	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	require.NoError(t, err)
	require.NoError(t, lp.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})))

	return dir
}
