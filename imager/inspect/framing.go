package inspect

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// A framer walks the container structure of one compressed member without decompressing it. Decoders are free to
// read ahead and to treat whatever follows as more of their own stream; feeding them through a framer makes them
// see io.EOF exactly where the member ends, so the next member of a concatenation is left untouched.
type framer interface {
	// segment reads the next structural header from src and returns it with the length of the opaque payload that
	// follows it. It returns io.EOF once the member is complete.
	segment(src *bufio.Reader) (hdr []byte, payload int64, err error)
	// where names the structure being read, for messages.
	where() string
}

// framedReader passes the bytes of one member through unchanged.
type framedReader struct {
	src     *bufio.Reader
	f       framer
	pending []byte
	payload int64
	err     error
}

func newFramedReader(src *bufio.Reader, f framer) *framedReader {
	return &framedReader{src: src, f: f}
}

func (r *framedReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 && r.payload == 0 {
		if r.err != nil {
			return 0, r.err
		}

		r.pending, r.payload, r.err = r.f.segment(r.src)
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			// Report the structural defect itself rather than let the decoder trip over the bad bytes.
			r.pending, r.payload = nil, 0

			return 0, r.err
		}
	}

	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]

		return n, nil
	}

	if int64(len(p)) > r.payload {
		p = p[:r.payload]
	}

	n, err := r.src.Read(p)
	r.payload -= int64(n)

	if errors.Is(err, io.EOF) {
		if r.payload > 0 {
			err = fmt.Errorf("%s: data ends %d bytes early: %w", r.f.where(), r.payload, io.ErrUnexpectedEOF)
			r.err = err
		} else {
			err = nil
		}
	}

	return n, err
}

// take reads exactly n bytes and appends them to buf.
func take(src *bufio.Reader, buf []byte, n int, what string) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, n)...)

	if _, err := io.ReadFull(src, buf[start:]); err != nil {
		return buf, fmt.Errorf("%s: %w", what, short(err))
	}

	return buf, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}

	return true
}
