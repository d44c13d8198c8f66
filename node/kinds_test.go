package node_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/inspect"
)

// The v1.13.0 metal amd64 command line of the empty schematic (docs/api.md §3.3).
const metalCmdline113 = "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 " +
	"nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never"

// kindsSchematic asks for extensions, META and an extra kernel argument, so every output kind has something to
// show for each customization it applies.
const kindsSchematic = `customization:
  extraKernelArgs: [edgefactory.test=1]
  meta:
    - key: 0xa
      value: '{"externalIPs":["1.2.3.4"]}'
  systemExtensions:
    officialExtensions: [siderolabs/amd-ucode, siderolabs/hello-world-service]
`

const metaArg = "talos.environment=INSTALLER_META_BASE64=MHhhPXsiZXh0ZXJuYWxJUHMiOlsiMS4yLjMuNCJdfQ=="

// TestEveryAssetKind builds every kind of the path grammar from the synthetic release through the HTTP API and
// checks each one's structure, not just that it downloaded.
func TestEveryAssetKind(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	id := n.createSchematic(t, kindsSchematic)
	empty := n.createSchematic(t, `customization: {}`)
	rpi := n.createSchematic(t, `overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}`)

	asset := func(schematic, version, path string) string {
		return n.base + "/image/" + schematic + "/" + version + "/" + path
	}

	t.Run("command lines", func(t *testing.T) {
		for _, tc := range []struct{ schematic, version, path, want string }{
			{empty, "v1.13.0", "cmdline-metal-amd64", metalCmdline113},
			{empty, "v1.12.0", "cmdline-metal-amd64", strings.TrimSuffix(metalCmdline113, " proc_mem.force_override=never")},
			{id, "v1.13.0", "cmdline-metal-amd64", metalCmdline113 + " " + metaArg + " edgefactory.test=1"},
			{empty, "v1.13.0", "cmdline-metal-arm64", strings.Replace(metalCmdline113, "console=tty0",
				"console=ttyAMA0 console=tty0", 1)},
			{empty, "v1.13.0", "cmdline-metal-amd64-secureboot", metalCmdline113 + " lockdown=confidentiality"},
			{empty, "v1.13.0", "cmdline-nocloud-amd64", strings.Replace(metalCmdline113,
				"talos.platform=metal console=tty0", "talos.platform=nocloud console=tty1 console=ttyS0 net.ifnames=0", 1)},
		} {
			assert.Equal(t, tc.want, get(t, asset(tc.schematic, tc.version, tc.path)), tc.path+" "+tc.version)
		}
	})

	checks := map[string]func(t *testing.T, url string){
		"kernel-amd64": func(t *testing.T, url string) {
			require.True(t, strings.HasPrefix(get(t, url), "MZ"), "a PE (EFI stub) kernel")
		},
		"kernel-arm64": func(t *testing.T, url string) {
			k := get(t, url)
			require.True(t, strings.HasPrefix(k, "MZ"))
			require.Equal(t, "ARM\x64", k[0x38:0x3c], "arm64 Image magic")
		},
		"initramfs-amd64.xz":         checkInitramfs("amd64"),
		"initramfs-arm64.xz":         checkInitramfs("arm64"),
		"metal-amd64.iso":            checkISO(inspect.PlatformBIOS, inspect.PlatformEFI),
		"metal-arm64.iso":            checkISO(inspect.PlatformEFI),
		"metal-amd64-secureboot.iso": checkISO(inspect.PlatformEFI),
		"metal-amd64-uki.efi":        checkUKI(metalCmdline113+" edgefactory.test=1", false),
		"metal-amd64-secureboot-uki.efi": checkUKI(metalCmdline113+" lockdown=confidentiality edgefactory.test=1",
			true),
		"installer-amd64.tar":            checkInstaller("amd64"),
		"metal-installer-arm64.tar":      checkInstaller("arm64"),
		"installer-amd64-secureboot.tar": checkInstaller("amd64"),
		"metal-amd64.raw": func(t *testing.T, url string) {
			size := contentLength(t, url)
			gpt, err := inspect.GPT(&httpReaderAt{t: t, url: url}, size) // read over Range requests
			require.NoError(t, err)
			checkTalosPartitions(t, gpt)
		},
		"metal-arm64.raw.zst":            checkCompressedDisk(inspect.FormatZstd),
		"metal-amd64-secureboot.raw.zst": checkCompressedDisk(inspect.FormatZstd),
		"nocloud-amd64.raw.gz":           checkCompressedDisk(inspect.FormatGzip),
		"gcp-amd64.raw.tar.gz": func(t *testing.T, url string) {
			body := stream(t, url)
			defer body.Close()

			format, r, err := inspect.Open(body)
			require.NoError(t, err)
			require.Equal(t, inspect.FormatGzip, format)

			tr := tar.NewReader(r)
			hdr, err := tr.Next()
			require.NoError(t, err)
			require.Equal(t, "disk.raw", hdr.Name)
			checkDiskHead(t, io.LimitReader(tr, 1<<20))
		},
		"oracle-amd64.qcow2": func(t *testing.T, url string) {
			body := stream(t, url)
			defer body.Close()

			q, err := inspect.QCOW2(body)
			require.NoError(t, err)
			assert.Equal(t, 13, int(q.ClusterBits), "cluster_size=8k")
		},
		"azure-amd64.vhd": func(t *testing.T, url string) {
			size := contentLength(t, url)
			vhd, err := inspect.VHD(&httpReaderAt{t: t, url: url}, size) // the footer, by Range
			require.NoError(t, err)
			assert.Equal(t, "fixed", strings.ToLower(vhd.DiskType))
		},
		"vmware-amd64.ova": func(t *testing.T, url string) {
			body := stream(t, url)
			defer body.Close()

			ova, err := inspect.OVA(body)
			require.NoError(t, err)
			require.NotEmpty(t, ova.VMDKs)
		},
	}

	for path, check := range checks {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			check(t, asset(id, "v1.13.0", path))
		})
	}

	t.Run("overlay disk image metal-arm64.raw.xz", func(t *testing.T) {
		t.Parallel()
		checkCompressedDisk(inspect.FormatXZ)(t, asset(rpi, "v1.13.0", "metal-arm64.raw.xz"))
	})
}

func get(t *testing.T, url string) string {
	t.Helper()

	resp, err := http.Get(url)
	require.NoError(t, err)

	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, body)

	return string(body)
}

// stream opens a download whose body the caller reads (and closes): large assets are never held in memory.
func stream(t *testing.T, url string) io.ReadCloser {
	t.Helper()

	resp, err := http.Get(url)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, url)

	return resp.Body
}

func contentLength(t *testing.T, url string) int64 {
	t.Helper()

	resp, err := http.Head(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)

	n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	require.NoError(t, err)

	return n
}

// httpReaderAt reads an asset with Range requests, so multi-GB disk images are inspected without downloading them.
type httpReaderAt struct {
	t   *testing.T
	url string
}

func (h *httpReaderAt) ReadAt(p []byte, off int64) (int, error) {
	req, err := http.NewRequest(http.MethodGet, h.url, nil)
	if err != nil {
		return 0, err
	}

	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusPartialContent {
		return 0, fmt.Errorf("range request: %s", resp.Status)
	}

	n, err := io.ReadFull(resp.Body, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}

	return n, err
}

func checkInitramfs(arch string) func(*testing.T, string) {
	return func(t *testing.T, url string) {
		body := stream(t, url)
		defer body.Close()

		report, err := inspect.Initramfs(body, "extensions.yaml")
		require.NoError(t, err)
		require.NotEmpty(t, report.Members)

		for _, m := range report.Members {
			if m.Compression == inspect.FormatXZ {
				assert.Equal(t, "CRC32", m.XZCheck, "the kernel unpacks only CRC32 xz")
			}
		}

		files := report.Files()
		assert.Contains(t, files, "init")
		assert.Contains(t, files, "bin/busybox")

		exts := string(report.Contents["extensions.yaml"])
		for _, name := range []string{"amd-ucode", "hello-world-service", "schematic"} {
			assert.Contains(t, exts, name, "%s initramfs lists extension %s", arch, name)
		}
	}
}

func checkISO(platforms ...byte) func(*testing.T, string) {
	return func(t *testing.T, url string) {
		iso, err := inspect.ISO(&httpReaderAt{t: t, url: url}, contentLength(t, url))
		require.NoError(t, err)
		require.NotZero(t, iso.BootCatalog, "El Torito boot catalog")

		var got []byte
		for _, e := range iso.BootEntries {
			got = append(got, e.Platform)
		}

		for _, p := range platforms {
			assert.Contains(t, got, p)
		}
	}
}

func checkUKI(cmdline string, signed bool) func(*testing.T, string) {
	return func(t *testing.T, url string) {
		data := get(t, url)
		uki, err := inspect.UKI(bytes.NewReader([]byte(data)))
		require.NoError(t, err)

		for _, s := range []string{".linux", ".initrd", ".cmdline", ".osrel"} {
			assert.True(t, uki.Has(s), "section %s", s)
		}

		assert.Equal(t, cmdline, uki.Cmdline)
		assert.Equal(t, signed, uki.Signed)

		for _, p := range uki.Profiles {
			if p.ID == "main" || p.ID == "" {
				assert.NotContains(t, p.Cmdline, "wipe=", "the default profile never wipes")
			}
		}
	}
}

func checkInstaller(arch string) func(*testing.T, string) {
	return func(t *testing.T, url string) {
		file := filepath.Join(t.TempDir(), "installer.tar")
		download(t, url, file)

		report, err := inspect.InstallerTar(file)
		require.NoError(t, err)
		assert.Equal(t, arch, report.Architecture)
		require.Len(t, report.Layers, 2, "base + artifacts")
		assert.True(t, report.Layers[1].HasOnly("usr/install/"+arch+"/vmlinuz.efi", "usr/install/"+arch+"/systemd-boot.efi"),
			"layer 2 files: %v", report.Layers[1].Files)
		assert.Contains(t, report.Layers[0].Files, "usr/bin/installer")
	}
}

// checkCompressedDisk checks the framing and the disk's first megabyte (MBR and GPT header).
func checkCompressedDisk(want inspect.Format) func(*testing.T, string) {
	return func(t *testing.T, url string) {
		body := stream(t, url)
		defer body.Close()

		format, r, err := inspect.Open(body)
		require.NoError(t, err)
		require.Equal(t, want, format)

		defer r.Close()

		checkDiskHead(t, io.LimitReader(r, 1<<20))
	}
}

// checkDiskHead checks a disk's first bytes: an MBR signature and a GPT header at LBA 1.
func checkDiskHead(t *testing.T, r io.Reader) {
	head, err := io.ReadAll(r)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(head), 1024)
	assert.Equal(t, []byte{0x55, 0xaa}, head[510:512], "MBR signature")
	assert.Equal(t, "EFI PART", string(head[512:520]), "GPT header")
}

func checkTalosPartitions(t *testing.T, gpt inspect.GPTReport) {
	t.Helper()

	names := gpt.Names()
	// Talos ≥ 1.8 images carry these; STATE and EPHEMERAL are created on first boot.
	for _, want := range []string{"EFI", "BIOS", "BOOT", "META"} {
		assert.Contains(t, names, want, "partitions %v", names)
	}
}

func download(t *testing.T, url, file string) string {
	t.Helper()

	body := stream(t, url)
	defer body.Close()

	f, err := os.Create(file)
	require.NoError(t, err)

	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), body)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	return hex.EncodeToString(h.Sum(nil))
}
