package cas

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Eviction policy. When the blobs occupy more than the budget, unpinned blobs that nobody has open are removed,
// oldest access first, with one exception: a blob larger than the whole budget ("oversized") goes before any
// other. Committing an oversized blob does not evict anything: it is stored over budget rather than flushing the
// whole cache for one file, and it is the first victim the next time something needs room. Pinned and open blobs
// may keep the store over budget; that is logged, never forced.

// eviction is what evictLocked took out of the store, for finishEviction once s.mu is released.
type eviction struct {
	digests []string // for OnEvict
	graves  []string // files to unlink
}

// evictLocked takes victims out of the store until it is within its limit (limitLocked). keep is the blob just
// added (nil at Open/Unpin/SetLimits): it is never its own victim.
func (s *Store) evictLocked(keep *entry) eviction {
	var ev eviction
	budget := s.budgetLocked()
	limit, bounded := s.limitLocked(budget)
	if !bounded || s.used <= limit {
		return ev
	}
	if keep != nil && limit == budget && keep.disk > budget {
		s.log.Warn("cas: blob larger than the budget stored over budget; it will be evicted first",
			"digest", keep.digest, "bytes", keep.disk, "budget", budget)
		return ev
	}
	failed := make(map[*entry]bool)
	for s.used > limit {
		v := s.victimLocked(keep, failed)
		if v == nil {
			s.log.Warn("cas: over its limit; remaining blobs are pinned or open", "used", s.used, "limit", limit,
				"budget", s.budget, "min_free", s.minFree)
			break
		}
		grave, err := s.deleteLocked(v)
		if err != nil {
			s.log.Error("cas: evict", "digest", v.digest, "err", err)
			failed[v] = true
			continue
		}
		s.log.Info("cas: evicted", "digest", v.digest, "bytes", v.disk, "used", s.used, "limit", limit)
		ev.digests = append(ev.digests, v.digest)
		ev.graves = append(ev.graves, grave)
	}
	return ev
}

// DiskShare is the part of its file system's size the blobs may occupy when no budget is set (Options.Budget 0):
// the rest is left to the node's other state and to builds' work files.
const DiskShare = 0.8

// budgetLocked is the budget in force: the one set, or DiskShare of the file system's size (0 if that is unknown).
func (s *Store) budgetLocked() int64 {
	if s.budget > 0 {
		return s.budget
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		s.log.Warn("cas: file system size unknown; no budget is kept", "err", err)
		return 0
	}
	return int64(float64(st.Blocks) * float64(st.Bsize) * DiskShare)
}

// limitLocked is how many bytes the blobs may occupy now: the budget, lowered while the file system has less than
// minFree available by the shortfall. bounded is false when there is neither a budget nor a shortfall.
func (s *Store) limitLocked(budget int64) (limit int64, bounded bool) {
	limit, bounded = budget, budget > 0
	if s.minFree == 0 {
		return limit, bounded
	}
	free, err := s.free()
	if err != nil {
		s.log.Warn("cas: free space unknown; the free-space floor is not kept", "err", err)
		return limit, bounded
	}
	if free >= s.minFree {
		return limit, bounded
	}
	room := max(s.used-(s.minFree-free), 0)
	if !bounded || room < limit {
		return room, true
	}
	return limit, bounded
}

// free is the space available to this process on the store's file system.
func (s *Store) free() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// keepFloor evicts while the file system has less free space than the floor (nothing when there is no floor).
func (s *Store) keepFloor() {
	s.mu.Lock()
	if s.minFree == 0 {
		s.mu.Unlock()
		return
	}
	ev := s.evictLocked(nil)
	s.mu.Unlock()
	s.finishEviction(ev)
}

// SetLimits changes the budget and the free-space floor (see Options) and evicts at once if the store is now over.
func (s *Store) SetLimits(budget, minFree int64) error {
	if budget < 0 || minFree < 0 {
		return fmt.Errorf("cas: negative budget %d or free-space floor %d", budget, minFree)
	}
	s.mu.Lock()
	s.budget, s.minFree = budget, minFree
	ev := s.evictLocked(nil)
	s.mu.Unlock()
	s.finishEviction(ev)
	return nil
}

// finishEviction unlinks what evictLocked took out and tells OnEvict; it must be called without s.mu.
func (s *Store) finishEviction(ev eviction) {
	s.unlink(ev.graves...)
	s.notifyEvicted(ev.digests)
}

// victimLocked picks the next blob to evict: any oversized one first, else the least recently used.
func (s *Store) victimLocked(keep *entry, failed map[*entry]bool) *entry {
	var oldest *entry
	for el := s.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*entry) //nolint:forcetypeassert // s.lru holds only *entry
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

// A blob leaves the store in two steps. Under s.mu its file is renamed out of its final name into tmp/ and the
// index and used are updated: from then on nobody can open it, and a new copy of the same digest may be committed
// under the final name at once. Then, with s.mu released, the renamed file is unlinked, for unlinking a multi-GB
// file makes the filesystem free every extent, and s.mu is taken by every cache hit. Unlinking the final name
// outside the lock instead could take with it a copy committed in between. A crash before the unlink leaves the
// file in tmp/, which Open empties, or (the rename not being fsynced) back under its final name: a valid blob.

// deleteLocked takes e out of the store and returns the file to unlink once s.mu is released, "" when there is
// none yet: when e is open, the file waits in tmp/ for the last Close, still counted in used.
func (s *Store) deleteLocked(e *entry) (string, error) {
	s.graves++
	grave := filepath.Join(s.tmpDir(), fmt.Sprintf("deleted-%d-%s", s.graves, e.digest[len(digestPrefix):]))
	err := os.Rename(s.blobPath(e.digest), grave)
	if errors.Is(err, fs.ErrNotExist) {
		grave = "" // removed behind the store's back: only the index is left to fix
	} else if err != nil {
		return "", fmt.Errorf("delete %s: %w", e.digest, err)
	}
	s.unindexLocked(e)
	if grave != "" && e.refs > 0 {
		e.grave = grave
		return "", nil
	}
	s.used -= e.disk
	return grave, nil
}

// releaseLocked drops one reference and returns the file to unlink once s.mu is released, when that was the last
// reference to a deleted blob.
func (s *Store) releaseLocked(e *entry) string {
	e.refs--
	if e.refs > 0 || e.grave == "" {
		return ""
	}
	grave := e.grave
	e.grave = ""
	s.used -= e.disk
	return grave
}

// unlink removes files deleteLocked or releaseLocked took out of the store; it must be called without s.mu. A file
// that cannot be removed stays in tmp/ until the next Open.
func (s *Store) unlink(graves ...string) {
	for _, g := range graves {
		if g == "" {
			continue
		}
		if err := removeFile(g); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cas: remove deleted blob", "path", g, "err", err)
		}
	}
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
