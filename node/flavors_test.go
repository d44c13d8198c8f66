package node_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/inspect"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// TestFlavorsAPI: the predecessor image-service's flavors are schematics under another name. POST /flavors takes
// the same bodies, gives the same IDs and answers {"id":...}; either route reads back either kind.
func TestFlavorsAPI(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))

	const kernelArgsID = "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"

	for _, tc := range []struct{ name, body, id, canonical string }{
		{"yaml", "customization: {}\n", emptyID, "customization: {}\n"},
		{"json", `{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}`, kernelArgsID,
			"customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"},
	} {
		t.Run("create and read back "+tc.name, func(t *testing.T) {
			resp := n.do(t, "POST", "/flavors", tc.body, nil)
			require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, `{"id":"`+tc.id+`"}`+"\n", resp.Body)

			for _, route := range []string{"/flavors/", "/schematics/"} {
				got := n.do(t, "GET", route+tc.id, "", nil)
				require.Equal(t, http.StatusOK, got.StatusCode, route)
				assert.Equal(t, "application/yaml", got.Header.Get("Content-Type"), route)
				assert.Equal(t, tc.canonical, got.Body, route)
			}
		})
	}

	t.Run("a schematic is a flavor with the same ID", func(t *testing.T) {
		body := "customization: {extraKernelArgs: [edgefactory.same=1]}\n"
		flavor := n.do(t, "POST", "/flavors", body, nil)
		schematic := n.createSchematic(t, body)
		assert.Equal(t, `{"id":"`+schematic+`"}`+"\n", flavor.Body)

		other := n.createSchematic(t, "customization: {extraKernelArgs: [edgefactory.schematic-first=1]}\n")
		got := n.do(t, "GET", "/flavors/"+other, "", nil)
		require.Equal(t, http.StatusOK, got.StatusCode)
		assert.Equal(t, n.do(t, "GET", "/schematics/"+other, "", nil).Body, got.Body)
	})

	t.Run("HEAD is answered like GET", func(t *testing.T) {
		resp := n.do(t, "HEAD", "/flavors/"+emptyID, "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Body)
	})

	t.Run("bad input is answered as for schematics", func(t *testing.T) {
		for _, body := range []string{"something:", "", "owner: someone\ncustomization: {}\n",
			"customization:\n  extraKernelArgs:\n" + strings.Repeat("    - "+strings.Repeat("a", 1000)+"\n", 2100)} {
			want := n.do(t, "POST", "/schematics", body, nil)
			got := n.do(t, "POST", "/flavors", body, nil)
			assert.GreaterOrEqual(t, got.StatusCode, 400)
			assert.Equal(t, want.StatusCode, got.StatusCode)
			assert.Equal(t, want.Body, got.Body)
		}
	})

	for _, id := range []string{"aaaaaaaaaaaa", strings.Repeat("f", 64)} {
		t.Run("unknown flavor "+id[:8], func(t *testing.T) {
			resp := n.do(t, "GET", "/flavors/"+id, "", nil)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			assert.Equal(t, "schematic not found\n", resp.Body)
		})
	}
}

// TestBoardPathErrors: a legacy board path naming no overlay of the version, a board on amd64, or a board with a
// flavor that has an overlay of its own is a 400 naming the problem, before anything is built.
func TestBoardPathErrors(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))
	flavor := createFlavor(t, n, "customization: {}\n")
	rpi := createFlavor(t, n, "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}\n")

	const conflict = `board "rpi_generic" conflicts with the schematic's overlay "rpi_generic"`

	for _, tc := range []struct{ path, text string }{
		{"/image/" + flavor + "/v1.13.0/metal-foo_bar-arm64.raw.xz",
			`unknown board "foo_bar": Talos version v1.13.0 has no overlay of that name`},
		{"/image/" + flavor + "/v1.13.0/cmdline-metal-foo_bar-arm64",
			`unknown board "foo_bar": Talos version v1.13.0 has no overlay of that name`},
		{"/pxe/" + flavor + "/v1.13.0/metal-foo_bar-arm64",
			`unknown board "foo_bar": Talos version v1.13.0 has no overlay of that name`},
		{"/image/" + flavor + "/v1.13.0/metal-rpi_generic-amd64.raw.xz",
			`board "rpi_generic" is arm64 only: there is no amd64 build of a board`},
		{"/pxe/" + flavor + "/v1.13.0/metal-rpi_generic-x86_64",
			`board "rpi_generic" is arm64 only: there is no amd64 build of a board`},
		{"/image/" + rpi + "/v1.13.0/metal-rpi_generic-arm64.raw.xz", conflict},
		{"/image/" + rpi + "/v1.13.0/cmdline-metal-rpi_generic-arm64", conflict},
		{"/pxe/" + rpi + "/v1.13.0/metal-rpi_generic-arm64", conflict},
		// no board form for ISOs: the board-less meaning
		{"/image/" + flavor + "/v1.13.0/metal-rpi_generic-arm64.iso", `invalid architecture: "rpi_generic-arm64"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := n.do(t, "GET", tc.path, "", nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, resp.Body)
			assert.Contains(t, resp.Body, tc.text)
			assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		})
	}
}

// boardCmdline113 is the v1.13.0 metal command line of the synthetic rpi_generic board: the overlay's kernel
// arguments replace the platform's consoles.
var boardCmdline113 = "talos.platform=metal " + strings.Join(synthetic.OverlayKernelArgs, " ") +
	strings.TrimPrefix(metalCmdline113, "talos.platform=metal console=tty0")

// TestFlavorAssets downloads boot assets through a flavor ID, as an image-service client would: the kernel, a
// command line, an ISO, a board disk image, and PXE scripts with and without a board.
func TestFlavorAssets(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), realUpstream(t))
	cfg.PXEURL = "http://pxe.site.example:8080/"
	n := startReady(t, cfg)
	flavor := createFlavor(t, n, `{"customization": {"extraKernelArgs": ["edgefactory.flavor=1"]}}`)
	image := "/image/" + flavor + "/v1.13.0/"

	t.Run("kernel-amd64", func(t *testing.T) {
		require.True(t, strings.HasPrefix(get(t, n.base+image+"kernel-amd64"), "MZ"), "a PE (EFI stub) kernel")
	})

	t.Run("cmdline-metal-amd64", func(t *testing.T) {
		assert.Equal(t, metalCmdline113+" edgefactory.flavor=1", get(t, n.base+image+"cmdline-metal-amd64"))
	})

	t.Run("cmdline-metal-rpi_generic-arm64", func(t *testing.T) {
		assert.Equal(t, boardCmdline113+" edgefactory.flavor=1", get(t, n.base+image+"cmdline-metal-rpi_generic-arm64"))
	})

	t.Run("metal-amd64.iso", func(t *testing.T) {
		checkISO(inspect.PlatformBIOS, inspect.PlatformEFI)(t, n.base+image+"metal-amd64.iso")
	})

	t.Run("metal-rpi_generic-arm64.raw.xz", func(t *testing.T) {
		url := n.base + image + "metal-rpi_generic-arm64.raw.xz"
		checkCompressedDisk(inspect.FormatXZ)(t, url)

		resp := n.do(t, "HEAD", image+"metal-rpi_generic-arm64.raw.xz", "", nil)
		assert.Equal(t, `attachment; filename="metal-rpi_generic-arm64.raw.xz"`, resp.Header.Get("Content-Disposition"))
		assert.Equal(t, "application/x-xz", resp.Header.Get("Content-Type"))

		// The board's overlay was applied: its kernel arguments (which no plain image has) are in the boot entry,
		// early on the disk. Its installer's u-boot is not: with sd-boot, the bootloader the synthetic overlay's
		// profile leaves the imager to choose, the Talos imager runs overlay installers on upgrades only.
		body := stream(t, url)
		defer body.Close()

		_, disk, err := inspect.Open(body)
		require.NoError(t, err)

		defer disk.Close()

		assert.True(t, contains(t, io.LimitReader(disk, 128<<20), []byte("talos.dashboard.disabled=1")),
			"the board's kernel arguments are on the disk")
	})

	t.Run("pxe", func(t *testing.T) {
		pxeImage := "http://pxe.site.example:8080" + image
		arm64 := strings.Replace(metalCmdline113, "console=tty0", "console=ttyAMA0 console=tty0", 1)

		for path, cmdline := range map[string]string{
			"metal-arm64":             arm64 + " edgefactory.flavor=1",
			"metal-rpi_generic-arm64": boardCmdline113 + " edgefactory.flavor=1",
		} {
			resp := n.do(t, "GET", "/pxe/"+flavor+"/v1.13.0/"+path, "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
			assert.Equal(t, "#!ipxe\n\nimgfree\n"+
				"kernel "+pxeImage+"kernel-arm64 "+cmdline+"\n"+
				"initrd "+pxeImage+"initramfs-arm64.xz\n"+
				"boot\n", resp.Body, path)
		}
	})
}

func createFlavor(t *testing.T, n *running, body string) string {
	t.Helper()

	resp := n.do(t, "POST", "/flavors", body, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)

	id, ok := strings.CutPrefix(strings.TrimSpace(resp.Body), `{"id":"`)
	require.True(t, ok, resp.Body)

	return strings.TrimSuffix(id, `"}`)
}

// contains reports whether r holds needle, reading it in chunks that overlap by len(needle)-1.
func contains(t *testing.T, r io.Reader, needle []byte) bool {
	t.Helper()

	buf := make([]byte, 1<<20)
	keep := 0

	for {
		n, err := io.ReadFull(r, buf[keep:])
		total := keep + n

		if bytes.Contains(buf[:total], needle) {
			return true
		}

		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false
		}

		require.NoError(t, err)

		keep = min(len(needle)-1, total)
		copy(buf, buf[total-keep:total])
	}
}

// TestFlavorInstallers pulls the image-service's installer repositories, installer/<flavor> and
// installer-secureboot/<flavor>, by flavor ID, as go-containerregistry (crane) does.
func TestFlavorInstallers(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	flavor := createFlavor(t, n, "customization: {}\n")

	for _, repo := range []string{"installer", "installer-secureboot"} {
		t.Run(repo, func(t *testing.T) {
			ref, err := name.ParseReference(n.Addr()+"/"+repo+"/"+flavor+":v1.13.0", name.Insecure)
			require.NoError(t, err)

			img := pullInstaller(t, ref)
			assert.Len(t, img.manifests, 2, "amd64 and arm64")
		})
	}
}
