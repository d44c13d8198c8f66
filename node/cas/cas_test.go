package cas

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	digests "github.com/edgefactory/edgefactory/internal/digest"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name         string
		data         []byte
		withDigest   bool
		withSize     bool
		chunk        int
		wantBlobsMax int
	}{
		{name: "empty", data: nil, withDigest: true, withSize: true},
		{name: "small unknown digest", data: []byte("hello, edge"), chunk: 3},
		{name: "one block", data: randBytes(4096, 1), withDigest: true, withSize: true},
		{name: "unaligned", data: randBytes(10_000, 2), withSize: true, chunk: 777},
		{name: "multi MiB odd chunks", data: randBytes(3<<20+3, 3), withDigest: true, chunk: 65_521},
		{name: "trailing zeros", data: append(randBytes(5000, 4), make([]byte, 20_000)...), chunk: 4096},
	}
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := sha(tc.data)
			expected, size := "", int64(-1)
			if tc.withDigest {
				expected = want
			}
			if tc.withSize {
				size = int64(len(tc.data))
			}
			w, err := s.Create(expected, size)
			require.NoError(t, err)
			chunk := tc.chunk
			if chunk == 0 {
				chunk = len(tc.data) + 1
			}
			for rest := tc.data; len(rest) > 0; {
				n := min(chunk, len(rest))
				k, err := w.Write(rest[:n])
				require.NoError(t, err)
				require.Equal(t, n, k)
				rest = rest[n:]
			}
			require.Equal(t, int64(len(tc.data)), w.Written())
			d, n, err := w.Commit()
			require.NoError(t, err)
			require.Equal(t, want, d)
			require.Equal(t, int64(len(tc.data)), n)

			require.True(t, s.Has(d))
			sz, ok := s.Stat(d)
			require.True(t, ok)
			require.Equal(t, int64(len(tc.data)), sz)

			b, err := s.Open(d)
			require.NoError(t, err)
			defer b.Close()
			require.Equal(t, d, b.Digest())
			require.Equal(t, int64(len(tc.data)), b.Size())
			got, err := io.ReadAll(b)
			require.NoError(t, err)
			require.True(t, bytes.Equal(tc.data, got), "content differs")
			if len(tc.data) > 2 {
				p := make([]byte, 2)
				_, err = b.ReadAt(p, int64(len(tc.data)-2))
				require.NoError(t, err)
				require.Equal(t, tc.data[len(tc.data)-2:], p)
			}
			fi, err := b.File().Stat()
			require.NoError(t, err)
			require.Equal(t, int64(len(tc.data)), fi.Size())

			path := filepath.Join(dir, "sha256", d[7:9], d[7:])
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o444), info.Mode().Perm())
		})
	}
	_, _, blobs := s.Usage()
	require.Equal(t, len(cases), blobs)
	require.Empty(t, tmpEntries(t, dir))
}

func TestCommitRejects(t *testing.T) {
	data := randBytes(100_000, 7)
	cases := []struct {
		name      string
		expected  string
		size      int64
		writeErr  error // error from Write, when the writer can tell early
		commitErr error
	}{
		{name: "wrong digest", expected: sha([]byte("other")), size: -1, commitErr: ErrDigestMismatch},
		{name: "wrong digest right size", expected: sha([]byte("other")), size: 100_000, commitErr: ErrDigestMismatch},
		{name: "short", expected: sha(data), size: 100_001, commitErr: ErrSizeMismatch},
		{name: "long", size: 99_999, writeErr: ErrSizeMismatch, commitErr: ErrSizeMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			w, err := s.Create(tc.expected, tc.size)
			require.NoError(t, err)
			_, err = w.Write(data)
			if tc.writeErr != nil {
				require.ErrorIs(t, err, tc.writeErr)
			} else {
				require.NoError(t, err)
			}
			_, _, err = w.Commit()
			require.ErrorIs(t, err, tc.commitErr)
			require.False(t, s.Has(sha(data)))
			if tc.expected != "" {
				require.False(t, s.Has(tc.expected))
			}
			used, _, blobs := s.Usage()
			require.Zero(t, used)
			require.Zero(t, blobs)
			require.Empty(t, tmpEntries(t, dir), "temp file left behind")
			_, _, err = w.Commit()
			require.Error(t, err, "second commit must fail")
		})
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	w, err := s.Create("", -1)
	require.NoError(t, err)
	_, err = w.Write([]byte("partial"))
	require.NoError(t, err)
	require.Len(t, tmpEntries(t, dir), 1)
	w.Abort()
	w.Abort()
	require.Empty(t, tmpEntries(t, dir))
	_, _, err = w.Commit()
	require.Error(t, err)
	_, err = w.Write([]byte("more"))
	require.Error(t, err)

	w, err = s.Create("", -1)
	require.NoError(t, err)
	_, err = w.Write([]byte("kept"))
	require.NoError(t, err)
	d, _, err := w.Commit()
	require.NoError(t, err)
	w.Abort() // after Commit: must not touch the blob
	require.Equal(t, []byte("kept"), readBlob(t, s, d))
}

func TestInvalidDigests(t *testing.T) {
	valid := sha([]byte("x"))
	require.NoError(t, digests.Check(valid))
	bad := []string{
		"",
		"sha256:",
		valid[7:], // no algorithm
		"SHA256:" + valid[7:],
		"sha512:" + valid[7:],
		"sha256:" + valid[8:],        // 63 hex
		valid + "0",                  // 65 hex
		"sha256:" + "AB" + valid[9:], // uppercase
		"sha256:" + "g" + valid[8:],  // not hex
		" " + valid,
		"sha256:../../../etc/passwd",
	}
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(src, []byte("x"), 0o644))
	for _, d := range bad {
		t.Run(d, func(t *testing.T) {
			require.ErrorIs(t, digests.Check(d), ErrInvalidDigest)
			_, err := s.Open(d)
			require.ErrorIs(t, err, ErrInvalidDigest)
			_, err = s.Create(d, -1)
			if d == "" {
				require.NoError(t, err, `"" means unknown for Create`)
			} else {
				require.ErrorIs(t, err, ErrInvalidDigest)
			}
			require.False(t, s.Has(d))
			require.ErrorIs(t, s.Pin(d), ErrInvalidDigest)
			require.ErrorIs(t, s.Unpin(d), ErrInvalidDigest)
			require.ErrorIs(t, s.Delete(d), ErrInvalidDigest)
			require.ErrorIs(t, s.Verify(d), ErrInvalidDigest)
			if d != "" {
				_, _, err = s.Import(src, d)
				require.ErrorIs(t, err, ErrInvalidDigest)
			}
		})
	}
	_, err := os.Stat(src)
	require.NoError(t, err, "a rejected import must not consume its source")
}

func TestConcurrentWritersSameContent(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{Budget: 1 << 30})
	data := randBytes(1<<20+123, 9)
	want := sha(data)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			expected := ""
			if i%2 == 0 {
				expected = want
			}
			w, err := s.Create(expected, int64(len(data)))
			if err != nil {
				errs <- err
				return
			}
			defer w.Abort()
			chunk := 1000 + 4096*i
			for rest := data; len(rest) > 0; {
				n := min(chunk, len(rest))
				if _, err := w.Write(rest[:n]); err != nil {
					errs <- err
					return
				}
				rest = rest[n:]
			}
			d, _, err := w.Commit()
			if err == nil && d != want {
				err = errors.New("wrong digest " + d)
			}
			if err != nil {
				errs <- err
			}
		}()
		go func() { // readers racing the writers see either nothing or the whole blob
			defer wg.Done()
			b, err := s.Open(want)
			if errors.Is(err, ErrNotFound) {
				return
			}
			if err != nil {
				errs <- err
				return
			}
			defer b.Close()
			got, err := io.ReadAll(b)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("reader saw partial content")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, _, blobs := s.Usage()
	require.Equal(t, 1, blobs)
	require.Empty(t, tmpEntries(t, dir))
	require.Equal(t, data, readBlob(t, s, want))
	require.NoError(t, s.Verify(want))
}

func TestOpenClearsTmpAndLocks(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp", "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tmp", "blob-123"), []byte("half a blob"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tmp", "sub", "x"), nil, 0o644))

	s, err := Open(dir, Options{Logger: testLogger(t)})
	require.NoError(t, err)
	require.Empty(t, tmpEntries(t, dir))

	_, err = Open(dir, Options{})
	require.Error(t, err, "a second store on the same directory must be refused")
	require.NoError(t, s.Close())
	s2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

func TestOpenIgnoresStrayFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	d := put(t, s, []byte("real"))
	require.NoError(t, s.Close())
	// A blob file in the wrong shard and a file with a non-digest name are not blobs.
	wrong := filepath.Join(dir, "sha256", "00", d[7:])
	if d[7:9] == "00" {
		wrong = filepath.Join(dir, "sha256", "01", d[7:])
	}
	require.NoError(t, os.WriteFile(wrong, []byte("real"), 0o444))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sha256", "ab", "notes.txt"), []byte("hi"), 0o644))

	s = openStore(t, dir, Options{})
	_, _, blobs := s.Usage()
	require.Equal(t, 1, blobs)
	require.Equal(t, []byte("real"), readBlob(t, s, d))
}

func TestReopenKeepsUsageLRUAndPins(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 10
	s := openStore(t, dir, Options{})
	a := put(t, s, randBytes(size, 1))
	b := put(t, s, randBytes(size, 2))
	c := put(t, s, randBytes(size, 3))
	readBlob(t, s, a) // order, oldest first: b, c, a
	require.NoError(t, s.Pin(b))
	used, _, blobs := s.Usage()
	require.NoError(t, s.Close())

	s = openStore(t, dir, Options{})
	used2, _, blobs2 := s.Usage()
	require.Equal(t, used, used2)
	require.Equal(t, blobs, blobs2)
	require.True(t, s.Pinned(b))
	require.False(t, s.Pinned(a))
	require.NoError(t, s.Close())

	// A smaller budget at the next start evicts in the persisted order: b is oldest but pinned, so c goes.
	var evicted []string
	s = openStore(t, dir, Options{Budget: used * 5 / 6, OnEvict: func(d string) { evicted = append(evicted, d) }})
	require.Equal(t, []string{c}, evicted)
	require.True(t, s.Has(a))
	require.True(t, s.Has(b))
	require.False(t, s.Has(c))
	_, budget, blobs3 := s.Usage()
	require.Equal(t, used*5/6, budget)
	require.Equal(t, 2, blobs3)
}

// TestConcurrentMixedOperations runs writers, readers, deletes, verifies and pins over a few digests under a tight
// budget, for the race detector and to check that a reader only ever sees whole, correct blobs.
func TestConcurrentMixedOperations(t *testing.T) {
	const size = 32 << 10
	s := openStore(t, t.TempDir(), Options{Budget: 3 * size})
	contents := make([][]byte, 5)
	digests := make([]string, len(contents))
	for i := range contents {
		contents[i] = randBytes(size, uint64(100+i))
		digests[i] = sha(contents[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := (g + i) % len(contents)
				if err := mixedStep(s, (g+i)%5, contents[k], digests[k]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	used, _, blobs := s.Usage()
	require.LessOrEqual(t, blobs, len(contents))
	require.GreaterOrEqual(t, used, int64(0))
	for _, d := range digests {
		require.NoError(t, s.Unpin(d))
	}
	used, budget, _ := s.Usage()
	require.LessOrEqual(t, used, budget)
}

func mixedStep(s *Store, op int, data []byte, d string) error {
	switch op {
	case 0:
		w, err := s.Create(d, int64(len(data)))
		if err != nil {
			return err
		}
		defer w.Abort()
		if _, err := w.Write(data); err != nil {
			return err
		}
		_, _, err = w.Commit()
		return err
	case 1:
		b, err := s.Open(d)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer b.Close()
		got, err := io.ReadAll(b)
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("reader saw wrong content for " + d)
		}
		return err
	case 2:
		if err := s.Delete(d); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	case 3:
		if err := s.Verify(d); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	case 4:
		if err := s.Pin(d); err != nil {
			return err
		}
		return s.Unpin(d)
	}
	return nil
}
