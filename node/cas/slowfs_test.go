package cas

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/require"
)

// The real-disk counterpart of slowdisk_test.go: the store lives on a FUSE loopback file system whose fsync (and the
// flush at close of a file opened for writing) really takes seconds, so a commit is held in the kernel, not in a
// hook of the store's own.

// slowDisk is the delay the slow file system puts on fsync and on the flush of a written file; 0 makes it fast.
type slowDisk struct {
	delay   atomic.Int64 // nanoseconds
	holding atomic.Int32 // fsyncs and flushes now held in the delay
	held    atomic.Int32 // fsyncs and flushes ever held
}

func (d *slowDisk) hold() {
	delay := time.Duration(d.delay.Load())
	if delay <= 0 {
		return
	}
	d.holding.Add(1)
	d.held.Add(1)
	time.Sleep(delay)
	d.holding.Add(-1)
}

// slowNode is a loopback node whose files are slowFiles; WrapChild makes every node below the root one too.
type slowNode struct {
	*fs.LoopbackNode
	disk *slowDisk
}

var (
	_ fs.NodeWrapChilder = (*slowNode)(nil)
	_ fs.NodeOpener      = (*slowNode)(nil)
	_ fs.NodeCreater     = (*slowNode)(nil)
)

func (n *slowNode) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &slowNode{LoopbackNode: ops.(*fs.LoopbackNode), disk: n.disk}
}

func (n *slowNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	return n.wrap(fh, flags), fuseFlags, errno
}

func (n *slowNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return inode, n.wrap(fh, flags), fuseFlags, errno
}

func (n *slowNode) wrap(fh fs.FileHandle, flags uint32) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	return &slowFile{LoopbackFile: lf, disk: n.disk, writable: flags&syscall.O_ACCMODE != syscall.O_RDONLY}
}

// slowFile is a loopback file whose fsync, and flush when opened for writing, wait for the disk's delay first.
type slowFile struct {
	*fs.LoopbackFile
	disk     *slowDisk
	writable bool
}

var (
	_ fs.FileFsyncer  = (*slowFile)(nil)
	_ fs.FileFlusher  = (*slowFile)(nil)
	_ fs.FileReleaser = (*slowFile)(nil)
)

func (f *slowFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.disk.hold()
	return f.LoopbackFile.Fsync(ctx, flags)
}

func (f *slowFile) Flush(ctx context.Context) syscall.Errno {
	if f.writable {
		f.disk.hold()
	}
	return f.LoopbackFile.Flush(ctx)
}

// mountSlowFS mounts a slow loopback of a fresh directory and returns the mount point; it is unmounted at cleanup.
func mountSlowFS(t *testing.T, disk *slowDisk) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("slow FUSE file system: needs root to mount without fusermount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("slow FUSE file system: /dev/fuse is missing: %v", err)
	}
	backing, mnt := t.TempDir(), t.TempDir()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(backing, &st))
	data := &fs.LoopbackRoot{Path: backing, Dev: st.Dev}
	root := &slowNode{LoopbackNode: &fs.LoopbackNode{RootData: data}, disk: disk}
	data.RootNode = root
	server, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMountStrict: true, // mount(2) as root: there is no fusermount here
		FsName:            "cas-slowfs",
		Name:              "slowfs",
	}})
	require.NoError(t, err, "mount the slow FUSE file system")
	t.Cleanup(func() {
		disk.delay.Store(0)
		err := server.Unmount()
		for i := 0; err != nil && i < 50; i++ { // a file closed a moment ago may still be busy
			time.Sleep(100 * time.Millisecond)
			err = server.Unmount()
		}
		if err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// TestSlowFSCommit stores blobs on a file system whose fsync takes seconds. While a commit is held in its fsync (and
// the flush of its temp file), a stored blob still opens and reads back whole at once, and the blob being committed
// is neither indexed nor under its final name; once Commit returns it reads back whole; with the disk fast again a
// further commit is quick and a reopened store indexes everything with tmp/ empty.
//
// Shown to fail: with install() renaming the temp file into place before its fsync (w.f.Sync moved after
// w.s.install in Commit), the test said "the blob being committed is visible while its fsync is still held:
// Has=true, under its final name=true".
func TestSlowFSCommit(t *testing.T) {
	const (
		delay = 1500 * time.Millisecond
		size  = 1 << 20
	)
	disk := &slowDisk{}
	dir := mountSlowFS(t, disk)
	s := openStore(t, dir, Options{})

	storedData := randBytes(size, 1)
	stored := put(t, s, storedData)

	// The disk turns slow; a second blob is committed.
	disk.delay.Store(int64(delay))
	newData := randBytes(size, 2)
	want := sha(newData)
	w, err := s.Create(want, size)
	require.NoError(t, err)
	_, err = w.Write(newData)
	require.NoError(t, err)
	type result struct {
		digest string
		size   int64
		err    error
		took   time.Duration
	}
	committed := make(chan result, 1)
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		d, n, err := w.Commit()
		committed <- result{d, n, err, time.Since(start)}
	}()
	// A file left open on the mount keeps it busy and hangs the test binary's exit on its own FUSE server: even when
	// the test fails, the commit ends and its temp file is closed before the store closes and the mount goes.
	t.Cleanup(func() {
		disk.delay.Store(0)
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("the commit never returned")
		}
		w.Abort()
	})
	deadline := time.After(10 * time.Second)
	for disk.holding.Load() == 0 {
		select {
		case r := <-committed:
			t.Fatalf("the commit finished without being held by the slow disk (err: %v)", r.err)
		case <-deadline:
			t.Fatal("the commit never reached the slow fsync")
		case <-time.After(time.Millisecond):
		}
	}

	// While it is held: the stored blob reads back whole promptly, and nothing of the new one is served.
	reads := 0
	var res result
	for done := false; !done; {
		readStart := time.Now()
		require.Equal(t, storedData, readBlob(t, s, stored))
		took := time.Since(readStart)
		require.Less(t, took, delay/2, "a stored blob was read behind the held commit")

		b, openErr := s.Open(want)
		if openErr == nil {
			require.NoError(t, b.Close())
		}
		has := s.Has(want)
		_, statErr := os.Stat(s.blobPath(want))
		final := !errors.Is(statErr, os.ErrNotExist)
		if disk.holding.Load() > 0 { // still held after the checks, so held during them
			reads++
			require.False(t, has || final || !errors.Is(openErr, ErrNotFound),
				"the blob being committed is visible while its fsync is still held: Has=%v, under its final name=%v, Open: %v",
				has, final, openErr)
		}
		select {
		case res = <-committed:
			done = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	require.NoError(t, res.err)
	require.Positive(t, reads, "no read happened while the commit was held: the test proves nothing")
	require.GreaterOrEqual(t, res.took, delay, "the commit was not held by the slow disk: the test proves nothing")
	t.Logf("commit held %v by the slow disk (%d fsyncs and flushes delayed); %d reads of a stored blob meanwhile",
		res.took.Round(time.Millisecond), disk.held.Load(), reads)

	// Committed: the blob reads back whole and matches its digest.
	require.Equal(t, want, res.digest)
	require.Equal(t, int64(size), res.size)
	got := readBlob(t, s, want)
	require.Equal(t, want, sha(got))
	require.Equal(t, newData, got)

	// The disk is fast again: a further commit is quick, and a reopened store has every blob and an empty tmp/.
	disk.delay.Store(0)
	fastData := randBytes(size, 3)
	fastStart := time.Now()
	fast := put(t, s, fastData)
	require.Less(t, time.Since(fastStart), delay/2, "a commit on the recovered disk was still slow")
	require.Empty(t, tmpEntries(t, dir))
	require.NoError(t, s.Close())

	s = openStore(t, dir, Options{})
	_, _, blobs := s.Usage()
	require.Equal(t, 3, blobs)
	require.Empty(t, tmpEntries(t, dir))
	for d, data := range map[string][]byte{stored: storedData, want: newData, fast: fastData} {
		require.Equal(t, data, readBlob(t, s, d), d)
	}
}
