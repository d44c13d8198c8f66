package cas

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A real slow disk cannot be produced here, so these tests hold a directory fsync or an unlink still (through the
// syncDir and removeFile hooks) and check that the store goes on serving other blobs meanwhile.

// blockedAfter is how long a cache hit may take before it counts as blocked behind the held-up operation; a hit
// takes microseconds, so this only has to survive a loaded machine.
const blockedAfter = 3 * time.Second

// gate holds every call whose path contains match until release is closed.
type gate struct {
	match   string
	entered chan struct{}
	enter   sync.Once
	release chan struct{}
	open    sync.Once
}

func newGate(t *testing.T, match string) *gate {
	g := &gate{match: match, entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.let) // never leave a goroutine of a failed test stuck
	return g
}

func (g *gate) wait(path string) {
	if !strings.Contains(path, g.match) {
		return
	}
	g.enter.Do(func() { close(g.entered) })
	<-g.release
}

func (g *gate) let() { g.open.Do(func() { close(g.release) }) }

func holdSyncDir(t *testing.T, g *gate) {
	orig := syncDir
	syncDir = func(path string) error {
		g.wait(path)
		return orig(path)
	}
	t.Cleanup(func() { syncDir = orig })
}

func holdRemoveFile(t *testing.T, g *gate) {
	orig := removeFile
	removeFile = func(path string) error {
		g.wait(path)
		return orig(path)
	}
	t.Cleanup(func() { removeFile = orig })
}

// whileHeld starts slow, waits until g holds it in its disk operation, then runs fast, which must finish while slow
// is still held, not only once g lets it go. Both must succeed.
func whileHeld(t *testing.T, g *gate, slow, fast func() error) {
	t.Helper()
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow() }()
	select {
	case <-g.entered:
	case err := <-slowDone:
		t.Fatalf("finished without reaching the held disk operation (err: %v)", err)
	case <-time.After(10 * time.Second):
		t.Fatal("never reached the held disk operation")
	}
	fastDone := make(chan error, 1)
	go func() { fastDone <- fast() }()
	select {
	case err := <-fastDone:
		require.NoError(t, err)
		select {
		case err := <-slowDone:
			t.Fatalf("the held operation finished early (err: %v): the test proves nothing", err)
		default:
		}
	case <-time.After(blockedAfter):
		t.Errorf("blocked for %v behind a directory fsync or unlink of another operation", blockedAfter)
		g.let()
		require.NoError(t, <-fastDone)
	}
	g.let()
	require.NoError(t, <-slowDone)
}

// store is put without testing.T, for goroutines.
func store(s *Store, data []byte) (string, error) {
	w, err := s.Create("", -1)
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	d, _, err := w.Commit()
	return d, err
}

// readBack is readBlob without testing.T, for goroutines: a cache hit, Open to Close.
func readBack(s *Store, digest string, want []byte) error {
	b, err := s.Open(digest)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("read %s: wrong content", digest)
	}
	return err
}

func TestSlowDiskDoesNotBlockOpen(t *testing.T) {
	const size = 64 << 10
	hotData := randBytes(size, 1)
	victimData := randBytes(size, 2)
	cases := []struct {
		name string
		hold func(*testing.T, *gate)
		// slow runs with victim stored before hot and the store holding room for two and a half blobs.
		slow func(t *testing.T, s *Store, victim string) func() error
	}{
		{
			name: "commit in its directory fsync",
			hold: holdSyncDir,
			slow: func(_ *testing.T, s *Store, _ string) func() error {
				return func() error { _, err := store(s, randBytes(size/4, 3)); return err }
			},
		},
		{
			name: "commit unlinking the blob it evicted",
			hold: holdRemoveFile,
			slow: func(_ *testing.T, s *Store, victim string) func() error {
				return func() error {
					_, err := store(s, randBytes(size, 3))
					if err == nil && s.Has(victim) {
						err = errors.New("victim not evicted")
					}
					return err
				}
			},
		},
		{
			name: "delete unlinking",
			hold: holdRemoveFile,
			slow: func(_ *testing.T, s *Store, victim string) func() error {
				return func() error { return s.Delete(victim) }
			},
		},
		{
			name: "last close of a deleted blob unlinking",
			hold: holdRemoveFile,
			slow: func(t *testing.T, s *Store, victim string) func() error {
				b, err := s.Open(victim)
				require.NoError(t, err)
				require.NoError(t, s.Delete(victim))
				return b.Close
			},
		},
		{
			name: "verify removing a corrupt blob",
			hold: holdRemoveFile,
			slow: func(t *testing.T, s *Store, victim string) func() error {
				require.NoError(t, os.Chmod(s.blobPath(victim), 0o644))
				flipByte(100)(t, s.blobPath(victim))
				return func() error {
					if err := s.Verify(victim); !errors.Is(err, ErrDigestMismatch) {
						return fmt.Errorf("verify of a corrupt blob: %w", err)
					}
					return nil
				}
			},
		},
		{
			name: "pin saving the pins file",
			hold: holdSyncDir,
			slow: func(_ *testing.T, s *Store, victim string) func() error {
				return func() error { return s.Pin(victim) }
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), Options{Budget: 2*size + size/2})
			victim := put(t, s, victimData)
			hot := put(t, s, hotData)
			slow := tc.slow(t, s, victim)
			g := newGate(t, "")
			tc.hold(t, g)
			whileHeld(t, g, slow, func() error { return readBack(s, hot, hotData) })
		})
	}
}

// TestEvictedDigestCommittedAgainWhileUnlinking commits a blob again while the unlink of its evicted copy is still
// under way outside the store's lock: the late unlink must not take the new copy with it.
func TestEvictedDigestCommittedAgainWhileUnlinking(t *testing.T) {
	const size = 64 << 10
	dir := t.TempDir()
	var mu sync.Mutex
	var evicted []string
	s := openStore(t, dir, Options{Budget: 2*size + size/2, OnEvict: func(d string) {
		mu.Lock()
		defer mu.Unlock()
		evicted = append(evicted, d)
	}})
	aData := randBytes(size, 1)
	a := put(t, s, aData)
	b := put(t, s, randBytes(size, 2))
	g := newGate(t, strings.TrimPrefix(a, digestPrefix))
	holdRemoveFile(t, g)

	var c string
	whileHeld(t, g,
		func() (err error) { c, err = store(s, randBytes(size, 3)); return err }, // evicts a
		func() error {
			if s.Has(a) {
				return errors.New("a is still indexed while its eviction is under way")
			}
			if _, err := store(s, aData); err != nil { // evicts b
				return err
			}
			return readBack(s, a, aData)
		})

	require.Equal(t, aData, readBlob(t, s, a), "the new copy of a survives the late unlink of the old one")
	require.False(t, s.Has(b))
	require.Empty(t, tmpEntries(t, dir))
	used, _, blobs := s.Usage()
	require.Equal(t, 2, blobs)
	require.Equal(t, diskBytes(t, s.blobPath(a))+diskBytes(t, s.blobPath(c)), used)
	mu.Lock()
	defer mu.Unlock()
	require.ElementsMatch(t, []string{a, b}, evicted)
}
