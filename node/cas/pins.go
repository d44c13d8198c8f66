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
)

// Pins are a property of a digest, not of a file: a digest may be pinned before its blob arrives, and Delete or a
// failed Verify leaves the pin in place so the good copy is kept once it is fetched again. The pins file is small
// and rewritten whole (temp file, fsync, rename, directory fsync) on every change, so a crash leaves the old or the
// new set, never a torn one.

// Pin protects a digest from eviction (not from Delete) until Unpin, across restarts.
func (s *Store) Pin(digest string) error {
	if err := CheckDigest(digest); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pins[digest]; ok {
		return nil
	}
	s.pins[digest] = struct{}{}
	if err := s.savePinsLocked(); err != nil {
		delete(s.pins, digest)
		return fmt.Errorf("pin %s: %w", digest, err)
	}
	return nil
}

// Unpin makes a digest evictable again and evicts at once if the store is over budget.
func (s *Store) Unpin(digest string) error {
	if err := CheckDigest(digest); err != nil {
		return fmt.Errorf("unpin: %w", err)
	}
	s.mu.Lock()
	if _, ok := s.pins[digest]; !ok {
		s.mu.Unlock()
		return nil
	}
	delete(s.pins, digest)
	if err := s.savePinsLocked(); err != nil {
		s.pins[digest] = struct{}{}
		s.mu.Unlock()
		return fmt.Errorf("unpin %s: %w", digest, err)
	}
	evicted := s.evictLocked(nil)
	s.mu.Unlock()
	s.notifyEvicted(evicted)
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
		if err := CheckDigest(line); err != nil {
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

func (s *Store) savePinsLocked() error {
	digests := make([]string, 0, len(s.pins))
	for d := range s.pins {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	var b strings.Builder
	for _, d := range digests {
		b.WriteString(d)
		b.WriteByte('\n')
	}
	return writeFileAtomic(s.pinsPath(), s.tmpDir(), []byte(b.String()))
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
