package cas

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	digests "github.com/edgefactory/edgefactory/internal/digest"
)

// Writer receives a blob's bytes into a temp file, hashing as it goes (on a goroutine of its own). Aligned 4 KiB
// blocks of zeros are skipped rather than written, so multi-GB disk images stay sparse. Nothing is visible in the
// store until Commit succeeds. A Writer is fed by one goroutine; Written, Flushed, Done, ReadAt and OpenFile may be
// called from any.
type Writer struct {
	mu           sync.Mutex // guards f and pend against concurrent ReadAt
	s            *Store
	f            *os.File
	h            *hasher
	expected     string
	expectedSize int64
	written      atomic.Int64
	pend         []byte // the current, incomplete block; it starts at a block-aligned offset
	err          error  // first failure; every later call returns it
	verified     string // the digest, once Verify succeeded: no more writes, every byte may be handed out
	done         bool
}

// ErrWriterDone is returned by a Writer's methods after Commit or Abort.
var ErrWriterDone = errors.New("writer already committed or aborted")

// Create starts a blob. expected is its digest, or "" when unknown; expectedSize its length, or -1 when unknown.
// Call Commit to store it or Abort to drop it (Abort after Commit is a no-op, so `defer w.Abort()` is safe).
func (s *Store) Create(expected string, expectedSize int64) (*Writer, error) {
	if expected != "" {
		if err := digests.Check(expected); err != nil {
			return nil, fmt.Errorf("create blob: %w", err)
		}
	}
	if expectedSize < -1 {
		return nil, fmt.Errorf("create blob: invalid expected size %d", expectedSize)
	}
	f, err := os.CreateTemp(s.tmpDir(), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return &Writer{
		s:            s,
		f:            f,
		h:            newHasher(),
		expected:     expected,
		expectedSize: expectedSize,
		pend:         make([]byte, 0, blockSize),
	}, nil
}

// Done reports whether the writer was committed or aborted: ReadAt no longer works.
func (w *Writer) Done() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// Flushed returns how many bytes from the start are final in the temp file: all but the pending partial block
// before Verify, all of them after. Skipped zero blocks inside that range read as zeros; those at its end may lie
// beyond the file's current length.
func (w *Writer) Flushed() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written.Load() - int64(len(w.pend))
}

// OpenFile opens the temp file for reading through a handle of the caller's own (say, to send it with sendfile). The
// handle stays valid after Commit or Abort; what it reads must be limited to Flushed.
func (w *Writer) OpenFile() (*os.File, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, fmt.Errorf("open blob: %w", ErrWriterDone)
	}
	return os.Open(w.f.Name())
}

// Written returns the number of bytes accepted so far.
func (w *Writer) Written() int64 { return w.written.Load() }

// Write appends p. Writing past the expected size fails with ErrSizeMismatch.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write blob: %w", ErrWriterDone)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.verified != "" {
		return 0, errors.New("write blob: already verified")
	}
	off := w.written.Load()
	if w.expectedSize >= 0 && off+int64(len(p)) > w.expectedSize {
		w.err = fmt.Errorf("write blob: %w: more than the expected %d bytes", ErrSizeMismatch, w.expectedSize)
		return 0, w.err
	}
	w.h.write(p)
	w.mu.Lock()
	err := w.writeSparse(off, p)
	if err == nil {
		w.written.Add(int64(len(p)))
	}
	w.mu.Unlock()
	if err != nil {
		w.err = fmt.Errorf("write blob: %w", err)
		return 0, w.err
	}
	if off/floorCheck != (off+int64(len(p)))/floorCheck {
		w.s.keepFloor() // a large blob arriving makes its own room, before the disk fills, not at its commit
	}
	return len(p), nil
}

// floorCheck is how many bytes a writer writes between two checks of the free-space floor.
const floorCheck = 8 << 20

// ReadAt reads bytes already written, while the blob is still being written: a node streams a blob to its client
// as it arrives from a peer. Reading past Written returns io.EOF. The bytes are not verified until Commit, so a
// caller must not hand out the last byte before Commit succeeds.
func (w *Writer) ReadAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("read blob: %w", ErrWriterDone)
	}
	written := w.written.Load()
	if off >= written {
		return 0, io.EOF
	}
	want := p
	if rest := written - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	// Skipped zero blocks (and the tail beyond the file's current length) read as zeros.
	n, err := w.f.ReadAt(want, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("read blob: %w", err)
	}
	clear(want[n:])
	pendStart := written - int64(len(w.pend))
	if end := off + int64(len(want)); end > pendStart {
		from := max(off, pendStart)
		copy(want[from-off:], w.pend[from-pendStart:end-pendStart])
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// writeSparse writes p, which starts at offset off, completing the pending block first and keeping the trailing
// partial block pending, so zero detection sees whole aligned blocks however the caller splits its writes.
func (w *Writer) writeSparse(off int64, p []byte) error {
	if len(w.pend) > 0 {
		n := copy(w.pend[len(w.pend):blockSize], p)
		w.pend = w.pend[:len(w.pend)+n]
		p = p[n:]
		off += int64(n)
		if len(w.pend) < blockSize {
			return nil
		}
		if err := writeBlocks(w.f, off-blockSize, w.pend); err != nil {
			return err
		}
		w.pend = w.pend[:0]
	}
	full := len(p) &^ (blockSize - 1)
	if err := writeBlocks(w.f, off, p[:full]); err != nil {
		return err
	}
	w.pend = append(w.pend, p[full:]...)
	return nil
}

// Verify checks the bytes received against the size and digest Create was given (a mismatch deletes the temp file
// and returns ErrSizeMismatch or ErrDigestMismatch) and writes out the pending block. Once it succeeds the blob
// takes no more writes and every byte may be handed out through ReadAt, before Commit makes it durable. Calling it
// again returns the same result.
func (w *Writer) Verify() (digest string, size int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	size = w.written.Load()
	if w.verified != "" {
		return w.verified, size, nil
	}
	if w.done {
		return "", 0, fmt.Errorf("commit blob: %w", ErrWriterDone)
	}
	if err := w.verifyLocked(size); err != nil {
		w.done = true
		w.discard()
		return "", 0, err
	}
	return w.verified, size, nil
}

func (w *Writer) verifyLocked(size int64) error {
	if w.err != nil {
		return w.err
	}
	if w.expectedSize >= 0 && size != w.expectedSize {
		return fmt.Errorf("commit blob: %w: got %d bytes, expected %d", ErrSizeMismatch, size, w.expectedSize)
	}
	digest := digestOf(w.h.finish())
	if w.expected != "" && digest != w.expected {
		return fmt.Errorf("commit blob: content hashes to %s, expected %s: %w", digest, w.expected, ErrDigestMismatch)
	}
	// The trailing partial block goes to the file; the length covers trailing zero blocks that were never written.
	if len(w.pend) > 0 && !isZero(w.pend) {
		if _, err := w.f.WriteAt(w.pend, size-int64(len(w.pend))); err != nil {
			return fmt.Errorf("commit blob %s: %w", digest, err)
		}
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("commit blob %s: %w", digest, err)
	}
	w.pend = w.pend[:0]
	w.verified = digest
	return nil
}

// Commit finishes the blob: it verifies it (see Verify), fsyncs it, makes it read-only so no stray writer can
// change it, and renames it into place. If the blob is already present (say, a concurrent writer of the same bytes
// won), the temp file is dropped and the existing blob kept. ReadAt keeps working while the data is synced.
func (w *Writer) Commit() (digest string, size int64, err error) {
	if digest, size, err = w.Verify(); err != nil {
		return "", 0, err
	}
	// The file no longer changes: readers may go on while it reaches the disk.
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return "", 0, fmt.Errorf("commit blob %s: %w", digest, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return "", 0, fmt.Errorf("commit blob: %w", ErrWriterDone)
	}
	w.done = true
	if err := w.f.Chmod(0o444); err != nil {
		w.discard()
		return "", 0, fmt.Errorf("commit blob %s: %w", digest, err)
	}
	if err := w.f.Close(); err != nil {
		w.discard()
		return "", 0, fmt.Errorf("commit blob %s: %w", digest, err)
	}
	if err := w.s.install(w.f.Name(), digest, size); err != nil {
		w.discard()
		return "", 0, fmt.Errorf("commit blob: %w", err)
	}
	return digest, size, nil
}

// Abort drops the blob and its temp file. It is a no-op after Commit or a previous Abort.
func (w *Writer) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	w.discard()
}

func (w *Writer) discard() {
	w.h.finish()
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.s.log.Warn("cas: remove temp file", "path", w.f.Name(), "err", err)
	}
}

// install renames a verified, fsynced file at src to digest's final name and indexes it, then evicts to the
// budget; the directory fsync and the victims' unlinks happen after s.mu is released, before it returns. If the
// blob is already present, src is removed instead and the existing blob counts as accessed.
// A failed rename leaves src in place; the error wraps the *os.LinkError, so errors.Is(err, syscall.EXDEV) works.
func (s *Store) install(src, digest string, size int64) error {
	s.mu.Lock()
	if e, ok := s.blobs[digest]; ok {
		at := s.touchLocked(e)
		s.mu.Unlock()
		s.recordAccess(digest, at)
		if err := os.Remove(src); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cas: remove duplicate", "path", src, "err", err)
		}
		return nil
	}
	final := s.blobPath(digest)
	if err := os.Rename(src, final); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("install %s: %w", digest, err)
	}
	e := &entry{digest: digest, size: size, disk: size}
	if info, err := os.Stat(final); err == nil {
		e.disk = allocated(info)
	}
	e.elem = s.lru.PushFront(e)
	s.blobs[digest] = e
	s.used += e.disk
	at := s.touchLocked(e)
	ev := s.evictLocked(e)
	s.mu.Unlock()
	// The directory fsync can wait seconds behind other files' data in the journal; cache hits must not. The blob
	// is already verified, fsynced and visible; a failed directory fsync only weakens durability, so keep it.
	s.recordAccess(digest, at)
	if err := syncDir(filepath.Dir(final)); err != nil {
		s.log.Warn("cas: fsync after rename", "digest", digest, "err", err)
	}
	s.finishEviction(ev)
	return nil
}
