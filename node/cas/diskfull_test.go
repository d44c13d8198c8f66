package cas

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// smallDisk mounts a tmpfs of size bytes for the test: a disk that really fills. It needs root (CI runs as root);
// elsewhere the test says why it cannot run.
func smallDisk(t *testing.T, size int) string {
	t.Helper()

	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}

	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) }) //nolint:errcheck // the test's own mount

	return dir
}

// writeBlob writes data as one blob and returns the commit's error.
func writeBlob(s *Store, data []byte) error {
	w, err := s.Create(sha(data), int64(len(data)))
	if err != nil {
		return err
	}
	defer w.Abort()

	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			return err
		}
	}

	_, _, err = w.Commit()

	return err
}

// A full disk fails the write with ENOSPC (the node answers 507 for it), leaves nothing under a final name or in
// tmp/, and once space returns the same blob is stored.
func TestDiskFull(t *testing.T) {
	const mib = 1 << 20

	dir := filepath.Join(smallDisk(t, 24*mib), "cas")
	s := openStore(t, dir, Options{})

	first := randBytes(12*mib, 1)
	require.NoError(t, writeBlob(s, first))

	second := randBytes(16*mib, 2) // more than is left
	err := writeBlob(s, second)
	require.Error(t, err)
	require.True(t, errors.Is(err, syscall.ENOSPC), "the error must carry ENOSPC for the 507: %v", err)

	assert.False(t, s.Has(sha(second)), "a blob that did not fit is in the index")
	_, statErr := os.Stat(s.blobPath(sha(second)))
	assert.True(t, os.IsNotExist(statErr), "a blob that did not fit has a file under its final name")
	assert.Empty(t, tmpEntries(t, dir), "a failed write left its temp file")
	assert.Equal(t, first, readBlob(t, s, sha(first)), "the blob stored before is intact")

	require.NoError(t, s.Delete(sha(first))) // space returns
	require.NoError(t, writeBlob(s, second), "the store does not recover once space returns")
	assert.Equal(t, second, readBlob(t, s, sha(second)))
}

// With a free-space floor, blobs written one after another on a disk too small for all of them evict the least
// recently used ones as they arrive (not only when they commit: each is larger than the floor), so no write fails
// for want of space.
func TestFloorEvictsBeforeTheDiskFills(t *testing.T) {
	const mib = 1 << 20

	dir := filepath.Join(smallDisk(t, 64*mib), "cas")
	s := openStore(t, dir, Options{MinFree: 12 * mib})

	var stored []string

	// 5 × 24 MiB on 64 MiB: after two, 16 MiB are free, above the floor, so nothing is evicted at their commits,
	// and the third only fits if room is made while it arrives.
	for i := range 5 {
		data := randBytes(24*mib, uint64(10+i))
		require.NoError(t, writeBlob(s, data), "blob %d: the floor did not make room before the disk filled", i)

		stored = append(stored, sha(data))
	}

	assert.True(t, s.Has(stored[len(stored)-1]), "the newest blob was evicted")
	assert.False(t, s.Has(stored[0]), "the oldest blob was not evicted")

	for _, d := range stored {
		if s.Has(d) {
			rc, err := s.Open(d)
			require.NoError(t, err)
			rc.Close()
		}
	}

	free, err := s.free()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, free, int64(12*mib), "the floor was not kept")
}

// With no budget set, the blobs may occupy DiskShare of the file system: on a disk too small for all of them, the
// least recently used go, and the disk never fills.
func TestBudgetFollowsTheDisk(t *testing.T) {
	const (
		mib  = 1 << 20
		disk = 64 * mib
	)

	dir := filepath.Join(smallDisk(t, disk), "cas")
	s := openStore(t, dir, Options{})

	_, budget, _ := s.Usage()
	assert.InDelta(t, DiskShare*disk, float64(budget), mib, "the budget in force is not the disk's share")

	var stored []string

	for i := range 20 { // 80 MiB
		data := randBytes(4*mib, uint64(100+i))
		require.NoError(t, writeBlob(s, data), "blob %d: the disk filled", i)

		stored = append(stored, sha(data))

		used, _, _ := s.Usage()
		assert.LessOrEqual(t, used, budget, "blob %d: over the disk's share", i)
	}

	assert.False(t, s.Has(stored[0]), "the oldest blob was kept")
	assert.True(t, s.Has(stored[len(stored)-1]), "the newest blob was evicted")
}
