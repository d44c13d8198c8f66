package cas

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	digests "github.com/edgefactory/edgefactory/internal/digest"
)

// Import moves a finished file into the store and returns its digest and size. The file is hashed (and checked
// against expected when that is not ""), its aligned zero runs are punched into holes, and it is fsynced and
// renamed into place; on another filesystem, or when the file has other hard links, it is copied sparsely instead
// and then removed. On success the file at path is gone. On any failure, including ErrDigestMismatch, it is left
// where it was with the same content. Nothing may still be writing to the file.
func (s *Store) Import(path, expected string) (digest string, size int64, err error) {
	if expected != "" {
		if err := digests.Check(expected); err != nil {
			return "", 0, fmt.Errorf("import %s: %w", path, err)
		}
	}
	info, err := os.Lstat(path)
	if err != nil {
		return "", 0, fmt.Errorf("import: %w", err)
	}
	if !info.Mode().IsRegular() {
		return "", 0, fmt.Errorf("import %s: not a regular file (%s)", path, info.Mode().Type())
	}
	punch := true
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
		punch = false // a read-only source can still be hashed and moved or copied
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		return "", 0, fmt.Errorf("import: %w", err)
	}
	defer f.Close()

	sc := scanner{f: f, h: sha256.New(), punch: punch}
	if err := sc.run(); err != nil {
		return "", 0, fmt.Errorf("import %s: %w", path, err)
	}
	if sc.punchErr != nil {
		s.log.Debug("cas: import without hole punching", "path", path, "err", sc.punchErr)
	}
	digest, size = digestOf(sc.h), sc.size
	if expected != "" && digest != expected {
		return "", 0, fmt.Errorf("import %s: content hashes to %s, expected %s: %w", path, digest, expected,
			ErrDigestMismatch)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		// Renaming would leave the blob sharing its inode with a path outside the store that anyone may write.
		return s.importCopy(f, path, digest, size)
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("import %s: %w", path, err)
	}
	if err := f.Chmod(0o444); err != nil {
		return "", 0, fmt.Errorf("import %s: %w", path, err)
	}
	err = s.install(path, digest, size)
	if err == nil {
		return digest, size, nil
	}
	// The source stays the caller's: give it back as it was (best effort; the install error is the one to report).
	_ = f.Chmod(info.Mode().Perm())
	if errors.Is(err, syscall.EXDEV) {
		return s.importCopy(f, path, digest, size)
	}
	return "", 0, fmt.Errorf("import %s: %w", path, err)
}

// importCopy copies f through a Writer (which keeps zero blocks as holes and re-verifies the copy) and then
// removes the source.
func (s *Store) importCopy(f *os.File, path, digest string, size int64) (string, int64, error) {
	w, err := s.Create(digest, size)
	if err != nil {
		return "", 0, fmt.Errorf("import %s: %w", path, err)
	}
	defer w.Abort()
	// The section reader hides os.File's WriterTo, so CopyBuffer really uses the large aligned buffer.
	if _, err := io.CopyBuffer(w, io.NewSectionReader(f, 0, size), make([]byte, copyBufSize)); err != nil {
		return "", 0, fmt.Errorf("import %s: copy: %w", path, err)
	}
	if _, _, err := w.Commit(); err != nil {
		return "", 0, fmt.Errorf("import %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		s.log.Warn("cas: remove imported source", "path", path, "err", err)
	}
	return digest, size, nil
}
