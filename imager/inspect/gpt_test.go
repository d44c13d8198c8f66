package inspect

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/siderolabs/go-blockdevice/v2/partitioning/gpt"
	"github.com/stretchr/testify/require"
)

// imageDevice is a disk image file seen by go-blockdevice (the library the Talos imager partitions images with)
// as a block device of any logical sector size.
type imageDevice struct {
	*os.File
	sectorSize uint
	size       uint64
}

func (d imageDevice) GetSectorSize() uint                     { return d.sectorSize }
func (d imageDevice) GetSize() uint64                         { return d.size }
func (d imageDevice) GetIOSize() (uint, error)                { return d.sectorSize, nil }
func (d imageDevice) GetKernelLastPartitionNum() (int, error) { return 0, nil }
func (d imageDevice) KernelPartitionAdd(int, uint64, uint64) error {
	return nil
}
func (d imageDevice) KernelPartitionResize(int, uint64, uint64) error { return nil }
func (d imageDevice) KernelPartitionDelete(int) error                 { return nil }

const (
	typeEFI   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	typeBIOS  = "21686148-6449-6E6F-744E-656564454649"
	typeLinux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// talosDisk partitions a sparse image like a Talos metal disk image and returns its bytes.
func talosDisk(t *testing.T, sectorSize uint) []byte {
	t.Helper()

	const size = 16 << 20

	f, err := os.Create(filepath.Join(t.TempDir(), "disk.raw"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Truncate(size))

	table, err := gpt.New(imageDevice{File: f, sectorSize: sectorSize, size: size},
		gpt.WithDiskGUID(uuid.MustParse("8f1c0d6e-58a4-4bd5-a3c0-6a3c1b1e0001")))
	require.NoError(t, err)

	for _, p := range []struct {
		name string
		typ  string
		size uint64
		opts []gpt.PartitionOption
	}{
		{"EFI", typeEFI, 4 << 20, nil},
		{"BIOS", typeBIOS, 1 << 20, []gpt.PartitionOption{gpt.WithLegacyBIOSBootableAttribute(true)}},
		{"BOOT", typeLinux, 4 << 20, nil},
		{"META", typeLinux, 1 << 20, nil},
		{"STATE", typeLinux, 2 << 20, nil},
		{"EPHEMERAL", typeLinux, 2 << 20, nil},
	} {
		_, _, err = table.AllocatePartition(p.size, p.name, uuid.MustParse(p.typ), p.opts...)
		require.NoError(t, err, p.name)
	}

	require.NoError(t, table.Write())

	// GRUB's boot.img goes into the MBR boot code area of BIOS-bootable images.
	_, err = f.WriteAt([]byte{0xeb, 0x63, 0x90}, 0)
	require.NoError(t, err)

	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)

	return data
}

func TestGPT(t *testing.T) {
	for _, ss := range []uint{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			data := talosDisk(t, ss)

			rep, err := GPT(bytes.NewReader(data), int64(len(data)))
			require.NoError(t, err)

			require.Equal(t, int(ss), rep.SectorSize)
			require.True(t, rep.MBR.Protective)
			require.True(t, rep.MBR.BootCode)
			require.Equal(t, "8F1C0D6E-58A4-4BD5-A3C0-6A3C1B1E0001", rep.DiskGUID)
			require.Equal(t, uint64(len(data))/uint64(ss)-1, rep.BackupLBA)
			require.Equal(t, []string{"EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"}, rep.Names())

			efi, ok := rep.Partition("EFI")
			require.True(t, ok)
			require.Equal(t, 1, efi.Index)
			require.Equal(t, typeEFI, efi.Type)
			require.Equal(t, "EFI System", efi.TypeName)
			require.Equal(t, int64(4<<20), efi.Size)
			require.Equal(t, int64(efi.FirstLBA)*int64(ss), efi.Offset)

			bios, _ := rep.Partition("BIOS")
			require.Equal(t, "BIOS boot", bios.TypeName)
			require.Equal(t, uint64(1)<<2, bios.Attributes) // legacy BIOS bootable

			state, _ := rep.Partition("STATE")
			require.Equal(t, "Linux filesystem", state.TypeName)
			require.Equal(t, 5, state.Index)
		})
	}
}

func TestGPTRejectsCorruption(t *testing.T) {
	data := talosDisk(t, 512)
	last := len(data) - 512

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
		{"no boot signature", patch(510, 0, 0), ErrMalformed, "boot signature"},
		{"not protective", patch(446+4, 0x83), ErrMalformed, "protective"},
		{"no EFI PART", patch(512, 'X'), ErrMalformed, "EFI PART"},
		{"header CRC", patch(512+40, 0x99), ErrMalformed, "primary header at LBA 1: CRC32"},
		{"entries CRC", patch(1024+56, 'X'), ErrMalformed, "primary partition entries"},
		{"truncated", data[:len(data)-4096], io.ErrUnexpectedEOF, "backup header"},
		{"backup header", patch(last+8, 0x02), ErrMalformed, "backup header"},
		{"backup entries", patch(last-512, 0x7f), ErrMalformed, "backup partition entries"},
		{"short", data[:700], io.ErrUnexpectedEOF, "gpt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := GPT(bytes.NewReader(tc.in), int64(len(tc.in)))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}

func TestMBRWithoutGPT(t *testing.T) {
	s := make([]byte, 512)
	s[510], s[511] = 0x55, 0xaa
	copy(s[446:], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0x00, 0x08, 0, 0, 0x00, 0x00, 0x01, 0})

	rep, err := MBR(bytes.NewReader(s))
	require.NoError(t, err)
	require.False(t, rep.BootCode)
	require.False(t, rep.Protective)
	require.Equal(t, []MBRPartition{{Index: 1, Type: 0x0c, Bootable: true, FirstLBA: 2048, Sectors: 65536}}, rep.Partitions)

	_, err = GPT(bytes.NewReader(s), 512)
	require.ErrorIs(t, err, ErrMalformed)

	s[446] = 0x12
	_, err = MBR(bytes.NewReader(s))
	require.ErrorIs(t, err, ErrMalformed)
}
