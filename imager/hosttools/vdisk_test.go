package hosttools

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// vhdFooter builds a footer as qemu-img writes one, with a given timestamp and unique id.
func vhdFooter(stamp uint32, id byte) []byte {
	f := make([]byte, vhdFooterSize)
	copy(f, vhdCookie)
	binary.BigEndian.PutUint32(f[8:], 2)           // features
	binary.BigEndian.PutUint32(f[12:], 0x10000)    // version
	binary.BigEndian.PutUint64(f[16:], ^uint64(0)) // data offset: fixed disk
	binary.BigEndian.PutUint32(f[vhdTimestampOff:], stamp)
	copy(f[28:], "qemu")
	binary.BigEndian.PutUint64(f[48:], 64<<20) // current size
	binary.BigEndian.PutUint32(f[60:], 2)      // fixed
	copy(f[vhdUniqueIDOff:vhdUniqueIDOff+vhdUniqueIDLen], bytes.Repeat([]byte{id}, vhdUniqueIDLen))

	return f
}

// vhdChecksumOK checks a footer's checksum the way the specification defines it.
func vhdChecksumOK(f []byte) bool {
	var sum uint32

	for i, b := range f {
		if i < vhdChecksumOff || i >= vhdChecksumOff+4 {
			sum += uint32(b)
		}
	}

	return binary.BigEndian.Uint32(f[vhdChecksumOff:]) == ^sum
}

func TestNormalizeVHDFooter(t *testing.T) {
	at := time.Unix(testEpoch, 0)

	a, b := vhdFooter(100, 0xaa), vhdFooter(200, 0xbb)
	require.NoError(t, normalizeVHDFooter(a, at))
	require.NoError(t, normalizeVHDFooter(b, at))

	require.Equal(t, a, b, "clock and random id gone")
	require.EqualValues(t, testEpoch-946684800, binary.BigEndian.Uint32(a[vhdTimestampOff:]), "seconds since 2000")
	require.True(t, vhdChecksumOK(a))
	require.Equal(t, byte(0x50), a[vhdUniqueIDOff+6]&0xf0, "UUID version 5")
	require.Equal(t, byte(0x80), a[vhdUniqueIDOff+8]&0xc0, "RFC 4122 variant")

	again := bytes.Clone(a)
	require.NoError(t, normalizeVHDFooter(again, at))
	require.Equal(t, a, again, "idempotent")

	// The id follows the disk's metadata: another size, another id.
	c := vhdFooter(100, 0xaa)
	binary.BigEndian.PutUint64(c[48:], 128<<20)
	require.NoError(t, normalizeVHDFooter(c, at))
	require.NotEqual(t, a[vhdUniqueIDOff:vhdUniqueIDOff+vhdUniqueIDLen], c[vhdUniqueIDOff:vhdUniqueIDOff+vhdUniqueIDLen])

	require.Error(t, normalizeVHDFooter(make([]byte, vhdFooterSize), at), "no cookie")
	require.Error(t, normalizeVHDFooter(vhdFooter(1, 1)[:511], at), "short")
	require.Error(t, normalizeVHDFooter(vhdFooter(1, 1), time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)), "before 2000")
}

func TestNormalizeVHDFile(t *testing.T) {
	at := time.Unix(testEpoch, 0)
	dir := t.TempDir()

	tests := []struct {
		name       string
		head       []byte // what the file starts with
		headCopied bool
	}{
		{name: "dynamic: footer copy at the start", head: vhdFooter(100, 0xaa), headCopied: true},
		{name: "fixed: data at the start", head: bytes.Repeat([]byte{7}, vhdFooterSize)},
		{name: "fixed: data that looks like a footer", head: vhdFooter(5, 5)},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "disk.vhd")
			data := append(append(bytes.Clone(tt.head), make([]byte, 4096)...), vhdFooter(100, 0xaa)...)
			require.NoError(t, os.WriteFile(p, data, 0o644))

			require.NoError(t, normalizeVHD(p, at))

			got, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Len(t, got, len(data))

			footer := got[len(got)-vhdFooterSize:]
			require.True(t, vhdChecksumOK(footer))
			require.NotEqual(t, data[len(data)-vhdFooterSize:], footer)

			if tt.headCopied {
				require.Equal(t, footer, got[:vhdFooterSize])
			} else {
				require.Equal(t, tt.head, got[:vhdFooterSize], "data is never touched")
			}
		})
	}

	short := filepath.Join(dir, "short.vhd")
	require.NoError(t, os.WriteFile(short, []byte("conectix"), 0o644))
	require.Error(t, normalizeVHD(short, at))
}

func TestNormalizeVMDKDescriptor(t *testing.T) {
	at := time.Unix(testEpoch, 0)
	desc := func(cid string) []byte {
		d := []byte("# Disk DescriptorFile\nversion=1\nCID=" + cid + "\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n")

		return append(d, make([]byte, 100)...)
	}

	a, b := desc("67347876"), desc("a594b2b6")
	require.True(t, normalizeVMDKDescriptor(a, at))
	require.True(t, normalizeVMDKDescriptor(b, at))
	require.Equal(t, a, b)
	require.Len(t, a, len(desc("00000000")), "size unchanged")
	require.Regexp(t, `\nCID=[0-9a-f]{8}\nparentCID=ffffffff\n`, string(a), "parentCID untouched")
	require.NotContains(t, string(a), "CID=67347876")

	c := desc("67347876")
	require.True(t, normalizeVMDKDescriptor(c, at.Add(time.Second)))
	require.NotEqual(t, a, c, "the CID follows SOURCE_DATE_EPOCH")

	// qemu-img writes the CID with %x: a small one has fewer digits, and the padding makes room for all 8.
	short := desc("4b1")
	require.True(t, normalizeVMDKDescriptor(short, at))
	require.Equal(t, a[:len(a)-5], short[:len(a)-5], "the same CID, the text shifted into the padding")
	require.Len(t, short, len(desc("4b1")))

	require.False(t, normalizeVMDKDescriptor([]byte("version=1\nparentCID=ffffffff\n"), at), "no CID")
	require.False(t, normalizeVMDKDescriptor([]byte("CID=1\n"), at), "no room")
}
