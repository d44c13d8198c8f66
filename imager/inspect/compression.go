package inspect

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Format is a compression format recognised by its magic number.
type Format string

// Compression formats. FormatNone means the data does not start with a known magic.
const (
	FormatNone Format = "none"
	FormatGzip Format = "gzip"
	FormatXZ   Format = "xz"
	FormatZstd Format = "zstd"
)

var (
	magicXZ   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip = []byte{0x1f, 0x8b}
)

// maxMagic is the longest magic FormatOf looks at.
const maxMagic = 6

// FormatOf names the compression of data that starts with head (at least 6 bytes for a certain answer).
func FormatOf(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, magicXZ):
		return FormatXZ
	case bytes.HasPrefix(head, magicZstd):
		return FormatZstd
	case bytes.HasPrefix(head, magicGzip):
		return FormatGzip
	default:
		return FormatNone
	}
}

// Compression reads the first bytes of r (consuming up to 6 of them) and names its compression format.
// Empty input is an error: no asset is empty.
func Compression(r io.Reader) (Format, error) {
	head := make([]byte, maxMagic)

	n, err := io.ReadFull(r, head)
	if n == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return "", malformed("compression: empty input")
		}

		return "", fmt.Errorf("compression: %w", err)
	}

	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("compression: %w", err)
	}

	return FormatOf(head[:n]), nil
}

// Decompress returns the decompressed content of r, which must be compressed with f. Concatenated gzip members and
// xz streams and several zstd frames are read as one stream, as the command line tools do. Integrity checks (CRC32,
// CRC64, SHA-256, xxhash) are verified as the data is read: the error surfaces from Read.
func Decompress(r io.Reader, f Format) (io.ReadCloser, error) {
	switch f {
	case FormatNone:
		return io.NopCloser(r), nil
	case FormatGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip header: %w", asMalformed(err))
		}

		return zr, nil
	case FormatXZ:
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz stream header: %w", asMalformed(err))
		}

		return io.NopCloser(zr), nil
	case FormatZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}

		return zr.IOReadCloser(), nil
	default:
		return nil, fmt.Errorf("decompress: unknown format %q", f)
	}
}

// Open detects the compression of r and returns its decompressed content.
func Open(r io.Reader) (Format, io.ReadCloser, error) {
	br := bufio.NewReader(r)

	head, err := br.Peek(maxMagic)
	if len(head) == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return "", nil, malformed("compression: empty input")
		}

		return "", nil, fmt.Errorf("compression: %w", err)
	}

	f := FormatOf(head)

	rc, err := Decompress(br, f)

	return f, rc, err
}

// XZ check types (xz file format 1.0.4, section 2.1.1.2).
var xzCheckNames = map[byte]string{0x00: "None", 0x01: "CRC32", 0x04: "CRC64", 0x0a: "SHA-256"}

// XZCheck reads the 12-byte header of an xz stream and returns the integrity check it declares: "None", "CRC32",
// "CRC64" or "SHA-256". The Linux kernel unpacks an initramfs only when this is CRC32 (or None).
func XZCheck(r io.Reader) (string, error) {
	var hdr [12]byte

	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", fmt.Errorf("xz stream header: %w", short(err))
	}

	return parseXZHeader(hdr[:])
}

// parseXZHeader validates an xz stream header and names its check type.
func parseXZHeader(hdr []byte) (string, error) {
	if !bytes.Equal(hdr[:6], magicXZ) {
		return "", malformed("xz stream header: magic is % x, want % x", hdr[:6], magicXZ)
	}

	if got, want := binary.LittleEndian.Uint32(hdr[8:12]), crc32.ChecksumIEEE(hdr[6:8]); got != want {
		return "", malformed("xz stream header: flags CRC32 is %#08x, computed %#08x", got, want)
	}

	if hdr[6] != 0 || hdr[7]&0xf0 != 0 {
		return "", malformed("xz stream header: reserved flag bits set (%#02x %#02x)", hdr[6], hdr[7])
	}

	return xzCheckName(hdr[7] & 0x0f), nil
}

func xzCheckName(id byte) string {
	if name, ok := xzCheckNames[id]; ok {
		return name
	}

	return fmt.Sprintf("reserved-%#x", id)
}

// xzCheckSize is the size of the check field for a check ID: 0, then 4, 8, 16, 32, 64 bytes in groups of three.
func xzCheckSize(id byte) int {
	if id == 0 {
		return 0
	}

	return 4 << ((id - 1) / 3)
}

// asMalformed marks decoder errors about the data (not I/O) as structural defects.
func asMalformed(err error) error {
	switch {
	case err == nil:
		return nil
	case err == io.EOF: //nolint:errorlint // only a bare EOF means "nothing more"; wrapped ones carry context
		return io.ErrUnexpectedEOF
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, new(flate.CorruptInputError)):
		return markMalformed(err)
	default:
		return err
	}
}
