package cas

import (
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEvictionOrder(t *testing.T) {
	const size = 64 << 10
	cases := []struct {
		name        string
		prepare     func(t *testing.T, s *Store, d []string) func() // d = a, b, c; returns cleanup
		wantEvicted int                                             // index into a, b, c
	}{
		{
			name:        "least recently written",
			prepare:     func(*testing.T, *Store, []string) func() { return func() {} },
			wantEvicted: 0,
		},
		{
			name: "read refreshes",
			prepare: func(t *testing.T, s *Store, d []string) func() {
				readBlob(t, s, d[0])
				return func() {}
			},
			wantEvicted: 1,
		},
		{
			name: "stat and has do not refresh",
			prepare: func(t *testing.T, s *Store, d []string) func() {
				s.Has(d[0])
				s.Stat(d[0])
				require.NoError(t, s.Verify(d[0]))
				return func() {}
			},
			wantEvicted: 0,
		},
		{
			name: "pinned skipped",
			prepare: func(t *testing.T, s *Store, d []string) func() {
				require.NoError(t, s.Pin(d[0]))
				return func() {}
			},
			wantEvicted: 1,
		},
		{
			name: "open skipped",
			prepare: func(t *testing.T, s *Store, d []string) func() {
				b, err := s.acquire(d[0], false)
				require.NoError(t, err)
				return func() { b.Close() }
			},
			wantEvicted: 1,
		},
		{
			name: "pinned and open skipped",
			prepare: func(t *testing.T, s *Store, d []string) func() {
				require.NoError(t, s.Pin(d[0]))
				b, err := s.acquire(d[1], false)
				require.NoError(t, err)
				return func() { b.Close() }
			},
			wantEvicted: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var evicted []string
			s := openStore(t, t.TempDir(), Options{
				Budget:  3*size + size/2,
				OnEvict: func(d string) { evicted = append(evicted, d) },
			})
			d := []string{put(t, s, randBytes(size, 1)), put(t, s, randBytes(size, 2)), put(t, s, randBytes(size, 3))}
			done := tc.prepare(t, s, d)
			defer done()
			require.Empty(t, evicted)
			newest := put(t, s, randBytes(size, 4))

			require.Equal(t, []string{d[tc.wantEvicted]}, evicted)
			for i, di := range d {
				require.Equal(t, i != tc.wantEvicted, s.Has(di), "blob %d", i)
			}
			require.True(t, s.Has(newest))
			used, budget, blobs := s.Usage()
			require.LessOrEqual(t, used, budget)
			require.Equal(t, 3, blobs)
		})
	}
}

func TestOversizedBlob(t *testing.T) {
	const size = 64 << 10
	var evicted []string
	s := openStore(t, t.TempDir(), Options{Budget: 3*size + size/2, OnEvict: func(d string) { evicted = append(evicted, d) }})
	a := put(t, s, randBytes(size, 1))
	b := put(t, s, randBytes(size, 2))
	big := put(t, s, randBytes(4*size, 3))
	require.Empty(t, evicted, "an oversized blob must not flush the cache")
	require.True(t, s.Has(big))
	used, budget, _ := s.Usage()
	require.Greater(t, used, budget)

	c := put(t, s, randBytes(size, 4))
	require.Equal(t, []string{big}, evicted, "the oversized blob goes first, before older small ones")
	for _, d := range []string{a, b, c} {
		require.True(t, s.Has(d))
	}
}

func TestPinnedAndOpenMayExceedBudget(t *testing.T) {
	const size = 64 << 10
	s := openStore(t, t.TempDir(), Options{Budget: 2 * size})
	a := put(t, s, randBytes(size, 1))
	require.NoError(t, s.Pin(a))
	bData := randBytes(size, 2)
	b := put(t, s, bData)
	blob, err := s.acquire(b, false)
	require.NoError(t, err)
	c := put(t, s, randBytes(size, 3))
	// a is pinned, b is open, c is the newcomer: nothing can go.
	used, budget, blobs := s.Usage()
	require.Greater(t, used, budget)
	require.Equal(t, 3, blobs)
	got, err := io.ReadAll(blob)
	require.NoError(t, err)
	require.Equal(t, bData, got)
	require.NoError(t, blob.Close())

	// Unpinning lets the store shrink at once: a is now the oldest evictable blob.
	require.NoError(t, s.Unpin(a))
	require.False(t, s.Has(a))
	require.True(t, s.Has(b))
	require.True(t, s.Has(c))
	require.False(t, s.Pinned(a))
}

func TestPinAbsentDigest(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data := []byte("arrives later")
	require.NoError(t, s.Pin(sha(data)))
	require.NoError(t, s.Pin(sha(data)))
	d := put(t, s, data)
	require.NoError(t, s.Delete(d))
	require.True(t, s.Pinned(d), "Delete keeps the pin")
	require.NoError(t, s.Unpin(d))
	require.NoError(t, s.Unpin(d))
	require.False(t, s.Pinned(d))
	pins, err := os.ReadFile(s.pinsPath())
	require.NoError(t, err)
	require.Empty(t, pins)
}

func TestDeleteWhileOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	data := randBytes(256<<10, 5)
	d := put(t, s, data)
	usedBefore, _, _ := s.Usage()

	b, err := s.Open(d)
	require.NoError(t, err)
	require.NoError(t, s.Delete(d))
	require.False(t, s.Has(d))
	_, err = s.Open(d)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, s.Delete(d), ErrNotFound)
	require.Len(t, tmpEntries(t, dir), 1, "the file waits in tmp/ for its reader")
	used, _, blobs := s.Usage()
	require.Equal(t, usedBefore, used, "space is not free until the last Close")
	require.Zero(t, blobs)

	// The same content may be stored again meanwhile; it is a separate file.
	require.Equal(t, d, put(t, s, data))
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	require.Empty(t, tmpEntries(t, dir))
	used, _, blobs = s.Usage()
	require.Equal(t, usedBefore, used)
	require.Equal(t, 1, blobs)
	require.Equal(t, data, readBlob(t, s, d))

	require.NoError(t, s.Delete(d))
	used, _, blobs = s.Usage()
	require.Zero(t, used)
	require.Zero(t, blobs)
	_, err = os.Stat(s.blobPath(d))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestSetLimits: a lower budget evicts at once, oldest first; a free-space floor the file system cannot meet evicts
// everything that may go (pinned blobs stay), and lifting it evicts nothing more.
func TestSetLimits(t *testing.T) {
	const size = 64 << 10
	s := openStore(t, t.TempDir(), Options{})
	var d []string
	for i := range 4 {
		d = append(d, put(t, s, randBytes(size, uint64(i+1))))
	}
	used, _, blobs := s.Usage()
	require.Equal(t, 4, blobs)

	require.NoError(t, s.SetLimits(used/2, 0))
	require.False(t, s.Has(d[0]), "the oldest goes first")
	require.False(t, s.Has(d[1]))
	require.True(t, s.Has(d[2]))
	require.True(t, s.Has(d[3]))

	require.NoError(t, s.Pin(d[3]))
	require.NoError(t, s.SetLimits(0, 1<<62)) // more free space than any disk has
	require.False(t, s.Has(d[2]), "under the free-space floor, unpinned blobs go")
	require.True(t, s.Has(d[3]), "a pinned blob stays")

	require.NoError(t, s.SetLimits(0, 0))
	d4 := put(t, s, randBytes(size, 9))
	require.True(t, s.Has(d4), "with no limits nothing is evicted")
	require.Error(t, s.SetLimits(-1, 0))
}
