package cas

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// skipWithoutPunch skips when the filesystem under dir cannot punch holes.
func skipWithoutPunch(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "probe")
	require.NoError(t, os.WriteFile(p, make([]byte, 2*blockSize), 0o644))
	defer os.Remove(p)
	if err := PunchHoles(p); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("no hole punching on %s: %v", dir, err)
	}
}

func TestImportSameFilesystemRenames(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, filepath.Join(root, "cas"), Options{})
	src := filepath.Join(root, "out.raw")
	data := randBytes(300_000, 11)
	require.NoError(t, os.WriteFile(src, data, 0o644))
	before, err := os.Stat(src)
	require.NoError(t, err)

	d, n, err := s.Import(src, sha(data))
	require.NoError(t, err)
	require.Equal(t, sha(data), d)
	require.Equal(t, int64(len(data)), n)
	_, err = os.Stat(src)
	require.ErrorIs(t, err, os.ErrNotExist, "import moves the file")
	after, err := os.Stat(s.blobPath(d))
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "same filesystem: renamed, not copied")
	require.Equal(t, os.FileMode(0o444), after.Mode().Perm())
	require.Equal(t, data, readBlob(t, s, d))

	// Importing bytes the store already has just consumes the source.
	require.NoError(t, os.WriteFile(src, data, 0o644))
	d2, _, err := s.Import(src, "")
	require.NoError(t, err)
	require.Equal(t, d, d2)
	_, err = os.Stat(src)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, _, blobs := s.Usage()
	require.Equal(t, 1, blobs)
}

func TestImportRejects(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, filepath.Join(root, "cas"), Options{})
	data := randBytes(50_000, 12)
	src := filepath.Join(root, "out.iso")
	require.NoError(t, os.WriteFile(src, data, 0o640))
	link := filepath.Join(root, "link")
	require.NoError(t, os.Symlink(src, link))

	cases := []struct {
		name     string
		path     string
		expected string
		want     error
	}{
		{name: "digest mismatch", path: src, expected: sha([]byte("else")), want: ErrDigestMismatch},
		{name: "missing", path: filepath.Join(root, "nope"), want: os.ErrNotExist},
		{name: "symlink", path: link},
		{name: "directory", path: root},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Import(tc.path, tc.expected)
			require.Error(t, err)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			got, err := os.ReadFile(src)
			require.NoError(t, err)
			require.Equal(t, data, got, "the source is left as it was")
			info, err := os.Stat(src)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o640), info.Mode().Perm())
			_, _, blobs := s.Usage()
			require.Zero(t, blobs)
		})
	}
}

func TestImportHardLinkedSourceIsCopied(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, filepath.Join(root, "cas"), Options{})
	src := filepath.Join(root, "img")
	other := filepath.Join(root, "other-name")
	data := randBytes(100_000, 13)
	require.NoError(t, os.WriteFile(src, data, 0o644))
	require.NoError(t, os.Link(src, other))

	d, _, err := s.Import(src, "")
	require.NoError(t, err)
	_, err = os.Stat(src)
	require.ErrorIs(t, err, os.ErrNotExist)
	otherInfo, err := os.Stat(other)
	require.NoError(t, err)
	blobInfo, err := os.Stat(s.blobPath(d))
	require.NoError(t, err)
	require.False(t, os.SameFile(otherInfo, blobInfo), "the blob must not share an inode with a writable path")
	require.Equal(t, data, readBlob(t, s, d))
}

func TestImportKeepsImagesSparse(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB files")
	}
	const size = 64 << 20
	cases := []struct {
		name   string
		srcDir func(t *testing.T) string
	}{
		{name: "same filesystem", srcDir: func(t *testing.T) string { return t.TempDir() }},
		{name: "other filesystem", srcDir: otherFilesystemDir},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			casDir := t.TempDir()
			skipWithoutPunch(t, casDir)
			srcDir := tc.srcDir(t)
			src := filepath.Join(srcDir, "disk.raw")
			data := sparseImage(t, src, size)
			require.Greater(t, diskBytes(t, src), int64(size/2), "the test image must start fully allocated")

			s := openStore(t, casDir, Options{})
			d, n, err := s.Import(src, sha(data))
			require.NoError(t, err)
			require.Equal(t, int64(size), n)
			onDisk := diskBytes(t, s.blobPath(d))
			require.Less(t, onDisk, int64(4<<20), "64 MiB image with 2 MiB of data occupies %d bytes", onDisk)
			used, _, _ := s.Usage()
			require.Equal(t, onDisk, used, "the budget counts allocated bytes")
			require.NoError(t, s.Verify(d))
			b, err := s.Open(d)
			require.NoError(t, err)
			defer b.Close()
			require.Equal(t, int64(size), b.Size())
		})
	}
}

// otherFilesystemDir returns a directory on a different filesystem from t.TempDir(), or skips.
func otherFilesystemDir(t *testing.T) string {
	base := t.TempDir()
	for _, cand := range []string{"/dev/shm", os.Getenv("CAS_OTHER_FS")} {
		if cand == "" || sameDevice(t, base, cand) {
			continue
		}
		dir, err := os.MkdirTemp(cand, "cas-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Skip("no second filesystem available (set CAS_OTHER_FS)")
	return ""
}

func sameDevice(t *testing.T, a, b string) bool {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return true
	}
	return sa.Dev == sb.Dev
}

func TestPunchHoles(t *testing.T) {
	dir := t.TempDir()
	skipWithoutPunch(t, dir)
	const mib = 1 << 20
	alternating := make([]byte, 64*blockSize)
	for i := 0; i < len(alternating); i += 2 * blockSize {
		copy(alternating[i:], randBytes(blockSize, uint64(i)))
	}
	cases := []struct {
		name    string
		data    []byte
		maxDisk int64
	}{
		{name: "all zeros", data: make([]byte, 8*mib), maxDisk: 0},
		{name: "data at both ends", data: append(append(randBytes(mib, 1), make([]byte, 6*mib)...), randBytes(mib, 2)...),
			maxDisk: 2*mib + 64<<10},
		{name: "unaligned tail of zeros", data: append(randBytes(blockSize+10, 3), make([]byte, 3*mib+7)...),
			maxDisk: 3 * blockSize},
		{name: "alternating blocks", data: alternating, maxDisk: int64(len(alternating)/2) + 64<<10},
		{name: "no zeros", data: randBytes(mib, 4), maxDisk: mib + 64<<10},
		{name: "shorter than a block", data: make([]byte, 100), maxDisk: blockSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(p, tc.data, 0o644))
			require.NoError(t, PunchHoles(p))
			require.LessOrEqual(t, diskBytes(t, p), tc.maxDisk)
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, sha256.Sum256(tc.data), sha256.Sum256(got), "content must not change")
			require.NoError(t, PunchHoles(p), "punching again (over holes) is harmless")
			got, err = os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, len(tc.data), len(got))
		})
	}
}

func TestWriterKeepsZerosSparse(t *testing.T) {
	dir := t.TempDir()
	skipWithoutPunch(t, dir)
	s := openStore(t, dir, Options{})
	const size = 16 << 20
	data := make([]byte, size)
	copy(data[12345:], randBytes(100_000, 6))
	copy(data[size-5000:], randBytes(5000, 7))
	w, err := s.Create(sha(data), size)
	require.NoError(t, err)
	// Odd-sized writes, as from a network body, must still leave the zero blocks unwritten.
	for rest := data; len(rest) > 0; {
		n := min(33_333, len(rest))
		_, err := w.Write(rest[:n])
		require.NoError(t, err)
		rest = rest[n:]
	}
	d, _, err := w.Commit()
	require.NoError(t, err)
	require.Less(t, diskBytes(t, s.blobPath(d)), int64(256<<10))
	b, err := s.Open(d)
	require.NoError(t, err)
	defer b.Close()
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, sha(data), sha(got))
}

func TestVerify(t *testing.T) {
	data := randBytes(200_000, 8)
	cases := []struct {
		name    string
		corrupt func(t *testing.T, path string)
		open    bool // a reader holds the blob while it is found corrupt
	}{
		{name: "flipped byte", corrupt: flipByte(123_456)},
		{name: "flipped first byte while open", corrupt: flipByte(0), open: true},
		{name: "truncated", corrupt: func(t *testing.T, p string) { require.NoError(t, os.Truncate(p, 1000)) }},
		{name: "grown", corrupt: func(t *testing.T, p string) { require.NoError(t, os.Truncate(p, 300_000)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			d := put(t, s, data)
			require.NoError(t, s.Verify(d))
			if tc.open {
				b, err := s.Open(d)
				require.NoError(t, err)
				defer b.Close()
			}
			path := s.blobPath(d)
			require.NoError(t, os.Chmod(path, 0o644))
			tc.corrupt(t, path)

			err := s.Verify(d)
			require.ErrorIs(t, err, ErrDigestMismatch)
			require.False(t, s.Has(d))
			_, err = s.Open(d)
			require.ErrorIs(t, err, ErrNotFound)
			_, err = os.Stat(path)
			require.ErrorIs(t, err, os.ErrNotExist)
			require.ErrorIs(t, s.Verify(d), ErrNotFound)

			require.Equal(t, d, put(t, s, data), "a good copy can be stored again")
			require.NoError(t, s.Verify(d))
		})
	}
}

func flipByte(off int64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		b := make([]byte, 1)
		_, err = f.ReadAt(b, off)
		require.NoError(t, err)
		b[0] ^= 0x01
		_, err = f.WriteAt(b, off)
		require.NoError(t, err)
	}
}

// TestImportSparseSource hashes files that already have holes: SEEK_DATA skips them, so their zeros must still
// be fed to the hash.
func TestImportSparseSource(t *testing.T) {
	const size = 8 << 20
	type span struct {
		off  int
		data []byte
	}
	cases := []struct {
		name  string
		spans []span
	}{
		{name: "hole in the middle", spans: []span{{0, randBytes(5000, 1)}, {size - 9000, randBytes(9000, 2)}}},
		{name: "leading hole", spans: []span{{3 << 20, randBytes(70_000, 3)}}},
		{name: "trailing hole", spans: []span{{0, randBytes(4096, 4)}}},
		{name: "only a hole"},
		{name: "unaligned data", spans: []span{{12_345, randBytes(777, 5)}, {6<<20 + 1, randBytes(3, 6)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := openStore(t, filepath.Join(root, "cas"), Options{})
			want := make([]byte, size)
			src := filepath.Join(root, "img")
			f, err := os.Create(src)
			require.NoError(t, err)
			require.NoError(t, f.Truncate(size))
			for _, sp := range tc.spans {
				copy(want[sp.off:], sp.data)
				_, err := f.WriteAt(sp.data, int64(sp.off))
				require.NoError(t, err)
			}
			require.NoError(t, f.Close())

			d, n, err := s.Import(src, sha(want))
			require.NoError(t, err)
			require.Equal(t, sha(want), d)
			require.Equal(t, int64(size), n)
			require.NoError(t, s.Verify(d))
		})
	}
}
