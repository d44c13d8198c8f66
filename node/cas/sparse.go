package cas

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// blockSize is the unit of hole punching and zero skipping: the page and ext4/xfs block size.
	blockSize = 4096
	// copyBufSize is the read size for hashing and copying; a multiple of blockSize so reads stay aligned.
	copyBufSize = 1 << 20
)

var zeroBuf [copyBufSize]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBuf[:len(b)]) }

// allocated returns the bytes a file occupies on disk, which for a sparse image is far less than its size.
func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

// writeBlocks writes p (whole blocks, off block-aligned) at off, skipping all-zero blocks so they stay holes.
// Runs of non-zero blocks go out in one pwrite each.
func writeBlocks(f *os.File, off int64, p []byte) error {
	start := -1
	for i := 0; i < len(p); i += blockSize {
		if !isZero(p[i : i+blockSize]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if _, err := f.WriteAt(p[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		if _, err := f.WriteAt(p[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}

// PunchHoles deallocates every 4 KiB-aligned run of zero bytes in the file at path (what `fallocate --dig-holes`
// does): the content reads back unchanged while the file occupies less disk. Existing holes are skipped, not read.
// On a filesystem without hole punching the error satisfies errors.Is(err, errors.ErrUnsupported).
func PunchHoles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("punch holes: %w", err)
	}
	defer f.Close()
	sc := scanner{f: f, punch: true}
	if err := sc.run(); err != nil {
		return fmt.Errorf("punch holes in %s: %w", path, err)
	}
	if sc.punchErr != nil {
		return fmt.Errorf("punch holes in %s: %w", path, sc.punchErr)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("punch holes in %s: %w", path, err)
	}
	return nil
}

// scanner walks a file's data once, feeding every byte to h (holes as zeros) and, when punch is set, punching
// holes over aligned all-zero runs found in the data. A filesystem that cannot punch turns punching off and
// records why in punchErr; hashing carries on.
type scanner struct {
	f        *os.File
	h        hash.Hash // may be nil
	punch    bool
	punchErr error
	size     int64
	run0     int64 // start of the current zero run, or -1
}

func (sc *scanner) run() error {
	info, err := sc.f.Stat()
	if err != nil {
		return err
	}
	sc.size = info.Size()
	buf := make([]byte, copyBufSize)
	for off := int64(0); off < sc.size; {
		data, end := sc.nextData(off)
		sc.hashZeros(data - off)
		if err := sc.scanData(data, end, buf); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// nextData returns the next data segment [data, end) at or after off. Without SEEK_DATA support the rest of the
// file is one segment. The start is rounded down to a block so zero detection stays aligned.
func (sc *scanner) nextData(off int64) (data, end int64) {
	data, err := sc.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return sc.size, sc.size // only a hole remains
	}
	if err != nil {
		return off, sc.size
	}
	data = max(off, data&^(blockSize-1))
	end, err = sc.f.Seek(data, unix.SEEK_HOLE)
	if err != nil || end > sc.size {
		end = sc.size
	}
	return data, end
}

func (sc *scanner) hashZeros(n int64) {
	if sc.h == nil {
		return
	}
	for n > 0 {
		k := min(n, int64(len(zeroBuf)))
		sc.h.Write(zeroBuf[:k])
		n -= k
	}
}

// scanData reads [pos, end) in aligned chunks, hashing it and punching the zero runs.
func (sc *scanner) scanData(pos, end int64, buf []byte) error {
	sc.run0 = -1
	for pos < end {
		want := min(int64(len(buf)), end-pos)
		n, err := sc.f.ReadAt(buf[:want], pos)
		if int64(n) < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the file shrank under us
			}
			return err
		}
		if sc.h != nil {
			sc.h.Write(buf[:n])
		}
		if sc.punch {
			sc.findZeroRuns(pos, buf[:n])
		}
		pos += int64(n)
	}
	sc.endRun(pos &^ (blockSize - 1))
	return nil
}

func (sc *scanner) findZeroRuns(pos int64, b []byte) {
	for i := 0; i < len(b); i += blockSize {
		at := pos + int64(i)
		if at%blockSize != 0 || i+blockSize > len(b) || !isZero(b[i:i+blockSize]) {
			sc.endRun(at)
			continue
		}
		if sc.run0 < 0 {
			sc.run0 = at
		}
	}
}

// endRun punches the current zero run, which ends at the block-aligned offset stop.
func (sc *scanner) endRun(stop int64) {
	start := sc.run0
	sc.run0 = -1
	if start < 0 || stop <= start || !sc.punch {
		return
	}
	err := unix.Fallocate(int(sc.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, stop-start)
	if err != nil {
		sc.punch = false
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
			err = fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
		}
		sc.punchErr = fmt.Errorf("fallocate punch hole: %w", err)
	}
}
