package inspect

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

func TestCompressionRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("talos edge factory "), 1000)

	for _, tc := range []struct {
		name string
		in   []byte
		want Format
	}{
		{"gzip", gzipOf(t, data), FormatGzip},
		{"xz", xzOf(t, data, xz.WriterConfig{CheckSum: xz.CRC32}), FormatXZ},
		{"zstd", zstdOf(t, data), FormatZstd},
		{"none", data, FormatNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compression(bytes.NewReader(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, f)

			rc, err := Decompress(bytes.NewReader(tc.in), f)
			require.NoError(t, err)
			got, err := io.ReadAll(rc)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			require.Equal(t, data, got)

			f, rc, err = Open(bytes.NewReader(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, f)
			got, err = io.ReadAll(rc)
			require.NoError(t, err)
			require.Equal(t, data, got)
		})
	}
}

func TestCompressionShortInputs(t *testing.T) {
	_, err := Compression(bytes.NewReader(nil))
	require.ErrorIs(t, err, ErrMalformed)

	f, err := Compression(bytes.NewReader([]byte{0x1f, 0x8b}))
	require.NoError(t, err)
	require.Equal(t, FormatGzip, f)

	// Five of the six xz magic bytes are not xz.
	f, err = Compression(bytes.NewReader(magicXZ[:5]))
	require.NoError(t, err)
	require.Equal(t, FormatNone, f)
}

func TestDecompressRejectsCorruption(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)

	for _, tc := range []struct {
		name string
		in   []byte
		f    Format
	}{
		{"gzip", gzipOf(t, data), FormatGzip},
		{"xz", xzOf(t, data, xz.WriterConfig{CheckSum: xz.CRC32}), FormatXZ},
		{"zstd", zstdOf(t, data), FormatZstd},
	} {
		t.Run(tc.name+"/flipped", func(t *testing.T) {
			bad := bytes.Clone(tc.in)
			bad[len(bad)-6] ^= 0x55 // inside the checksum or trailer

			rc, err := Decompress(bytes.NewReader(bad), tc.f)
			if err == nil {
				_, err = io.ReadAll(rc)
			}

			require.Error(t, err)
		})
		t.Run(tc.name+"/truncated", func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tc.in[:len(tc.in)/2]), tc.f)
			if err == nil {
				_, err = io.ReadAll(rc)
			}

			require.Error(t, err)
		})
	}

	_, err := Decompress(bytes.NewReader([]byte("not gzip at all")), FormatGzip)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestXZCheck(t *testing.T) {
	data := []byte("initramfs")

	for _, tc := range []struct {
		cfg  xz.WriterConfig
		want string
	}{
		{xz.WriterConfig{CheckSum: xz.CRC32}, "CRC32"},
		{xz.WriterConfig{}, "CRC64"}, // ulikunitz' default: the kernel would refuse it
		{xz.WriterConfig{CheckSum: xz.SHA256}, "SHA-256"},
		{xz.WriterConfig{NoCheckSum: true}, "None"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got, err := XZCheck(bytes.NewReader(xzOf(t, data, tc.cfg)))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	good := xzOf(t, data, xz.WriterConfig{CheckSum: xz.CRC32})

	for name, in := range map[string][]byte{
		"wrong magic":   append([]byte{0xfd, '7', 'z', 'X', 'Y', 0}, good[6:]...),
		"flags CRC":     append(append(bytes.Clone(good[:7]), 0x04), good[8:]...),
		"gzip not xz":   gzipOf(t, data),
		"truncated hdr": good[:10],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := XZCheck(bytes.NewReader(in))
			require.Error(t, err)
		})
	}

	_, err := XZCheck(bytes.NewReader(good[:10]))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
