package inspect

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// xzFramer follows an xz stream (xz file format 1.0.4): stream header, blocks whose LZMA2 chunks carry their own
// sizes, index, footer. Any filter chain is accepted as long as it ends in LZMA2, which every xz stream does.
type xzFramer struct {
	state     int
	check     byte
	flags     [2]byte
	blockData int64 // compressed bytes of the current block, for its padding
	blocks    int
}

const (
	xzStreamHeader = iota
	xzBlockOrIndex
	xzChunk
	xzDone
)

func (x *xzFramer) where() string { return fmt.Sprintf("xz block %d", x.blocks) }

func (x *xzFramer) segment(src *bufio.Reader) ([]byte, int64, error) {
	switch x.state {
	case xzStreamHeader:
		hdr, err := take(src, nil, 12, "xz stream header")
		if err != nil {
			return hdr, 0, err
		}

		if _, err = parseXZHeader(hdr); err != nil {
			return hdr, 0, err
		}

		x.check = hdr[7] & 0x0f
		copy(x.flags[:], hdr[6:8])
		x.state = xzBlockOrIndex

		return hdr, 0, nil
	case xzBlockOrIndex:
		first, err := take(src, nil, 1, "xz block header")
		if err != nil {
			return first, 0, err
		}

		if first[0] == 0 {
			x.state = xzDone

			return x.indexAndFooter(src, first)
		}

		x.state = xzChunk
		x.blockData = 0
		x.blocks++

		return x.blockHeader(src, first)
	case xzChunk:
		return x.chunk(src)
	default:
		return nil, 0, io.EOF
	}
}

// blockHeader reads and validates a block header whose size byte has been read.
func (x *xzFramer) blockHeader(src *bufio.Reader, hdr []byte) ([]byte, int64, error) {
	size := (int(hdr[0]) + 1) * 4

	hdr, err := take(src, hdr, size-1, fmt.Sprintf("xz block %d header", x.blocks))
	if err != nil {
		return hdr, 0, err
	}

	if got, want := binary.LittleEndian.Uint32(hdr[size-4:]), crc32.ChecksumIEEE(hdr[:size-4]); got != want {
		return hdr, 0, malformed("xz block %d header: CRC32 is %#08x, computed %#08x", x.blocks, got, want)
	}

	flags := hdr[1]
	if flags&0x3c != 0 {
		return hdr, 0, malformed("xz block %d header: reserved flag bits set (%#02x)", x.blocks, flags)
	}

	br := bytes.NewReader(hdr[2 : size-4])

	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, err := xzVarint(br); err != nil {
				return hdr, 0, fmt.Errorf("xz block %d header sizes: %w", x.blocks, err)
			}
		}
	}

	var last uint64

	for i := 0; i <= int(flags&0x03); i++ {
		id, err := xzVarint(br)
		if err != nil {
			return hdr, 0, fmt.Errorf("xz block %d filter %d: %w", x.blocks, i, err)
		}

		propSize, err := xzVarint(br)
		if err != nil || propSize > uint64(br.Len()) {
			return hdr, 0, malformed("xz block %d filter %d: properties overrun the header", x.blocks, i)
		}

		if id == 0x21 && propSize == 1 {
			if err := xzCheckDict(x.blocks, hdr[size-4-br.Len()]); err != nil {
				return hdr, 0, err
			}
		}

		_, _ = br.Seek(int64(propSize), io.SeekCurrent)
		last = id
	}

	if last != 0x21 {
		return hdr, 0, malformed("xz block %d: last filter is %#x, want LZMA2 (0x21)", x.blocks, last)
	}

	return hdr, 0, nil
}

// chunk reads one LZMA2 chunk header, or the end marker followed by block padding and check.
func (x *xzFramer) chunk(src *bufio.Reader) ([]byte, int64, error) {
	where := fmt.Sprintf("xz block %d LZMA2 chunk", x.blocks)

	hdr, err := take(src, nil, 1, where)
	if err != nil {
		return hdr, 0, err
	}

	x.blockData++

	control := hdr[0]

	switch {
	case control == 0x00:
		return x.blockTail(src, hdr)
	case control == 0x01 || control == 0x02:
		if hdr, err = take(src, hdr, 2, where); err != nil {
			return hdr, 0, err
		}

		n := int64(binary.BigEndian.Uint16(hdr[1:3])) + 1
		x.blockData += 2 + n

		return hdr, n, nil
	case control >= 0x80:
		extra := 4
		if control >= 0xc0 { // state reset with new properties carries one properties byte
			extra = 5
		}

		if hdr, err = take(src, hdr, extra, where); err != nil {
			return hdr, 0, err
		}

		n := int64(binary.BigEndian.Uint16(hdr[3:5])) + 1
		x.blockData += int64(extra) + n

		return hdr, n, nil
	default:
		return hdr, 0, malformed("%s: invalid control byte %#02x", where, control)
	}
}

// blockTail reads the zero padding that aligns the block and its check field.
func (x *xzFramer) blockTail(src *bufio.Reader, hdr []byte) ([]byte, int64, error) {
	pad := int((4 - x.blockData%4) % 4)
	start := len(hdr)

	hdr, err := take(src, hdr, pad+xzCheckSize(x.check), fmt.Sprintf("xz block %d padding and check", x.blocks))
	if err != nil {
		return hdr, 0, err
	}

	if !allZero(hdr[start : start+pad]) {
		return hdr, 0, malformed("xz block %d: non-zero block padding", x.blocks)
	}

	x.state = xzBlockOrIndex

	return hdr, 0, nil
}

// indexAndFooter reads the index (whose indicator byte has been read) and the stream footer.
func (x *xzFramer) indexAndFooter(src *bufio.Reader, idx []byte) ([]byte, int64, error) {
	next := func() (uint64, error) {
		var v uint64

		for i := 0; i < 9; i++ {
			var err error
			if idx, err = take(src, idx, 1, "xz index"); err != nil {
				return 0, err
			}

			b := idx[len(idx)-1]
			v |= uint64(b&0x7f) << (7 * i)

			if b&0x80 == 0 {
				return v, nil
			}
		}

		return 0, malformed("xz index: integer longer than 9 bytes")
	}

	records, err := next()
	if err != nil {
		return idx, 0, err
	}

	if records != uint64(x.blocks) {
		return idx, 0, malformed("xz index: %d records for %d blocks", records, x.blocks)
	}

	for i := uint64(0); i < 2*records; i++ {
		if _, err = next(); err != nil {
			return idx, 0, err
		}
	}

	pad := (4 - len(idx)%4) % 4
	if idx, err = take(src, idx, pad+4, "xz index padding and CRC32"); err != nil {
		return idx, 0, err
	}

	body := len(idx) - 4
	if !allZero(idx[body-pad : body]) {
		return idx, 0, malformed("xz index: non-zero padding")
	}

	if got, want := binary.LittleEndian.Uint32(idx[body:]), crc32.ChecksumIEEE(idx[:body]); got != want {
		return idx, 0, malformed("xz index: CRC32 is %#08x, computed %#08x", got, want)
	}

	return x.footer(src, idx)
}

func (x *xzFramer) footer(src *bufio.Reader, buf []byte) ([]byte, int64, error) {
	indexSize := len(buf)

	buf, err := take(src, buf, 12, "xz stream footer")
	if err != nil {
		return buf, 0, err
	}

	foot := buf[len(buf)-12:]

	switch {
	case foot[10] != 'Y' || foot[11] != 'Z':
		return buf, 0, malformed("xz stream footer: magic is % x, want 59 5a", foot[10:12])
	case binary.LittleEndian.Uint32(foot[:4]) != crc32.ChecksumIEEE(foot[4:10]):
		return buf, 0, malformed("xz stream footer: CRC32 mismatch")
	case foot[8] != x.flags[0] || foot[9] != x.flags[1]:
		return buf, 0, malformed("xz stream footer: flags % x differ from header % x", foot[8:10], x.flags[:])
	case (int(binary.LittleEndian.Uint32(foot[4:8]))+1)*4 != indexSize:
		return buf, 0, malformed("xz stream footer: backward size %d, index is %d bytes",
			(binary.LittleEndian.Uint32(foot[4:8])+1)*4, indexSize)
	}

	return buf, 0, io.EOF
}

func xzVarint(r io.ByteReader) (uint64, error) {
	var v uint64

	for i := 0; i < 9; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, malformed("truncated integer")
		}

		v |= uint64(b&0x7f) << (7 * i)

		if b&0x80 == 0 {
			return v, nil
		}
	}

	return 0, malformed("integer longer than 9 bytes")
}

// xzCheckDict checks the LZMA2 dictionary size property (xz file format 1.0.4, section 5.3.1): the decoder
// allocates the whole dictionary up front, so a size beyond maxWindow is refused rather than allocated.
func xzCheckDict(block int, prop byte) error {
	if prop > 40 {
		return malformed("xz block %d: LZMA2 dictionary size property %d, want at most 40", block, prop)
	}

	if dict := int64(2|prop&1) << (prop/2 + 11); dict > maxWindow {
		return malformed("xz block %d: LZMA2 dictionary of %d MiB, more than the %d MiB this reader allows",
			block, dict>>20, maxWindow>>20)
	}

	return nil
}
