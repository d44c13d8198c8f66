package cas

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Eviction policy. When the blobs occupy more than the budget, unpinned blobs that nobody has open are removed,
// oldest access first, with one exception: a blob larger than the whole budget ("oversized") goes before any
// other. Committing an oversized blob does not evict anything: it is stored over budget rather than flushing the
// whole cache for one file, and it is the first victim the next time something needs room. Pinned and open blobs
// may keep the store over budget; that is logged, never forced.

// evictLocked removes victims until the store is within budget and returns their digests for notifyEvicted.
// keep is the blob just added (nil at Open/Unpin): it is never its own victim.
func (s *Store) evictLocked(keep *entry) []string {
	if s.budget == 0 || s.used <= s.budget {
		return nil
	}
	if keep != nil && keep.disk > s.budget {
		s.log.Warn("cas: blob larger than the budget stored over budget; it will be evicted first",
			"digest", keep.digest, "bytes", keep.disk, "budget", s.budget)
		return nil
	}
	var evicted []string
	failed := make(map[*entry]bool)
	for s.used > s.budget {
		v := s.victimLocked(keep, failed)
		if v == nil {
			s.log.Warn("cas: over budget; remaining blobs are pinned or open", "used", s.used, "budget", s.budget)
			break
		}
		if err := s.removeLocked(v); err != nil {
			s.log.Error("cas: evict", "digest", v.digest, "err", err)
			failed[v] = true
			continue
		}
		s.log.Info("cas: evicted", "digest", v.digest, "bytes", v.disk, "used", s.used, "budget", s.budget)
		evicted = append(evicted, v.digest)
	}
	return evicted
}

// victimLocked picks the next blob to evict: any oversized one first, else the least recently used.
func (s *Store) victimLocked(keep *entry, failed map[*entry]bool) *entry {
	var oldest *entry
	for el := s.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*entry)
		if e == keep || e.refs > 0 || failed[e] {
			continue
		}
		if _, pinned := s.pins[e.digest]; pinned {
			continue
		}
		if e.disk > s.budget {
			return e
		}
		if oldest == nil {
			oldest = e
		}
	}
	return oldest
}

func (s *Store) notifyEvicted(digests []string) {
	if s.onEvict == nil {
		return
	}
	for _, d := range digests {
		s.onEvict(d)
	}
}

// removeLocked unlinks a blob nobody has open and drops it from the index. A crash before the unlink reaches the
// disk only resurrects a valid blob, so no directory fsync is needed.
func (s *Store) removeLocked(e *entry) error {
	if err := os.Remove(s.blobPath(e.digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", e.digest, err)
	}
	s.unindexLocked(e)
	s.used -= e.disk
	return nil
}

// deleteLocked removes a blob now, or, when it is open, moves it out of its final name into tmp/ (so nobody new can
// open it and a fresh copy can be committed) and unlinks it at the last Close. tmp/ is emptied at Open, so a crash
// in between leaks nothing.
func (s *Store) deleteLocked(e *entry) error {
	if e.refs == 0 {
		return s.removeLocked(e)
	}
	s.graves++
	grave := filepath.Join(s.tmpDir(), fmt.Sprintf("deleted-%d-%s", s.graves, e.digest[len(digestPrefix):]))
	if err := os.Rename(s.blobPath(e.digest), grave); err != nil {
		return fmt.Errorf("delete %s: %w", e.digest, err)
	}
	s.unindexLocked(e)
	e.grave = grave // still counted in used until the space is really freed
	return nil
}

// releaseLocked drops one reference and finishes a deferred deletion.
func (s *Store) releaseLocked(e *entry) {
	e.refs--
	if e.refs > 0 || e.grave == "" {
		return
	}
	if err := os.Remove(e.grave); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("cas: remove deleted blob", "digest", e.digest, "err", err)
		return
	}
	s.used -= e.disk
	e.grave = ""
}

func (s *Store) unindexLocked(e *entry) {
	if s.blobs[e.digest] == e {
		delete(s.blobs, e.digest)
	}
	if e.elem != nil {
		s.lru.Remove(e.elem)
		e.elem = nil
	}
}
