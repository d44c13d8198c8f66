package inspect

import (
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

// makeISO builds an ISO like grub-mkrescue's: a BIOS no-emulation boot image and an EFI FAT image as El Torito
// entries, plus a kernel and a grub config.
func makeISO(t *testing.T, extra ...string) (string, []byte) {
	t.Helper()

	src := t.TempDir()
	writeFile(t, src, "boot/grub/grub.cfg", []byte("menuentry \"Talos\" {\n  linux /boot/vmlinuz\n}\n"))
	writeFile(t, src, "boot/vmlinuz", randomBytes(5000, 3))
	writeFile(t, src, "boot/grub/i386-pc/eltorito.img", randomBytes(2048, 4))
	writeFile(t, src, "efiboot.img", randomBytes(64<<10, 5))
	writeFile(t, src, "EFI/BOOT/BOOTX64.EFI", randomBytes(3000, 6))

	out := filepath.Join(t.TempDir(), "test.iso")
	args := append([]string{"-as", "mkisofs"}, extra...)
	args = append(args, "-V", "TALOS_V1_13_0", "-o", out,
		"-c", "boot.catalog",
		"-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
		"-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot",
		src)
	run(t, "", nil, "xorriso", args...)

	data, err := os.ReadFile(out)
	require.NoError(t, err)

	return out, data
}

func TestISOWithRockRidge(t *testing.T) {
	_, data := makeISO(t, "-R", "-J")

	rep, err := ISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)

	require.Equal(t, "TALOS_V1_13_0", rep.VolumeID)
	require.Equal(t, 2048, rep.BlockSize)
	require.Equal(t, int64(len(data)), int64(rep.VolumeBlocks)*2048)
	require.True(t, rep.RockRidge)
	require.True(t, rep.Joliet)
	require.NotZero(t, rep.BootCatalog)

	require.Len(t, rep.BootEntries, 2)
	require.Equal(t, PlatformBIOS, rep.BootEntries[0].Platform)
	require.Equal(t, "x86 BIOS", rep.BootEntries[0].PlatformName)
	require.True(t, rep.BootEntries[0].Bootable)
	require.Equal(t, "no emulation", rep.BootEntries[0].Media)
	require.Equal(t, uint16(4), rep.BootEntries[0].SectorCount)
	require.Equal(t, PlatformEFI, rep.BootEntries[1].Platform)
	require.Equal(t, "EFI", rep.BootEntries[1].PlatformName)

	require.ElementsMatch(t, []string{
		"boot.catalog", "boot/grub/grub.cfg", "boot/grub/i386-pc/eltorito.img", "boot/vmlinuz",
		"efiboot.img", "EFI/BOOT/BOOTX64.EFI",
	}, rep.Files)

	fsys, err := OpenISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.NoError(t, fstest.TestFS(fsys, "boot/grub/grub.cfg", "boot/vmlinuz", "EFI/BOOT/BOOTX64.EFI"))

	cfg, err := fs.ReadFile(fsys, "boot/grub/grub.cfg")
	require.NoError(t, err)
	require.Contains(t, string(cfg), "linux /boot/vmlinuz")

	// Lookups ignore case; the boot entries point at the files' data.
	efi, err := fs.ReadFile(fsys, "efi/boot/bootx64.efi")
	require.NoError(t, err)
	require.Equal(t, randomBytes(3000, 6), efi)

	img := make([]byte, 64<<10)
	_, err = io.ReadFull(io.NewSectionReader(bytes.NewReader(data), rep.BootEntries[1].Offset(), 64<<10), img)
	require.NoError(t, err)
	require.Equal(t, randomBytes(64<<10, 5), img)
}

func TestISOPlainNames(t *testing.T) {
	_, data := makeISO(t, "--norock", "-iso-level", "2")

	rep, err := ISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.False(t, rep.RockRidge)
	require.False(t, rep.Joliet)
	require.Contains(t, rep.Files, "boot/vmlinuz") // VMLINUZ.;1
	require.Contains(t, rep.Files, "boot/grub/grub.cfg")

	fsys, err := OpenISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)

	for _, name := range []string{"boot/vmlinuz", "BOOT/VMLINUZ", "BOOT/GRUB/GRUB.CFG;1"} {
		_, err = fs.Stat(fsys, name)
		require.NoError(t, err, name)
	}

	_, err = fs.Stat(fsys, "boot/missing")
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.NoError(t, fstest.TestFS(fsys, "boot/vmlinuz"))
}

func TestISORejectsCorruption(t *testing.T) {
	_, data := makeISO(t, "-R")
	rep, err := ISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)

	rootLBA := binary.LittleEndian.Uint32(data[16*2048+156+2:])

	patch := func(off int, b ...byte) []byte {
		d := bytes.Clone(data)
		copy(d[off:], b)

		return d
	}

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"no CD001", patch(16*2048+1, 'X'), ErrMalformed, "identifier"},
		{"too short", data[:16*2048+100], io.ErrUnexpectedEOF, "sector 16"},
		{"truncated", data[:len(data)/2], io.ErrUnexpectedEOF, "volume is"},
		{"block size halves differ", patch(16*2048+130, 0x04, 0x00), ErrMalformed, "block size"},
		{"catalog key", patch(int(rep.BootCatalog)*2048+30, 0x00), ErrMalformed, "validation entry"},
		{"catalog checksum", patch(int(rep.BootCatalog)*2048+4, 'Z'), ErrMalformed, "checksum"},
		{"boot indicator", patch(int(rep.BootCatalog)*2048+32, 0x42), ErrMalformed, "boot indicator"},
		{"boot image past end", patch(int(rep.BootCatalog)*2048+32+8, 0xff, 0xff, 0xff, 0x00), io.ErrUnexpectedEOF, "el torito entry 1 (x86 BIOS)"},
		{"root extent past end", patch(16*2048+156+2, 0xff, 0xff, 0xff, 0x00), io.ErrUnexpectedEOF, "past the image end"},
		// The third record of the root directory ("." and ".." come first) gets a length below the minimum.
		{"short record", patch(int(rootLBA)*2048+int(data[int(rootLBA)*2048])+int(data[int(rootLBA)*2048+int(data[int(rootLBA)*2048])]), 20), ErrMalformed, "record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ISO(bytes.NewReader(tc.in), int64(len(tc.in)))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}

// TestISOAppendedEFIPartition builds a UEFI ISO with the xorrisofs arguments of Talos' pkg/imager/iso (uefi.go):
// the EFI boot image is not a file of the ISO 9660 tree but MBR partition 2, which El Torito points at.
func TestISOAppendedEFIPartition(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "EFI/Linux/Talos-v1.13.0.efi", randomBytes(9000, 13))
	writeFile(t, src, "loader/loader.conf", []byte("timeout 10\n"))

	efiboot := filepath.Join(t.TempDir(), "efiboot.img")
	require.NoError(t, os.WriteFile(efiboot, randomBytes(1<<20, 14), 0o644))

	out := filepath.Join(t.TempDir(), "metal-amd64.iso")
	run(t, "", nil, "xorrisofs",
		"-e", "--interval:appended_partition_2:all::", "-append_partition", "2", "0xef", efiboot,
		"-partition_cyl_align", "all", "-partition_offset", "16", "-iso_mbr_part_type", "0x83",
		"-no-emul-boot", "-m", "efiboot.img", "-iso-level", "3",
		"-volid", "TALOS_V1_13_0", "-o", out, src, "--")

	data, err := os.ReadFile(out)
	require.NoError(t, err)

	rep, err := ISO(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Equal(t, "TALOS_V1_13_0", rep.VolumeID)
	require.True(t, rep.HybridMBR)
	require.ElementsMatch(t, []string{"EFI/Linux/Talos-v1.13.0.efi", "loader/loader.conf", "boot.catalog"}, rep.Files)

	require.Len(t, rep.BootEntries, 1)
	efi := rep.BootEntries[0]
	require.Equal(t, PlatformEFI, efi.Platform)
	require.Equal(t, randomBytes(1<<20, 14), data[efi.Offset():efi.Offset()+1<<20])

	mbr, err := MBR(bytes.NewReader(data))
	require.NoError(t, err)
	require.Len(t, mbr.Partitions, 2)
	require.Equal(t, byte(0x83), mbr.Partitions[0].Type)
	require.Equal(t, byte(0xef), mbr.Partitions[1].Type)
	require.Equal(t, efi.Offset(), int64(mbr.Partitions[1].FirstLBA)*512)

	cut := data[:efi.Offset()+4096]
	_, err = ISO(bytes.NewReader(cut), int64(len(cut)))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// TestISOGrubMkrescue reads an ISO made the way the Talos imager makes its BIOS+UEFI ISOs.
func TestISOGrubMkrescue(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 20 MB ISO")
	}

	needTool(t, "grub-mkrescue")

	src := t.TempDir()
	writeFile(t, src, "boot/grub/grub.cfg", []byte("set default=0\n"))
	writeFile(t, src, "boot/vmlinuz", randomBytes(1000, 7))

	out := filepath.Join(t.TempDir(), "rescue.iso")
	run(t, "", nil, "grub-mkrescue", "-o", out, src)

	f, err := os.Open(out)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })

	st, err := f.Stat()
	require.NoError(t, err)

	rep, err := ISO(f, st.Size())
	require.NoError(t, err)
	t.Logf("%+v", rep.BootEntries)

	require.True(t, rep.RockRidge)
	require.True(t, rep.HybridMBR)
	require.Len(t, rep.BootEntries, 2)
	require.Equal(t, PlatformBIOS, rep.BootEntries[0].Platform)
	require.Equal(t, PlatformEFI, rep.BootEntries[1].Platform)
	require.Contains(t, rep.Files, "boot/grub/grub.cfg")
	require.Contains(t, rep.Files, "boot/vmlinuz")

	// The EFI boot image is a FAT file system.
	boot := make([]byte, 512)
	_, err = f.ReadAt(boot, rep.BootEntries[1].Offset())
	require.NoError(t, err)
	require.Equal(t, []byte{0x55, 0xaa}, boot[510:])
}
