package cas

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriterReadAt reads a blob while it is being written: every byte accepted so far reads back exactly, whether
// it sits in the file, in a skipped zero block, or in the pending partial block.
func TestWriterReadAt(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	data := make([]byte, 5*blockSize+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	clear(data[blockSize : 3*blockSize]) // two zero blocks the writer skips

	w, err := s.Create("", int64(len(data)))
	require.NoError(t, err)
	defer w.Abort()

	for written := 0; written < len(data); {
		n := min(1000+rng.IntN(3000), len(data)-written)
		_, err := w.Write(data[written : written+n])
		require.NoError(t, err)
		written += n

		for _, off := range []int{0, written / 2, max(written-7, 0), written - 1} {
			buf := make([]byte, 64)
			got, err := w.ReadAt(buf, int64(off))
			want := data[off:min(off+64, written)]
			require.Equal(t, len(want), got)
			require.Equal(t, want, buf[:got], "offset %d after %d bytes", off, written)
			if len(want) < 64 {
				require.ErrorIs(t, err, io.EOF)
			} else {
				require.NoError(t, err)
			}
		}

		_, err = w.ReadAt(make([]byte, 1), int64(written))
		require.ErrorIs(t, err, io.EOF, "nothing past Written")
	}

	all := make([]byte, len(data))
	_, err = w.ReadAt(all, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, all))

	_, _, err = w.Commit()
	require.NoError(t, err)
	_, err = w.ReadAt(all, 0)
	require.Error(t, err, "a committed writer is read through the store")
}

// TestWriterVerifyBeforeCommit: after Verify every byte (the pending tail too) reads back while the blob is not yet
// stored, writes are refused, and Commit stores it; a mismatch found by Verify drops the temp file.
func TestWriterVerifyBeforeCommit(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})

	data := bytes.Repeat([]byte("edge factory "), 1000) // not block-aligned: the tail is pending until Verify
	digest := sha(data)

	w, err := s.Create(digest, int64(len(data)))
	require.NoError(t, err)
	defer w.Abort()

	_, err = w.Write(data)
	require.NoError(t, err)

	got, size, err := w.Verify()
	require.NoError(t, err)
	require.Equal(t, digest, got)
	require.Equal(t, int64(len(data)), size)
	require.False(t, s.Has(digest), "verified is not yet stored")

	all := make([]byte, len(data))
	_, err = w.ReadAt(all, 0)
	require.NoError(t, err)
	require.Equal(t, data, all)

	_, err = w.Write([]byte("x"))
	require.Error(t, err, "a verified blob takes no more bytes")

	_, _, err = w.Commit()
	require.NoError(t, err)
	require.True(t, s.Has(digest))
	require.True(t, w.Done())

	bad, err := s.Create(sha([]byte("something else")), int64(len(data)))
	require.NoError(t, err)
	_, err = bad.Write(data)
	require.NoError(t, err)
	_, _, err = bad.Verify()
	require.ErrorIs(t, err, ErrDigestMismatch)
	require.True(t, bad.Done())
	_, _, err = bad.Commit()
	require.ErrorIs(t, err, ErrWriterDone)
	require.Empty(t, tmpEntries(t, dir), "the mismatched copy is gone")
}
