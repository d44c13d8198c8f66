// Package cas is the node's content-addressed store: blobs on local disk keyed by their sha256 digest, kept under a
// byte budget by least-recently-used eviction, with pins for blobs that must stay.
//
// Guarantee: a blob appears under its final name only after its bytes were hashed and matched its digest, fsynced,
// and renamed into place (then the directory fsynced), so nothing partial or unverified is ever served and a crash
// never leaves a partial file under a final name. A blob that is open is never evicted or unlinked under its reader.
//
// The store's one mutex is taken by every cache hit, so only index, LRU and accounting work happens under it, plus
// the renames and opens that must be atomic with them. Disk work that can wait on the filesystem's journal or free
// gigabytes (fsyncs, unlinks, access-time stamps) is done after it is released.
//
// Layout under the store directory:
//
//	sha256/<2 hex>/<64 hex>   blobs, read-only; mtime is the last access (persisted LRU order)
//	tmp/                      temp files, and deleted blobs awaiting their unlink or last reader; emptied at Open
//	pins                      pinned digests, one per line, replaced atomically
//	lock                      flock held while the store is open, so two processes never share a directory
package cas

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound is returned when a blob is not in the store.
var ErrNotFound = errors.New("blob not found")

// ErrDigestMismatch is returned when bytes do not hash to the digest they were expected (or stored) under.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrSizeMismatch is returned when a writer receives more or fewer bytes than the size it was created with.
var ErrSizeMismatch = errors.New("size mismatch")

// Options configure a Store.
type Options struct {
	// Budget is the number of bytes of disk the blobs may occupy (allocated blocks, so sparse images count for
	// what they really use); 0 means DiskShare of the file system's size, whatever size it has at the time.
	Budget int64
	// MinFree is the free space (bytes available to this process) the store keeps on its file system: when less
	// is free, blobs are evicted as if over budget, until enough is free or nothing more can go. 0: no floor.
	MinFree int64
	// Logger receives evictions and recoverable oddities; nil discards.
	Logger *slog.Logger
	// OnEvict, when set, is called (outside the store's lock) with the digest of every blob removed to make room.
	OnEvict func(digest string)
}

// Store is a content-addressed blob store rooted at one directory. It is safe for concurrent use.
type Store struct {
	dir     string
	log     *slog.Logger
	onEvict func(string)
	lock    *os.File

	// pinsMu serialises changes to the pins, so the pins file is written outside mu and still in order.
	pinsMu sync.Mutex

	mu      sync.Mutex
	budget  int64 // Options.Budget, then SetLimits
	minFree int64 // Options.MinFree, then SetLimits
	blobs   map[string]*entry
	lru     *list.List // of *entry; front is the most recently used
	pins    map[string]struct{}
	used    int64     // allocated bytes of indexed blobs plus deleted blobs still open
	clock   time.Time // last access stamp handed out; stamps strictly increase so mtime order is LRU order
	graves  uint64    // names the files of deleted blobs in tmp/
}

// entry is the in-memory record of one blob.
type entry struct {
	digest string
	size   int64 // content bytes
	disk   int64 // allocated bytes on disk
	refs   int   // open Blobs (Verify holds one while it hashes)
	elem   *list.Element
	// grave is where the file waits for its last reader once deleted while open; "" otherwise.
	grave string
}

// Open opens (creating if needed) the store in dir: it empties tmp/, takes the directory lock, loads the pins,
// indexes the blobs already on disk in their persisted LRU order, and evicts down to the budget.
func Open(dir string, opts Options) (*Store, error) {
	s := &Store{
		dir:     dir,
		budget:  opts.Budget,
		minFree: opts.MinFree,
		log:     opts.Logger,
		onEvict: opts.OnEvict,
		blobs:   make(map[string]*entry),
		lru:     list.New(),
		pins:    make(map[string]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.budget < 0 || s.minFree < 0 {
		return nil, fmt.Errorf("open cas %s: negative budget %d or free-space floor %d", dir, s.budget, s.minFree)
	}
	if err := s.lockDir(); err != nil {
		return nil, err
	}
	if err := s.prepareDirs(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.loadPins(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.scan(); err != nil {
		s.Close()
		return nil, err
	}
	s.mu.Lock()
	ev := s.evictLocked(nil)
	s.mu.Unlock()
	s.finishEviction(ev)
	return s, nil
}

// Close releases the directory lock. Blobs still open stay readable; the Store must not be used afterwards.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	s.lock = nil
	return err
}

func (s *Store) lockDir() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("open cas: %w", err)
	}
	lockPath := filepath.Join(s.dir, "lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644) //nolint:gosec // an empty file: nothing to hide
	if err != nil {
		return fmt.Errorf("open cas: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("open cas %s: directory is in use by another store: %w", s.dir, err)
	}
	s.lock = f
	return nil
}

// prepareDirs clears tmp/ and creates all 256 shard directories up front, so a commit never has to create (and
// fsync) a parent directory on its path.
func (s *Store) prepareDirs() error {
	tmp := s.tmpDir()
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("open cas: clear tmp: %w", err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("open cas: %w", err)
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(s.dir, "sha256", fmt.Sprintf("%02x", i)), 0o755); err != nil {
			return fmt.Errorf("open cas: %w", err)
		}
	}
	if err := syncDir(filepath.Join(s.dir, "sha256")); err != nil {
		return fmt.Errorf("open cas: %w", err)
	}
	return syncDir(s.dir)
}

// scan indexes the blobs on disk. Files are trusted to match their names (they only got there through a verified
// rename); Verify is the scrubber for bit rot.
func (s *Store) scan() error {
	type found struct {
		e     *entry
		mtime time.Time
	}
	var all []found
	root := filepath.Join(s.dir, "sha256")
	shards, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("open cas: %w", err)
	}
	for _, shard := range shards {
		if !shard.IsDir() {
			continue
		}
		names, err := os.ReadDir(filepath.Join(root, shard.Name()))
		if err != nil {
			return fmt.Errorf("open cas: %w", err)
		}
		for _, n := range names {
			d := digestFromName(n.Name())
			info, err := n.Info()
			if err != nil {
				continue // vanished while scanning
			}
			if d == "" || d[len(digestPrefix):len(digestPrefix)+2] != shard.Name() || !info.Mode().IsRegular() {
				s.log.Warn("cas: ignoring stray file", "path", filepath.Join(root, shard.Name(), n.Name()))
				continue
			}
			all = append(all, found{
				e:     &entry{digest: d, size: info.Size(), disk: allocated(info)},
				mtime: info.ModTime(),
			})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		f.e.elem = s.lru.PushFront(f.e)
		s.blobs[f.e.digest] = f.e
		s.used += f.e.disk
		if f.mtime.After(s.clock) {
			s.clock = f.mtime
		}
	}
	s.log.Debug("cas: opened", "dir", s.dir, "blobs", len(all), "bytes", s.used, "budget", s.budget)
	return nil
}

// Stat returns a blob's content size and whether it is present. It does not count as an access.
func (s *Store) Stat(digest string) (size int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.blobs[digest]
	if !ok {
		return 0, false
	}
	return e.size, true
}

// Has reports whether a blob is present. It does not count as an access.
func (s *Store) Has(digest string) bool {
	_, ok := s.Stat(digest)
	return ok
}

// Usage returns the bytes of disk the blobs occupy (including deleted blobs still held open), the budget in force
// (the one set, or DiskShare of the file system) and the number of blobs.
func (s *Store) Usage() (used, budget int64, blobs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.budgetLocked(), len(s.blobs)
}

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

func (s *Store) blobPath(digest string) string {
	h := digest[len(digestPrefix):]
	return filepath.Join(s.dir, "sha256", h[:2], h)
}

// touchLocked makes e the most recently used blob in memory and returns the access stamp for recordAccess.
func (s *Store) touchLocked(e *entry) time.Time {
	s.lru.MoveToFront(e.elem)
	t := time.Now()
	if !t.After(s.clock) {
		t = s.clock.Add(time.Microsecond)
	}
	s.clock = t
	return t
}

// recordAccess persists an access stamp as the blob's mtime, for the LRU order after a restart. It is an inode
// write, so it is called without s.mu; a blob evicted meanwhile just misses it, and two racing stamps of one blob
// may land in either order, which only blurs the persisted order by a microsecond.
func (s *Store) recordAccess(digest string, t time.Time) {
	if err := os.Chtimes(s.blobPath(digest), t, t); err != nil {
		s.log.Debug("cas: record access", "digest", digest, "err", err)
	}
}

// The disk operations that may take long, as variables so that tests can stand in for a slow disk.
var (
	syncDir    = fsyncDir
	removeFile = os.Remove
)

func fsyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}
