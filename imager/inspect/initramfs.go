package inspect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// InitramfsReport describes an initramfs: the members the kernel unpacks one after the other.
type InitramfsReport struct {
	Members []InitramfsMember
	// Contents holds the data of the regular files asked for, by path. When several members carry a path the last
	// one wins, as when the kernel unpacks them.
	Contents map[string][]byte
}

// InitramfsMember is one separately compressed (or uncompressed) cpio stream of a concatenated initramfs.
type InitramfsMember struct {
	// Offset and Size locate the member in the input, compressed.
	Offset, Size int64
	Compression  Format
	// XZCheck is the integrity check of an xz member; the kernel needs "CRC32" (or "None").
	XZCheck string
	// Uncompressed is the size of the member's decompressed data.
	Uncompressed int64
	// Archives counts the cpio archives (trailers) inside the member.
	Archives int
	// Entries lists every record except trailers, names without a leading "/" or "./".
	Entries []CPIOEntry
}

// Files returns the paths of every non-directory entry of every member, in order.
func (r InitramfsReport) Files() []string {
	var files []string

	for _, m := range r.Members {
		for _, e := range m.Entries {
			if !e.Mode.IsDir() {
				files = append(files, e.Name)
			}
		}
	}

	return files
}

// Entry returns the last entry named name across all members.
func (r InitramfsReport) Entry(name string) (CPIOEntry, bool) {
	name = cleanName(name)

	for i := len(r.Members) - 1; i >= 0; i-- {
		for j := len(r.Members[i].Entries) - 1; j >= 0; j-- {
			if e := r.Members[i].Entries[j]; e.Name == name {
				return e, true
			}
		}
	}

	return CPIOEntry{}, false
}

// maxCapture bounds the size of a file whose content the caller asks Initramfs for.
const maxCapture = 16 << 20

// Initramfs walks a Linux initramfs the way the kernel unpacks it: zero bytes between members are skipped, a member
// is either a plain newc cpio archive or a gzip, xz or zstd stream holding one or more cpio archives. This covers
// what the Talos imager writes: an optional uncompressed cpio (early microcode under kernel/) prepended to the
// original xz initramfs, and a zstd (xz before Talos 1.8) cpio of extensions.yaml, *.sqsh and firmware appended.
// The content of regular files named in capture (up to 16 MiB each) is returned in Contents.
func Initramfs(r io.Reader, capture ...string) (InitramfsReport, error) {
	w := &initramfsWalker{
		src:     &countingReader{r: r},
		capture: map[string]bool{},
		report:  InitramfsReport{Contents: map[string][]byte{}},
	}
	w.br = bufio.NewReaderSize(w.src, 64<<10)

	for _, name := range capture {
		w.capture[cleanName(name)] = true
	}

	for {
		if err := skipZeros(w.br); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}

			return w.report, fmt.Errorf("initramfs at offset %d: %w", w.pos(), err)
		}

		index := len(w.report.Members) + 1
		if err := w.member(); err != nil {
			return w.report, fmt.Errorf("initramfs member %d at offset %d: %w", index, w.start, err)
		}
	}

	if len(w.report.Members) == 0 {
		return w.report, malformed("initramfs: no data (empty or only zero bytes)")
	}

	return w.report, nil
}

type initramfsWalker struct {
	src     *countingReader
	br      *bufio.Reader
	capture map[string]bool
	report  InitramfsReport
	start   int64
}

func (w *initramfsWalker) pos() int64 { return w.src.n - int64(w.br.Buffered()) }

// member reads one member starting at the current position.
func (w *initramfsWalker) member() error {
	w.start = w.pos()
	head, _ := w.br.Peek(maxMagic)
	m := InitramfsMember{Offset: w.start, Compression: FormatOf(head)}

	var err error

	switch {
	case m.Compression == FormatNone && isCPIOMagic(head):
		// A plain archive ends at its trailer: whatever follows is the next member.
		c := &cpioReader{r: w.br, off: w.start}
		err = w.archive(&m, c)
		m.Uncompressed = c.off - w.start
	case m.Compression == FormatNone:
		return malformed("unknown member type, starts with % x%s", head, otherCompression(head))
	default:
		err = w.compressedMember(&m)
	}

	m.Size = w.pos() - w.start
	w.report.Members = append(w.report.Members, m)

	return err
}

// compressedMember decodes a member through its framer, so the decoder stops exactly at the member's end.
func (w *initramfsWalker) compressedMember(m *InitramfsMember) error {
	if m.Compression == FormatXZ {
		head, _ := w.br.Peek(12)
		if len(head) < 12 {
			return fmt.Errorf("xz stream header: %w", io.ErrUnexpectedEOF)
		}

		var err error
		if m.XZCheck, err = parseXZHeader(head); err != nil {
			return err
		}
	}

	dec, explain, closeDec, err := openMember(w.br, m.Compression)
	if err != nil {
		return err
	}
	defer closeDec()

	return explain(w.archives(m, dec))
}

// maxWindow bounds the decoder memory a compressed stream may ask for: the xz dictionary or the zstd window. The
// largest presets of both tools (xz -9, zstd --long or --ultra -22) stay within it.
const maxWindow = 128 << 20

// openMember starts decoding the compressed member (one xz stream, consecutive zstd frames or one gzip member)
// that starts at the current position of br. The decoder sees io.EOF exactly where the member ends, leaving what
// follows unread. explain turns an error met while opening or reading dec into the one to report: the framer's
// message about the structure when it found one, the decoder's otherwise, marked and prefixed with the format.
// closeDec releases the decoder.
func openMember(br *bufio.Reader, f Format) (dec io.Reader, explain func(error) error, closeDec func(), err error) {
	var framed *framedReader

	closeDec = func() {}

	switch f {
	case FormatXZ:
		framed = newFramedReader(br, &xzFramer{})
		dec, err = xz.ReaderConfig{SingleStream: true}.NewReader(framed)
	case FormatZstd:
		framed = newFramedReader(br, &zstdFramer{})

		var zr *zstd.Decoder
		if zr, err = zstd.NewReader(framed, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow)); err == nil {
			dec, closeDec = zr, zr.Close
		}
	case FormatGzip:
		// gzip needs no framer: given an io.ByteReader, flate reads no further than the member's trailer.
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(br); err == nil {
			zr.Multistream(false)

			dec = zr
		}
	default:
		err = fmt.Errorf("decompress: unknown format %q", f)
	}

	explain = func(err error) error {
		if err == nil {
			return nil
		}

		switch {
		case framed != nil && framed.err != nil && !errors.Is(framed.err, io.EOF):
			err = framed.err // the framer's message names the structure, or it is the source's I/O error
		case framed != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF):
			// The framing was sound and the source read fine: the decoder found the data itself corrupt.
			err = markMalformed(err)
		}

		if err = asMalformed(err); !strings.HasPrefix(err.Error(), string(f)) {
			err = fmt.Errorf("%s: %w", f, err)
		}

		return err
	}

	return dec, explain, closeDec, explain(err)
}

// archives reads the cpio archives of a decompressed member to its end, which verifies the integrity checks.
func (w *initramfsWalker) archives(m *InitramfsMember, dec io.Reader) error {
	cnt := &countingReader{r: dec}
	br := bufio.NewReader(cnt)

	for {
		err := skipZeros(br)
		off := cnt.n - int64(br.Buffered())

		if errors.Is(err, io.EOF) {
			m.Uncompressed = off
			if m.Archives == 0 {
				return malformed("no cpio archive inside")
			}

			return nil
		}

		if err != nil {
			return err
		}

		if head, _ := br.Peek(6); !isCPIOMagic(head) {
			return malformed("decompressed data at offset %d is not a cpio archive (starts with % x)", off, head)
		}

		if err = w.archive(m, &cpioReader{r: br, off: off}); err != nil {
			return err
		}
	}
}

// archive reads one cpio archive up to and including its trailer.
func (w *initramfsWalker) archive(m *InitramfsMember, c *cpioReader) error {
	for {
		e, err := c.next()
		if errors.Is(err, io.EOF) {
			m.Archives++

			return c.skipData()
		}

		if err != nil {
			return err
		}

		e.Name = cleanName(e.Name)
		m.Entries = append(m.Entries, e)

		if w.capture[e.Name] && e.Mode.IsRegular() {
			if e.Size > maxCapture {
				return fmt.Errorf("capture %s: %d bytes exceeds the %d byte limit", e.Name, e.Size, maxCapture)
			}

			data, err := c.readContent()
			if err != nil {
				return err
			}

			w.report.Contents[e.Name] = data
		}
	}
}

// skipZeros consumes zero bytes, which the kernel skips between members; io.EOF at the end of input.
func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return err
		}

		if b != 0 {
			return br.UnreadByte()
		}
	}
}

// otherCompression names formats the kernel may accept but this package does not read.
func otherCompression(head []byte) string {
	for _, m := range []struct {
		magic []byte
		name  string
	}{
		{[]byte("BZh"), "bzip2"},
		{[]byte{0x02, 0x21, 0x4c, 0x18}, "lz4 legacy"},
		{[]byte{0x04, 0x22, 0x4d, 0x18}, "lz4"},
		{[]byte{0x89, 'L', 'Z', 'O'}, "lzop"},
		{[]byte{0x5d, 0x00, 0x00}, "lzma"},
	} {
		if bytes.HasPrefix(head, m.magic) {
			return " (" + m.name + ", not supported)"
		}
	}

	return ""
}

// cleanName gives archive paths one spelling: no leading "/" or "./".
func cleanName(name string) string {
	name = path.Clean("/" + name)
	if name == "/" {
		return "."
	}

	return strings.TrimPrefix(name, "/")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)

	return n, err
}
