package imager

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// Reproducibility of each output kind with the Talos v1.13 imager on Debian 12 (details in reproducibleHere).
type reproducibility int

const (
	reproducible    reproducibility = iota // always: built twice here, bytes must match
	needsCpioMtimes                        // once cpio archives files with SOURCE_DATE_EPOCH mtimes (cpio adapter)
	needsXFSTime                           // additionally once mkfs.xfs stamps SOURCE_DATE_EPOCH (libfaketime)
	notReproducible                        // the imager stamps time.Now() into the Authenticode signing time
)

// reproducibleHere says whether r holds on this host and, if not, why.
func reproducibleHere(r reproducibility) (bool, string) {
	cpio := slices.Contains(hosttools.Adapters(), "cpio")

	switch r {
	case reproducible:
		return true, ""
	case needsCpioMtimes, needsXFSTime:
		if !cpio {
			return false, "the imager's cpio archives (extensions, schematic) record the build time as mtime: needs " +
				"a cpio adapter that sets listed files' mtimes to SOURCE_DATE_EPOCH"
		}

		if r == needsXFSTime && hosttools.FaketimeLibrary() == "" {
			return false, "mkfs.xfs 6.1 stamps inode times with the clock: install " + hosttools.FaketimePackage
		}

		return true, ""
	default:
		return false, "the Talos imager writes time.Now() into the output (PKCS#7 signing time, image config created)"
	}
}

// TestBuildKinds builds every kind of output from the synthetic release, checks what each must contain, and
// builds the reproducible ones a second time: equal recipes must give equal bytes on any node.
func TestBuildKinds(t *testing.T) {
	f := getFixture(t)
	b, _ := f.newBuilder(t, nil)

	tests := []struct {
		path  string
		repro reproducibility
		check func(t *testing.T, f *fixture, data []byte)
	}{
		{path: "kernel-amd64", check: func(t *testing.T, f *fixture, data []byte) {
			require.True(t, bytes.Equal(f.parts.File("amd64", "vmlinuz"), data), "the kernel is served as released")
		}},
		{path: "cmdline-metal-amd64", check: func(t *testing.T, _ *fixture, data []byte) {
			require.Contains(t, string(data), "talos.platform=metal")
			require.Contains(t, string(data), "edgefactory.test=1")
		}},
		{path: "initramfs-amd64.xz", repro: needsCpioMtimes, check: checkInitramfs},
		{path: "metal-amd64-uki.efi", repro: needsCpioMtimes, check: func(t *testing.T, _ *fixture, data []byte) {
			require.True(t, bytes.HasPrefix(data, []byte("MZ")))
		}},
		{path: "metal-amd64-secureboot-uki.efi", repro: notReproducible, check: checkSecureBootUKI},
		{path: "metal-amd64.iso", repro: needsCpioMtimes, check: func(t *testing.T, _ *fixture, data []byte) {
			require.Greater(t, len(data), 0x8006)
			require.Equal(t, "CD001", string(data[0x8001:0x8006]), "ISO 9660 volume descriptor")
		}},
		{path: "metal-amd64.raw.xz", repro: needsXFSTime, check: func(t *testing.T, _ *fixture, data []byte) {
			require.True(t, bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}), "xz stream")
		}},
		{path: "installer-amd64.tar", check: checkInstaller}, // created time pinned after the build
	}

	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := f.plan(t, tc.path, "")

			sum := buildAndCheck(t, f, b, r, tc.check)
			require.Empty(t, f.leftovers(t), "TmpDir after Cleanup")

			if ok, why := reproducibleHere(tc.repro); !ok {
				t.Logf("not checking reproducibility of %s: %s", tc.path, why)

				return
			}

			// A second apart, so anything stamped with the clock shows.
			time.Sleep(1100 * time.Millisecond)

			again := buildAndCheck(t, f, b, r, tc.check)
			require.Equal(t, sum, again, "%s built twice from one recipe gives different bytes", tc.path)
		})
	}
}

func buildAndCheck(t *testing.T, f *fixture, b *Builder, r recipe.Recipe, check func(*testing.T, *fixture, []byte)) string {
	t.Helper()

	start := time.Now()

	out, err := b.Build(context.Background(), r)
	require.NoError(t, err)

	t.Logf("built %s: %d bytes in %s", r.Asset.Path, out.Size, time.Since(start).Round(time.Millisecond))

	require.True(t, strings.HasPrefix(out.Path, f.tmp+string(filepath.Separator)), "output %s is in TmpDir", out.Path)

	data, err := os.ReadFile(out.Path)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), out.Size)

	check(t, f, data)

	out.Cleanup()
	out.Cleanup() // twice is harmless
	require.NoFileExists(t, out.Path)

	sum := sha256.Sum256(data)

	return hex.EncodeToString(sum[:])
}

// checkInitramfs: the extensions are appended to the untouched release initramfs.
func checkInitramfs(t *testing.T, f *fixture, data []byte) {
	base, err := synthetic.Initramfs(f.parts.File("amd64", "busybox"), testVersion)
	require.NoError(t, err)

	require.True(t, bytes.HasPrefix(data, base), "the release initramfs comes first, untouched")
	require.Greater(t, len(data), len(base)+512, "extensions appended")
}

// checkSecureBootUKI: a PE signed with the builder's certificate, carrying the PCR public key and the schematic's
// kernel arguments.
func checkSecureBootUKI(t *testing.T, f *fixture, data []byte) {
	img, err := pe.NewFile(bytes.NewReader(data))
	require.NoError(t, err)

	oh, ok := img.OptionalHeader.(*pe.OptionalHeader64)
	require.True(t, ok)

	sec := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	require.NotZero(t, sec.Size, "Authenticode signature present")

	certBlock, _ := pem.Decode(f.keys.SigningCert)
	require.True(t, bytes.Contains(data[sec.VirtualAddress:sec.VirtualAddress+sec.Size], certBlock.Bytes),
		"signed with the builder's certificate")

	cmdline := img.Section(".cmdline")
	require.NotNil(t, cmdline)

	c, err := cmdline.Data()
	require.NoError(t, err)
	require.Contains(t, string(c), "edgefactory.test=1")
	require.NotContains(t, string(c), "wipe=", "the default profile never wipes")

	require.NotNil(t, img.Section(".pcrsig"), "PCR signature")
	require.NotNil(t, img.Section(".pcrpkey"), "PCR public key")
}

// checkInstaller: an image tarball for amd64 whose artifacts layer carries the UKI and systemd-boot.
func checkInstaller(t *testing.T, _ *fixture, data []byte) {
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, nil)
	require.NoError(t, err)

	cfg, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "amd64", cfg.Architecture)

	files := map[string]bool{}
	tr := tar.NewReader(mutate.Extract(img))

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		require.NoError(t, err)

		files[h.Name] = true
	}

	for _, want := range []string{"usr/install/amd64/vmlinuz.efi", "usr/install/amd64/systemd-boot.efi", "usr/bin/installer"} {
		require.True(t, files[want], "installer image lacks %s", want)
	}

	require.False(t, files["usr/install/amd64/placeholder"], "the base's artifacts layer is replaced")
}
