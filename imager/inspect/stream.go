package inspect

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// memberChain decompresses a whole compressed file: one member after the other (xz streams, gzip members, zstd
// frames), each checked as it is read, with zero padding allowed between members. Anything else after a member is
// an error: a download with junk appended is not what was published.
type memberChain struct {
	src     *countingReader
	br      *bufio.Reader
	format  Format
	cur     io.Reader
	explain func(error) error
	close   func()
	start   int64
	members int
	err     error
}

func newMemberChain(r io.Reader, f Format) *memberChain {
	src := &countingReader{r: r}

	return &memberChain{src: src, br: bufio.NewReaderSize(src, 64<<10), format: f}
}

func (m *memberChain) pos() int64 { return m.src.n - int64(m.br.Buffered()) }

func (m *memberChain) Read(p []byte) (int, error) {
	for m.err == nil {
		if m.cur == nil {
			if m.err = m.next(); m.err != nil {
				break
			}
		}

		n, err := m.cur.Read(p)

		switch {
		case errors.Is(err, io.EOF):
			m.close()
			m.cur = nil
		case err != nil:
			m.close()
			m.cur = nil
			m.err = fmt.Errorf("%s member %d at offset %d: %w", m.format, m.members, m.start, m.explain(err))
		}

		if n > 0 {
			return n, nil
		}
	}

	return 0, m.err
}

// Close releases the decoder of the member being read.
func (m *memberChain) Close() error {
	if m.cur != nil {
		m.close()
		m.cur = nil
	}

	return nil
}

// next opens the next member, or returns io.EOF at the end of the input.
func (m *memberChain) next() error {
	if m.members > 0 {
		if err := skipZeros(m.br); err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}

			return fmt.Errorf("%s: after member %d: %w", m.format, m.members, err)
		}

		if head, _ := m.br.Peek(maxMagic); FormatOf(head) != m.format {
			return malformed("%s: data that is not %s follows member %d, at offset %d (starts with % x)",
				m.format, m.format, m.members, m.pos(), head)
		}
	}

	m.members++
	m.start = m.pos()

	dec, explain, closeDec, err := openMember(m.br, m.format)
	if err != nil {
		return fmt.Errorf("%s member %d at offset %d: %w", m.format, m.members, m.start, err)
	}

	m.cur, m.explain, m.close = dec, explain, closeDec

	return nil
}

// retained is what a streaming read kept of a large input: the first and last bytes, and its size. Reads of the
// bytes in between fail, so a checker that needs them reports that instead of seeing wrong data.
type retained struct {
	size int64
	head []byte
	tail []byte // the last len(tail) bytes
}

// retainedBytes is how much of each end of a streamed disk image is kept: the MBR, the primary GPT header and
// entries at the start, the backup entries and header at the end.
const retainedBytes = 1 << 20

// retain reads r to its end and keeps the first and last n bytes.
func retain(r io.Reader, n int) (*retained, error) {
	rt := &retained{head: make([]byte, 0, n)}

	got, err := io.ReadFull(r, rt.head[:n])
	rt.head, rt.size = rt.head[:got], int64(got)

	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return rt, nil
	case err != nil:
		return rt, err
	}

	// The rest is read into a window twice the tail's size; when it fills, its last n bytes move to its front.
	window := make([]byte, 2*n)
	w := 0

	for {
		if w == len(window) {
			w = copy(window, window[w-n:w])
		}

		k, err := r.Read(window[w:])
		w += k
		rt.size += int64(k)

		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return rt, err
		}
	}

	rt.tail = window[max(0, w-n):w]

	return rt, nil
}

// ReadAt serves reads that fall inside the kept head or tail.
func (rt *retained) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: negative offset", off)
	}

	if off >= rt.size {
		return 0, io.EOF
	}

	end := min(off+int64(len(p)), rt.size)
	headEnd, tailStart := int64(len(rt.head)), rt.size-int64(len(rt.tail))

	if end > headEnd && off < tailStart && headEnd < tailStart {
		return 0, fmt.Errorf("read of %d bytes at offset %d: only the first and last %d bytes of a streamed image are kept",
			len(p), off, retainedBytes)
	}

	if off < headEnd {
		copy(p, rt.head[off:min(end, headEnd)])
	}

	if end > tailStart {
		lo := max(off, tailStart)
		copy(p[lo-off:end-off], rt.tail[lo-tailStart:])
	}

	if n := int(end - off); n < len(p) {
		return n, io.EOF
	}

	return len(p), nil
}

// sparseFile is a ReaderAt of size bytes holding the ranges a forward reader kept, and zeros everywhere else.
type sparseFile struct {
	size   int64
	chunks []sparseChunk
}

type sparseChunk struct {
	off  int64
	data []byte
}

func (s *sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: negative offset", off)
	}

	if off >= s.size {
		return 0, io.EOF
	}

	n := int(min(int64(len(p)), s.size-off))
	clear(p[:n])

	for _, c := range s.chunks {
		lo, hi := max(off, c.off), min(off+int64(n), c.off+int64(len(c.data)))
		if lo < hi {
			copy(p[lo-off:hi-off], c.data[lo-c.off:hi-c.off])
		}
	}

	if n < len(p) {
		return n, io.EOF
	}

	return n, nil
}

// peStreamHead is how much of a streamed PE file is read before its section table is parsed; the headers must
// end inside it.
const peStreamHead = 64 << 10

// peStream reads a PE file of size bytes from a forward-only stream (a file inside a compressed layer), keeping
// only its headers, its text sections and its WIN_CERTIFICATE header: the result is what peFile reports of the
// whole file. The .initrd section of a UKI is passed to Initramfs as it streams by, asking for capture.
func peStream(r io.Reader, size int64, capture ...string) (UKIReport, *InitramfsReport, error) {
	head := make([]byte, min(size, peStreamHead))
	if _, err := io.ReadFull(r, head); err != nil {
		return UKIReport{}, nil, fmt.Errorf("pe headers: %w", short(err))
	}

	sf := &sparseFile{size: size, chunks: []sparseChunk{{0, head}}}

	if err := peHeaders(sf); err != nil {
		return UKIReport{}, nil, err
	}

	if end := peHeadersEnd(head); end > int64(len(head)) {
		return UKIReport{}, nil, malformed("pe headers end at byte %d, past the first %d bytes a streamed file may "+
			"keep them in", end, len(head))
	}

	f, err := pe.NewFile(sf)
	if err != nil {
		return UKIReport{}, nil, fmt.Errorf("pe headers: %w", asPEError(err))
	}

	fw := &forward{r: r, head: head, done: int64(len(head))}

	var initrd *InitramfsReport

	for _, rg := range peRanges(f) {
		err := fw.read(rg.off, rg.n, func(data io.Reader) error {
			if !rg.initrd {
				buf := make([]byte, rg.n)
				if _, err := io.ReadFull(data, buf); err != nil {
					return short(err)
				}

				sf.chunks = append(sf.chunks, sparseChunk{rg.off, buf})

				return nil
			}

			rep, err := Initramfs(data, capture...)
			initrd = &rep

			return err
		})
		if err != nil {
			return UKIReport{}, initrd, fmt.Errorf("pe %s (%d bytes at offset %d): %w", rg.what, rg.n, rg.off, err)
		}
	}

	if err = fw.skipTo(size); err != nil {
		return UKIReport{}, initrd, fmt.Errorf("pe file of %d bytes: %w", size, err)
	}

	rep, err := peFile(sf)

	return rep, initrd, err
}

// peHeadersEnd returns where the section table ends, from headers peHeaders has checked (at least 64 bytes).
func peHeadersEnd(head []byte) int64 {
	lfanew := int64(binary.LittleEndian.Uint32(head[0x3c:]))
	if lfanew+24 > int64(len(head)) {
		return lfanew + 24
	}

	coff := head[lfanew:]

	return lfanew + 24 + int64(binary.LittleEndian.Uint16(coff[20:])) + 40*int64(binary.LittleEndian.Uint16(coff[6:]))
}

type peRange struct {
	what   string
	off, n int64
	initrd bool
}

// peRanges lists, in file order, the parts of a PE file that peFile reads or a UKI report needs: the text
// sections, the first .initrd section, and the WIN_CERTIFICATE header.
func peRanges(f *pe.File) []peRange {
	var (
		ranges []peRange
		initrd bool
	)

	for _, s := range f.Sections {
		n := int64(s.Size)
		if s.VirtualSize > 0 && s.VirtualSize < s.Size {
			n = int64(s.VirtualSize)
		}

		switch s.Name {
		case ".cmdline", ".osrel", ".uname", ".sbat", ".profile":
			if n <= maxTextSection { // a longer one is refused by peFile
				ranges = append(ranges, peRange{what: "section " + s.Name, off: int64(s.Offset), n: n})
			}
		case ".initrd":
			if !initrd && n > 0 {
				ranges = append(ranges, peRange{what: "section .initrd", off: int64(s.Offset), n: n, initrd: true})
				initrd = true
			}
		}
	}

	dd, _ := dataDirectories(f)
	if len(dd) > pe.IMAGE_DIRECTORY_ENTRY_SECURITY && dd[pe.IMAGE_DIRECTORY_ENTRY_SECURITY].Size >= 8 {
		ranges = append(ranges, peRange{what: "WIN_CERTIFICATE header", off: int64(dd[pe.IMAGE_DIRECTORY_ENTRY_SECURITY].VirtualAddress), n: 8})
	}

	slices.SortStableFunc(ranges, func(a, b peRange) int { return cmp.Compare(a.off, b.off) })

	return ranges
}

// forward hands out byte ranges of a stream in increasing order. The first bytes were read already into head.
type forward struct {
	r    io.Reader
	head []byte
	done int64 // bytes consumed from the stream, head included
}

// read passes [off, off+n) to fn, then consumes whatever fn left of it.
func (fw *forward) read(off, n int64, fn func(io.Reader) error) error {
	var parts []io.Reader

	if off < int64(len(fw.head)) {
		end := min(off+n, int64(len(fw.head)))
		parts = append(parts, bytes.NewReader(fw.head[off:end]))
		n -= end - off
		off = end
	}

	var lr *io.LimitedReader

	if n > 0 {
		if off < fw.done {
			return malformed("overlaps data before offset %d that has streamed past", fw.done)
		}

		if err := fw.skipTo(off); err != nil {
			return err
		}

		lr = &io.LimitedReader{R: fw.r, N: n}
		parts = append(parts, lr)
	}

	if err := fn(io.MultiReader(parts...)); err != nil {
		return err
	}

	if lr == nil {
		return nil
	}

	// Whatever fn did not read is still part of the range.
	fw.done += n - lr.N

	if lr.N > 0 {
		return fw.skipTo(fw.done + lr.N)
	}

	return nil
}

// skipTo discards the stream up to offset off.
func (fw *forward) skipTo(off int64) error {
	if off <= fw.done {
		return nil
	}

	k, err := io.CopyN(io.Discard, fw.r, off-fw.done)
	fw.done += k

	if err != nil {
		return fmt.Errorf("data ends at offset %d, before offset %d: %w", fw.done, off, short(err))
	}

	return nil
}
