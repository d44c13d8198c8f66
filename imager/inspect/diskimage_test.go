package inspect

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// qemuImage runs qemu-img create and returns the image bytes.
func qemuImage(t *testing.T, name string, args ...string) []byte {
	t.Helper()

	dir := t.TempDir()
	args = append(args, filepath.Join(dir, name))

	if len(args) > 0 && args[0] == "create" {
		args = append(args, "16M")
	}

	run(t, dir, nil, "qemu-img", args...)

	data, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)

	return data
}

func TestQCOW2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want QCOW2Report
	}{
		{"v3 talos options", []string{"-o", "cluster_size=8k"},
			QCOW2Report{Version: 3, ClusterBits: 13, ClusterSize: 8192, RefcountBits: 16, HeaderLength: 112, CompressionType: "zlib"}},
		{"v2", []string{"-o", "compat=0.10"},
			QCOW2Report{Version: 2, ClusterBits: 16, ClusterSize: 65536, RefcountBits: 16, HeaderLength: 72, CompressionType: "zlib"}},
		{"zstd", []string{"-o", "compression_type=zstd"},
			QCOW2Report{Version: 3, ClusterBits: 16, ClusterSize: 65536, RefcountBits: 16, HeaderLength: 112, CompressionType: "zstd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := qemuImage(t, "disk.qcow2", append([]string{"create", "-f", "qcow2"}, tc.args...)...)

			rep, err := QCOW2(bytes.NewReader(data))
			require.NoError(t, err)
			require.Equal(t, uint64(16<<20), rep.VirtualSize)
			require.Equal(t, tc.want.Version, rep.Version)
			require.Equal(t, tc.want.ClusterBits, rep.ClusterBits)
			require.Equal(t, tc.want.ClusterSize, rep.ClusterSize)
			require.Equal(t, tc.want.RefcountBits, rep.RefcountBits)
			require.Equal(t, tc.want.HeaderLength, rep.HeaderLength)
			require.Equal(t, tc.want.CompressionType, rep.CompressionType)
			require.Empty(t, rep.BackingFile)
			require.Zero(t, rep.CryptMethod)
		})
	}
}

func TestQCOW2BackingFileAndCompressedStream(t *testing.T) {
	dir := t.TempDir()
	run(t, dir, nil, "qemu-img", "create", "-f", "qcow2", filepath.Join(dir, "base.qcow2"), "16M")
	run(t, dir, nil, "qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", filepath.Join(dir, "overlay.qcow2"))

	data, err := os.ReadFile(filepath.Join(dir, "overlay.qcow2"))
	require.NoError(t, err)

	// As served: oracle-amd64.qcow2.xz style, read through the decompressor.
	f, rc, err := Open(bytes.NewReader(xzOf(t, data, crc32xz)))
	require.NoError(t, err)
	require.Equal(t, FormatXZ, f)

	rep, err := QCOW2(rc)
	require.NoError(t, err)
	require.Equal(t, "base.qcow2", rep.BackingFile)
	require.Equal(t, uint64(16<<20), rep.VirtualSize)
	require.Contains(t, rep.Extensions, uint32(0xe2792aca)) // backing file format
}

func TestQCOW2RejectsCorruption(t *testing.T) {
	data := qemuImage(t, "disk.qcow2", "create", "-f", "qcow2", "-o", "cluster_size=8k")

	patch := func(off int, v uint32) []byte {
		d := bytes.Clone(data)
		binary.BigEndian.PutUint32(d[off:], v)

		return d
	}

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"magic", patch(0, 0x51464900), ErrMalformed, "magic"},
		{"version", patch(4, 4), ErrMalformed, "version 4"},
		{"cluster bits", patch(20, 30), ErrMalformed, "cluster bits 30"},
		{"L1 too small", patch(36, 0), ErrMalformed, "L1 table"},
		{"corrupt bit", patch(76, qcow2IncompatCorrupt), ErrMalformed, "marked corrupt"},
		{"refcount table unaligned", patch(52, 0x1234), ErrMalformed, "refcount table"},
		{"truncated", data[:50], io.ErrUnexpectedEOF, "qcow2 header"},
		{"truncated extensions", data[:120], io.ErrUnexpectedEOF, "extension"},
		{"vmdk not qcow2", []byte("KDMV" + string(make([]byte, 100))), ErrMalformed, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := QCOW2(bytes.NewReader(tc.in))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}

func TestVHD(t *testing.T) {
	// azure-amd64.vhd options: subformat=fixed,force_size.
	fixed := qemuImage(t, "disk.vhd", "create", "-f", "vpc", "-o", "subformat=fixed,force_size")

	rep, err := VHD(bytes.NewReader(fixed), int64(len(fixed)))
	require.NoError(t, err)
	require.Equal(t, "fixed", rep.DiskType)
	require.Equal(t, uint64(16<<20), rep.CurrentSize)
	require.Equal(t, "qem2", rep.CreatorApp)
	require.Len(t, rep.UUID, 36)

	dynamic := qemuImage(t, "dyn.vhd", "create", "-f", "vpc")

	rep, err = VHD(bytes.NewReader(dynamic), int64(len(dynamic)))
	require.NoError(t, err)
	require.Equal(t, "dynamic", rep.DiskType)
	require.NotZero(t, rep.Cylinders)
}

func TestVHDRejectsCorruption(t *testing.T) {
	fixed := qemuImage(t, "disk.vhd", "create", "-f", "vpc", "-o", "subformat=fixed,force_size")
	dynamic := qemuImage(t, "dyn.vhd", "create", "-f", "vpc")
	foot := len(fixed) - 512

	patch := func(d []byte, off int, b ...byte) []byte {
		d = bytes.Clone(d)
		copy(d[off:], b)

		return d
	}

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"cookie", patch(fixed, foot, 'X'), ErrMalformed, "cookie"},
		{"checksum", patch(fixed, foot+100, 0xff), ErrMalformed, "checksum"},
		{"missing data", concat(fixed[:1<<20], fixed[foot:]), io.ErrUnexpectedEOF, "holds 1048576 bytes"},
		{"no footer", fixed[:foot], ErrMalformed, "cookie"},
		{"tiny", fixed[:100], io.ErrUnexpectedEOF, "smaller than the footer"},
		{"dynamic header", patch(dynamic, 512+20, 0xff), ErrMalformed, "dynamic header: checksum"},
		{"dynamic footer copy", patch(dynamic, 100, 0xff), ErrMalformed, "footer copy"},
		{"qcow2 not vhd", qemuImage(t, "disk.qcow2", "create", "-f", "qcow2"), ErrMalformed, "cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VHD(bytes.NewReader(tc.in), int64(len(tc.in)))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}
