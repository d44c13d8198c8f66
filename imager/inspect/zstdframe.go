package inspect

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// zstdFramer follows consecutive zstd frames (RFC 8878) and skippable frames; the member ends where the next bytes
// are not a frame magic.
type zstdFramer struct {
	state    int
	checksum bool
	frames   int
	blocks   int
}

const (
	zstdFrameStart = iota
	zstdBlock
	zstdChecksum
	zstdBetween
)

const zstdMaxBlock = 128 << 10

func isSkippable(magic []byte) bool {
	return len(magic) >= 4 && binary.LittleEndian.Uint32(magic)&0xfffffff0 == 0x184d2a50
}

func (z *zstdFramer) where() string { return fmt.Sprintf("zstd frame %d block %d", z.frames, z.blocks) }

func (z *zstdFramer) segment(src *bufio.Reader) ([]byte, int64, error) {
	switch z.state {
	case zstdBetween:
		head, _ := src.Peek(4)
		if !bytes.Equal(head, magicZstd) && !isSkippable(head) {
			return nil, 0, io.EOF
		}

		z.state = zstdFrameStart

		return z.segment(src)
	case zstdFrameStart:
		return z.frameHeader(src)
	case zstdBlock:
		return z.block(src)
	default: // zstdChecksum
		z.state = zstdBetween
		hdr, err := take(src, nil, 4, fmt.Sprintf("zstd frame %d checksum", z.frames))

		return hdr, 0, err
	}
}

func (z *zstdFramer) frameHeader(src *bufio.Reader) ([]byte, int64, error) {
	z.frames++
	where := fmt.Sprintf("zstd frame %d header", z.frames)

	hdr, err := take(src, nil, 4, where)
	if err != nil {
		return hdr, 0, err
	}

	if isSkippable(hdr) {
		if hdr, err = take(src, hdr, 4, where); err != nil {
			return hdr, 0, err
		}

		z.state = zstdBetween

		return hdr, int64(binary.LittleEndian.Uint32(hdr[4:8])), nil
	}

	if !bytes.Equal(hdr, magicZstd) {
		return hdr, 0, malformed("%s: magic is % x, want % x", where, hdr, magicZstd)
	}

	if hdr, err = take(src, hdr, 1, where); err != nil {
		return hdr, 0, err
	}

	fhd := hdr[4]
	if fhd&0x08 != 0 {
		return hdr, 0, malformed("%s: reserved descriptor bit set (%#02x)", where, fhd)
	}

	singleSegment := fhd&0x20 != 0
	rest := []int{0, 1, 2, 4}[fhd&0x03] + []int{0, 2, 4, 8}[fhd>>6]

	if !singleSegment {
		rest++ // window descriptor
	} else if fhd>>6 == 0 {
		rest++ // one-byte content size
	}

	if hdr, err = take(src, hdr, rest, where); err != nil {
		return hdr, 0, err
	}

	z.checksum = fhd&0x04 != 0
	z.state = zstdBlock
	z.blocks = 0

	return hdr, 0, nil
}

func (z *zstdFramer) block(src *bufio.Reader) ([]byte, int64, error) {
	z.blocks++
	where := fmt.Sprintf("zstd frame %d block %d", z.frames, z.blocks)

	hdr, err := take(src, nil, 3, where)
	if err != nil {
		return hdr, 0, err
	}

	bh := uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16
	size := int64(bh >> 3)

	if bh&1 != 0 { // last block
		z.state = zstdBetween
		if z.checksum {
			z.state = zstdChecksum
		}
	}

	switch (bh >> 1) & 3 {
	case 0: // raw
	case 1: // RLE: one byte repeated size times
		size = 1
	case 2: // compressed
		if size > zstdMaxBlock {
			return hdr, 0, malformed("%s: compressed size %d exceeds %d", where, size, zstdMaxBlock)
		}
	default:
		return hdr, 0, malformed("%s: reserved block type", where)
	}

	return hdr, size, nil
}
