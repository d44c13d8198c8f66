package bundle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sync/singleflight"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// tmpDir holds a store's partial and temporary files, under its root; it is removed once a run completes.
const tmpDir = ".tmp"

// store is the OCI layout a run writes into: the target directory, the work directory of a tar target, or a
// scratch directory (registry targets). Blobs are checked against their digest before they count as present (once
// per run), written as temporary file, fsync, rename, and fetched with a resumable partial file. A seed (the
// target's earlier complete tar) lends blobs the root lacks.
type store struct {
	root string
	seed *Bundle
	log  *slog.Logger
	lock *os.File

	mu     sync.Mutex
	good   map[string]int64         // digest → size, checked good under root this run
	seeded map[string]int64         // checked good in seed
	busy   map[string]chan struct{} // digest → closed when the fetch under way ends
	fresh  map[string]bool          // fetched by this run
	flight singleflight.Group
}

// fetchFunc opens a blob's bytes from offset on (a source that ignores ranges starts at 0: start says where).
type fetchFunc func(ctx context.Context, offset int64) (rc io.ReadCloser, start int64, err error)

func openStore(root string, seed *Bundle, log *slog.Logger) (*store, error) {
	for _, d := range []string{filepath.Join(root, filepath.FromSlash(BlobsDir)), filepath.Join(root, tmpDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	lock, err := os.OpenFile(filepath.Join(root, tmpDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644) //nolint:gosec // an empty file: nothing to hide
	if err != nil {
		return nil, err
	}

	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()

		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: another edgefactory mirror is writing there", root)
		}

		return nil, fmt.Errorf("lock %s: %w", root, err)
	}

	// Temporary files of a run that died are garbage; partial blobs are kept for resuming.
	entries, err := os.ReadDir(filepath.Join(root, tmpDir))
	if err != nil {
		lock.Close()

		return nil, err
	}

	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tmp-") {
			os.Remove(filepath.Join(root, tmpDir, e.Name())) // garbage; a failure leaves it for next time
		}
	}

	return &store{root: root, seed: seed, log: log, lock: lock, good: map[string]int64{}, seeded: map[string]int64{},
		busy: map[string]chan struct{}{}, fresh: map[string]bool{}}, nil
}

// close releases the lock.
func (s *store) close() {
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
}

func (s *store) blobPath(d string) string {
	return filepath.Join(s.root, filepath.FromSlash(BlobsDir), strings.TrimPrefix(d, digest.Prefix))
}

func (s *store) partialPath(d string) string {
	return filepath.Join(s.root, tmpDir, strings.TrimPrefix(d, digest.Prefix)+".partial")
}

// mightHave is a cheap guess (no hashing): a blob of that size is under root or in the seed.
func (s *store) mightHave(d string, size int64) bool {
	if st, err := os.Stat(s.blobPath(d)); err == nil && st.Size() == size {
		return true
	}

	if s.seed != nil {
		if n, ok := s.seed.Has(d); ok && n == size {
			return true
		}
	}

	return false
}

// partialSize is how much of a blob a partial file holds.
func (s *store) partialSize(d string) int64 {
	if st, err := os.Stat(s.partialPath(d)); err == nil {
		return st.Size()
	}

	return 0
}

// has reports whether the blob is present with the bytes its digest says, under root or in the seed, hashing it
// the first time it is asked this run. A file under root that fails is removed (it is fetched again).
func (s *store) has(d string, size int64) (bool, error) {
	s.mu.Lock()
	n, ok := s.good[d]

	if !ok {
		n, ok = s.seeded[d]
	}
	s.mu.Unlock()

	if ok {
		return size < 0 || n == size, nil
	}

	v, err, _ := s.flight.Do("check:"+d, func() (any, error) { return s.check(d, size) })
	if err != nil {
		return false, err
	}

	return v.(bool), nil //nolint:forcetypeassert // check returns a bool
}

func (s *store) check(d string, size int64) (bool, error) {
	p := s.blobPath(d)

	got, n, err := hashFile(p)

	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, err
	case got == d && (size < 0 || n == size):
		s.mu.Lock()
		s.good[d] = n
		s.mu.Unlock()

		return true, nil
	default:
		s.log.Warn("a blob in the bundle's directory does not match its digest: fetching it again", "digest", d,
			"hashed", got, "size", n)

		if err := os.Remove(p); err != nil {
			return false, err
		}
	}

	if s.seed == nil {
		return false, nil
	}

	if n, ok := s.seed.Has(d); !ok || (size >= 0 && n != size) {
		return false, nil
	}

	rc, n, err := s.seed.Blob(d)
	if err != nil {
		return false, err
	}
	defer rc.Close() // read-only

	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, err
	}

	if digest.OfHash(h) != d {
		s.log.Warn("a blob of the earlier bundle does not match its digest: fetching it again", "digest", d)

		return false, nil
	}

	s.mu.Lock()
	s.seeded[d] = n
	s.mu.Unlock()

	return true, nil
}

// fetchedNow reports whether this run fetched the blob (rather than finding it).
func (s *store) fetchedNow(d string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.fresh[d]
}

// open reads a blob has found present.
func (s *store) open(d string) (io.ReadCloser, int64, error) {
	s.mu.Lock()
	_, inRoot := s.good[d]
	_, inSeed := s.seeded[d]
	s.mu.Unlock()

	switch {
	case inRoot:
		f, err := os.Open(s.blobPath(d))
		if err != nil {
			return nil, 0, err
		}

		st, err := f.Stat()
		if err != nil {
			f.Close()

			return nil, 0, err
		}

		return f, st.Size(), nil
	case inSeed:
		return s.seed.Blob(d)
	default:
		return nil, 0, fmt.Errorf("blob %s: %w", d, os.ErrNotExist)
	}
}

// read returns a small blob's bytes, which must be present.
func (s *store) read(d string, limit int64) ([]byte, error) {
	rc, n, err := s.open(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close() // read-only

	if n > limit {
		return nil, fmt.Errorf("blob %s: %d bytes, more than the %d expected", d, n, limit)
	}

	return io.ReadAll(rc)
}

// put stores bytes already in memory (manifests).
func (s *store) put(d string, data []byte) error {
	if ok, err := s.has(d, int64(len(data))); ok || err != nil {
		return err
	}

	if got := digest.Of(data); got != d {
		return fmt.Errorf("blob %s: bytes hash to %s", d, got)
	}

	if err := s.writeFile(s.blobPath(d), data); err != nil {
		return err
	}

	s.mu.Lock()
	s.good[d] = int64(len(data))
	s.mu.Unlock()

	return nil
}

// ensure makes the blob present, fetching what is missing: nothing when it is there already (reused), the rest
// of a partial file from an interrupted run (resumed with a range request), or all of it. Written bytes are
// reported to onBytes as they arrive.
func (s *store) ensure(ctx context.Context, d string, size int64, fetch fetchFunc, onBytes func(int64)) (reused bool, err error) {
	if ok, err := s.has(d, size); ok || err != nil {
		return ok, err
	}

	release, err := s.acquire(ctx, d)
	if err != nil {
		return false, err
	}
	defer release()

	if ok, err := s.has(d, size); ok || err != nil {
		return ok, err // fetched meanwhile
	}

	return false, s.download(ctx, d, size, fetch, onBytes)
}

// acquire makes this caller the one fetching d, waiting while another fetch of d is under way (so that a blob is
// never fetched twice at once, whoever reads it). release must be called once.
func (s *store) acquire(ctx context.Context, d string) (release func(), err error) {
	for {
		s.mu.Lock()
		ch, busy := s.busy[d]

		if !busy {
			ch = make(chan struct{})
			s.busy[d] = ch
			s.mu.Unlock()

			var once sync.Once

			return func() {
				once.Do(func() {
					s.mu.Lock()
					delete(s.busy, d)
					s.mu.Unlock()
					close(ch)
				})
			}, nil
		}

		s.mu.Unlock()

		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *store) download(ctx context.Context, d string, size int64, fetch fetchFunc, onBytes func(int64)) error {
	p := s.partialPath(d)

	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644) //nolint:gosec // public release content, as the bundle is
	if err != nil {
		return err
	}

	keep := false // a partial file worth resuming stays; any other is removed

	defer func() {
		f.Close()

		if !keep {
			os.Remove(p) // nothing worth keeping
		}
	}()

	h := sha256.New()

	have, err := io.Copy(h, f)
	if err != nil {
		return err
	}

	if have >= size {
		// Complete, yet never renamed (or too long): start again rather than trust it.
		have = 0
		h.Reset()
	}

	rc, start, err := fetch(ctx, have)
	if err != nil {
		keep = have > 0

		return err
	}
	defer rc.Close() // read to its end or abandoned

	switch start {
	case have:
	case 0:
		h.Reset() // the source sent the whole blob
	default:
		return fmt.Errorf("blob %s: asked for bytes from %d, the source sent them from %d", d, have, start)
	}

	if err := f.Truncate(start); err != nil {
		return err
	}

	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}

	n, err := io.Copy(io.MultiWriter(f, h), &ctxReader{ctx: ctx, r: io.LimitReader(rc, size-start+1), onBytes: onBytes})
	total := start + n

	switch {
	case err != nil:
		keep = total > 0 && total < size

		return err
	case total != size:
		return fmt.Errorf("blob %s: %d bytes, want %d", d, total, size)
	}

	if got := digest.OfHash(h); got != d {
		return fmt.Errorf("blob %s: the bytes fetched hash to %s", d, got)
	}

	if err := f.Sync(); err != nil {
		return err
	}

	if err := os.Rename(p, s.blobPath(d)); err != nil {
		return err
	}

	keep = true // renamed: nothing left to remove

	s.mu.Lock()
	s.good[d] = size
	s.fresh[d] = true
	s.mu.Unlock()

	return nil
}

// tee passes body through and keeps the bytes as blob d when they are read to the end and match; bytes read
// partly, or not matching, are dropped. It lets blobs read by other code (catalog reads) land in the store.
// release (from acquire) is called once the body is read or closed.
func (s *store) tee(d string, size int64, body io.ReadCloser, release func()) io.ReadCloser {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "tmp-")
	if err != nil {
		release()

		return body
	}

	return &teeBody{s: s, d: d, size: size, body: body, f: f, h: sha256.New(), release: release}
}

type teeBody struct {
	release func()
	s       *store
	d       string
	size    int64
	body    io.ReadCloser
	f       *os.File
	h       hash.Hash
	n       int64
	err     error
	done    bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	if n > 0 && t.err == nil {
		if _, werr := t.f.Write(p[:n]); werr != nil {
			t.err = werr
		}

		t.h.Write(p[:n])
		t.n += int64(n)
	}

	if errors.Is(err, io.EOF) {
		t.finish()
	}

	return n, err
}

func (t *teeBody) finish() {
	if t.done {
		return
	}

	t.done = true
	name := t.f.Name()

	defer t.release()

	ok := t.err == nil && (t.size < 0 || t.n == t.size) && digest.OfHash(t.h) == t.d && t.f.Sync() == nil
	t.f.Close()

	if ok && os.Rename(name, t.s.blobPath(t.d)) == nil {
		t.s.mu.Lock()
		t.s.good[t.d] = t.n
		t.s.fresh[t.d] = true
		t.s.mu.Unlock()

		return
	}

	os.Remove(name) // not kept
}

func (t *teeBody) Close() error {
	t.finish()

	return t.body.Close()
}

// writeFile writes a file atomically: temporary file under tmpDir, fsync, rename.
func (s *store) writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "tmp-")
	if err != nil {
		return err
	}

	name := f.Name()

	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}

	if cerr := f.Close(); err == nil {
		err = cerr
	}

	if err == nil {
		err = os.Chmod(name, 0o644) //nolint:gosec // public release content, readable by the importer
	}

	if err == nil {
		err = os.Rename(name, path)
	}

	if err != nil {
		os.Remove(name) // not kept

		return fmt.Errorf("write %s: %w", path, err)
	}

	return nil
}

// prune removes the blobs under root that keep does not name.
func (s *store) prune(keep map[string]int64) (int, error) {
	dir := filepath.Join(s.root, filepath.FromSlash(BlobsDir))

	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}

	removed := 0

	for _, e := range entries {
		if _, ok := keep[digest.Prefix+e.Name()]; ok || e.IsDir() {
			continue
		}

		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, err
		}

		removed++
	}

	return removed, nil
}

// finishDir syncs the blobs directory and root, then removes tmpDir (a completed run leaves no partial files).
func (s *store) finishDir() error {
	for _, d := range []string{filepath.Join(s.root, filepath.FromSlash(BlobsDir)), s.root} {
		if err := syncDir(d); err != nil {
			return err
		}
	}

	s.close()

	return os.RemoveAll(filepath.Join(s.root, tmpDir))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close() // read-only

	return f.Sync()
}

// hashFile returns the digest and size of a file's bytes.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close() // read-only

	h := sha256.New()

	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}

	return digest.OfHash(h), n, nil
}

// ctxReader stops a copy when its context ends, and reports bytes read.
type ctxReader struct {
	ctx     context.Context //nolint:containedctx // bounds one copy, which has no other way to be told
	r       io.Reader
	onBytes func(int64)
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}

	n, err := c.r.Read(p)
	if n > 0 && c.onBytes != nil {
		c.onBytes(int64(n))
	}

	return n, err
}

// hexOf is the hex part of a digest.
func hexOf(d string) string { return strings.TrimPrefix(d, digest.Prefix) }
