//go:build boot

package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// sparseBlock is the granularity at which zeros are skipped instead of written (a multiple of any file system
// block size).
const sparseBlock = 64 << 10

// DecompressSparse decompresses the disk image src (.zst, .xz, or uncompressed, by name) into dst as a sparse
// file: runs of zero blocks are seeked over, so a multi-GB raw image of mostly free space takes only the disk
// space of its data. It returns the image size.
func DecompressSparse(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()

	var r io.Reader = in

	switch {
	case strings.HasSuffix(src, ".zst"):
		d, err := zstd.NewReader(in)
		if err != nil {
			return 0, fmt.Errorf("zstd %s: %w", src, err)
		}
		defer d.Close()

		r = d
	case strings.HasSuffix(src, ".xz"):
		d, err := xz.NewReader(in)
		if err != nil {
			return 0, fmt.Errorf("xz %s: %w", src, err)
		}

		r = d
	}

	out, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", dst, err)
	}

	size, err := copySparse(out, r)
	if err == nil {
		// A trailing hole was only seeked over: the size must be set explicitly.
		err = out.Truncate(size)
	}

	if cerr := out.Close(); err == nil {
		err = cerr
	}

	if err != nil {
		return size, fmt.Errorf("decompress %s into %s: %w", src, dst, err)
	}

	return size, nil
}

func copySparse(out *os.File, r io.Reader) (int64, error) {
	var (
		size  int64
		block = make([]byte, sparseBlock)
		zero  = make([]byte, sparseBlock)
	)

	for {
		n, err := fill(r, block)
		if n > 0 {
			if bytes.Equal(block[:n], zero[:n]) {
				if _, serr := out.Seek(int64(n), io.SeekCurrent); serr != nil {
					return size, fmt.Errorf("seek: %w", serr)
				}
			} else if _, werr := out.Write(block[:n]); werr != nil {
				return size, fmt.Errorf("write: %w", werr)
			}

			size += int64(n)
		}

		switch {
		case errors.Is(err, io.EOF):
			return size, nil
		case err != nil:
			return size, fmt.Errorf("read: %w", err)
		}
	}
}

// fill reads until buf is full or r ends. Unlike io.ReadFull it passes a decoder's own io.ErrUnexpectedEOF (a
// truncated stream) through as an error, and reports the clean end as io.EOF.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m

		if err != nil {
			return n, err
		}
	}

	return n, nil
}
