package cas

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digests "github.com/edgefactory/edgefactory/internal/digest"
)

// Pins are a property of a digest, not of a file: a digest may be pinned before its blob arrives, and Delete or a
// failed Verify leaves the pin in place so the good copy is kept once it is fetched again. The pins file is small
// and rewritten whole (temp file, fsync, rename, directory fsync) on every change, so a crash leaves the old or the
// new set, never a torn one. It is written without the store's lock (cache hits must not wait for its fsyncs) but
// under pinsMu, so the writes land in the order of the changes.

// Pin protects a digest from eviction (not from Delete) until Unpin, across restarts.
func (s *Store) Pin(digest string) error {
	if err := digests.Check(digest); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	s.pinsMu.Lock()
	defer s.pinsMu.Unlock()
	s.mu.Lock()
	if _, ok := s.pins[digest]; ok {
		s.mu.Unlock()
		return nil
	}
	// In effect at once, before the file says so: if writing it fails, the pin is withdrawn and nothing was lost.
	s.pins[digest] = struct{}{}
	pins := s.pinsFileLocked("")
	s.mu.Unlock()
	if err := writeFileAtomic(s.pinsPath(), s.tmpDir(), pins); err != nil {
		s.mu.Lock()
		delete(s.pins, digest)
		s.mu.Unlock()
		return fmt.Errorf("pin %s: %w", digest, err)
	}
	return nil
}

// Unpin makes a digest evictable again and evicts at once if the store is over budget.
func (s *Store) Unpin(digest string) error {
	if err := digests.Check(digest); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	s.pinsMu.Lock()
	s.mu.Lock()
	_, ok := s.pins[digest]
	pins := s.pinsFileLocked(digest)
	s.mu.Unlock()
	if !ok {
		s.pinsMu.Unlock()
		return nil
	}
	// The pin keeps protecting the blob until the file no longer has it, so a failed write loses nothing.
	if err := writeFileAtomic(s.pinsPath(), s.tmpDir(), pins); err != nil {
		s.pinsMu.Unlock()
		return fmt.Errorf("unpin %s: %w", digest, err)
	}
	s.mu.Lock()
	delete(s.pins, digest)
	ev := s.evictLocked(nil)
	s.mu.Unlock()
	s.pinsMu.Unlock()
	s.finishEviction(ev)
	return nil
}

// Pinned reports whether a digest is pinned.
func (s *Store) Pinned(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pins[digest]
	return ok
}

func (s *Store) pinsPath() string { return filepath.Join(s.dir, "pins") }

func (s *Store) loadPins() error {
	f, err := os.Open(s.pinsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open cas: load pins: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if err := digests.Check(line); err != nil {
			s.log.Warn("cas: ignoring bad line in pins file", "err", err)
			continue
		}
		s.pins[line] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("open cas: load pins: %w", err)
	}
	return nil
}

// pinsFileLocked returns the content of the pins file for the current pins, except skip.
func (s *Store) pinsFileLocked(skip string) []byte {
	digests := make([]string, 0, len(s.pins))
	for d := range s.pins {
		if d != skip {
			digests = append(digests, d)
		}
	}
	sort.Strings(digests)
	var b strings.Builder
	for _, d := range digests {
		b.WriteString(d)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// writeFileAtomic replaces path with data so that a crash leaves either the old or the new content.
func writeFileAtomic(path, tmpDir string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "pins-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}
