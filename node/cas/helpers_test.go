package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// randBytes returns n pseudo-random bytes that differ per seed and never contain a zero 4 KiB block.
func randBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // ChaCha8.Read always fills b and returns a nil error
	return b
}

// put stores data through a Writer, in one Write.
func put(t testing.TB, s *Store, data []byte) string {
	t.Helper()
	w, err := s.Create("", -1)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	d, n, err := w.Commit()
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), n)
	return d
}

func readBlob(t testing.TB, s *Store, digest string) []byte {
	t.Helper()
	b, err := s.Open(digest)
	require.NoError(t, err)
	defer b.Close()
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	return got
}

func tmpEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// diskBytes is what a file really occupies (st_blocks).
func diskBytes(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Blocks * 512
}

// sparseImage writes a size-byte file whose middle is zeros written as real data (allocated, not holes), with
// 1 MiB of random data at each end, like a raw disk image straight out of an imager.
func sparseImage(t testing.TB, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	copy(data, randBytes(1<<20, 1))
	copy(data[size-(1<<20):], randBytes(1<<20, 2))
	require.NoError(t, os.WriteFile(path, data, 0o644))
	f, err := os.Open(path)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	return data
}
