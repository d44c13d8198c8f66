package cas

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	digests "github.com/edgefactory/edgefactory/internal/digest"
)

// Blob is an open, verified blob. It stays readable until Close even if it is deleted meanwhile, and it is never
// evicted while open. Read, ReadAt and Seek use the underlying file, shared with File.
type Blob struct {
	s    *Store
	e    *entry
	f    *os.File
	once sync.Once
}

// File returns the open file, for http.ServeContent and sendfile. Do not close it; close the Blob.
func (b *Blob) File() *os.File { return b.f }

// Size returns the blob's length in bytes.
func (b *Blob) Size() int64 { return b.e.size }

// Digest returns the blob's digest ("sha256:…").
func (b *Blob) Digest() string { return b.e.digest }

// Read reads from the blob's current offset.
func (b *Blob) Read(p []byte) (int, error) { return b.f.Read(p) }

// ReadAt reads at an absolute offset without moving the current one.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }

// Seek sets the offset for the next Read.
func (b *Blob) Seek(offset int64, whence int) (int64, error) { return b.f.Seek(offset, whence) }

// Close releases the blob; the last Close of a deleted blob frees its space. Closing twice is harmless.
func (b *Blob) Close() error {
	var err error
	b.once.Do(func() {
		err = b.f.Close()
		b.s.mu.Lock()
		grave := b.s.releaseLocked(b.e)
		b.s.mu.Unlock()
		b.s.unlink(grave)
	})
	return err
}

// Open opens a blob for reading and records the access for LRU. errors.Is(err, ErrNotFound) when it is absent.
func (s *Store) Open(digest string) (*Blob, error) {
	return s.acquire(digest, true)
}

func (s *Store) acquire(digest string, touch bool) (*Blob, error) {
	if err := digests.Check(digest); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	s.mu.Lock()
	b, err := s.acquireLocked(digest)
	var at time.Time
	if err == nil && touch {
		at = s.touchLocked(b.e)
	}
	s.mu.Unlock()
	if !at.IsZero() {
		s.recordAccess(digest, at)
	}
	return b, err
}

// acquireLocked opens a blob's file and takes a reference. The open is under s.mu so the file cannot be taken out
// of its final name between the lookup and the reference.
func (s *Store) acquireLocked(digest string) (*Blob, error) {
	e, ok := s.blobs[digest]
	if !ok {
		return nil, fmt.Errorf("open blob %s: %w", digest, ErrNotFound)
	}
	f, err := os.Open(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed the file behind the store's back: forget it rather than fail forever.
		s.log.Warn("cas: blob file vanished", "digest", digest)
		s.unindexLocked(e)
		s.used -= e.disk
		return nil, fmt.Errorf("open blob %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	e.refs++
	return &Blob{s: s, e: e, f: f}, nil
}

// Delete removes a blob, pinned or not (the pin itself stays). If it is open, the file is unlinked at the last
// Close; it disappears from the index at once. errors.Is(err, ErrNotFound) when it is absent.
func (s *Store) Delete(digest string) error {
	if err := digests.Check(digest); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	s.mu.Lock()
	e, ok := s.blobs[digest]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("delete blob %s: %w", digest, ErrNotFound)
	}
	grave, err := s.deleteLocked(e)
	s.mu.Unlock()
	s.unlink(grave)
	return err
}

// Verify re-hashes a blob. If its bytes no longer match its digest (bit rot, tampering) it is deleted and the
// error satisfies errors.Is(err, ErrDigestMismatch). It does not count as an access.
func (s *Store) Verify(digest string) error {
	b, err := s.acquire(digest, false)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer b.Close()
	h := sha256.New()
	buf := make([]byte, copyBufSize)
	n, err := io.CopyBuffer(h, io.NewSectionReader(b.f, 0, 1<<62), buf)
	if err != nil {
		return fmt.Errorf("verify %s: %w", digest, err)
	}
	got := digestOf(h)
	if got == digest && n == b.e.size {
		return nil
	}
	// b holds a reference, so the file waits in tmp/ and the deferred Close unlinks it.
	s.mu.Lock()
	if s.blobs[digest] == b.e {
		if _, derr := s.deleteLocked(b.e); derr != nil {
			s.log.Error("cas: remove corrupt blob", "digest", digest, "err", derr)
		}
	}
	s.mu.Unlock()
	s.log.Warn("cas: corrupt blob removed", "digest", digest, "hashed", got, "bytes", n, "want_bytes", b.e.size)
	return fmt.Errorf("verify %s: content hashes to %s (%d bytes): %w", digest, got, n, ErrDigestMismatch)
}
