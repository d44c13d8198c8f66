package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestDiskFullDuringBuild: a member whose data disk fills during a build answers 507 naming the full disk, keeps
// no partial or unverified blob under a final name, and builds the same asset once space returns. The data
// directory is a small tmpfs, really filled.
func TestDiskFullDuringBuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}

	// The data directory is on another file system than /tmp, so the imager moves the process's TMPDIR onto it
	// (imager/env.go); the tests after this one must get theirs back when the tmpfs goes.
	t.Setenv("TMPDIR", os.TempDir())

	data := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", data, "tmpfs", 0, "size="+strconv.Itoa(1<<30)))
	t.Cleanup(func() { unix.Unmount(data, unix.MNT_DETACH) }) //nolint:errcheck // the test's own mount

	n := startReady(t, testConfig(t, data, realUpstream(t)))

	// First the release inputs do not fit (their download fails), then, with the inputs stored, the build itself
	// (the imager's work files, or the ISO into the store).
	for i, stage := range []string{"fetching the inputs", "building"} {
		id := n.createSchematic(t, fmt.Sprintf(`customization: {extraKernelArgs: [diskfull=%d]}`, i))
		path := "/image/" + id + "/v1.13.0/metal-amd64.iso"

		filler := fill(t, data, 8<<20) // the ISO alone is 45 MB

		resp := n.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusInsufficientStorage, resp.StatusCode, "%s on a full disk: %s", stage, resp.Body)
		assert.Contains(t, resp.Body, "data disk is full")
		t.Logf("%s on a full disk: %s", stage, resp.Body)
		assertBlobsWhole(t, filepath.Join(data, "cas"))

		require.NoError(t, os.Remove(filler)) // space returns

		// A failed build answers with its error for 10 s before it is tried again (docs/api.md §8), a full disk's
		// too.
		deadline := time.Now().Add(90 * time.Second) // a build, after the 10 s hold

		for resp = n.do(t, "GET", path, "", nil); resp.StatusCode != http.StatusOK; {
			require.True(t, time.Now().Before(deadline), "%s: the member did not build once space returned: %d %s",
				stage, resp.StatusCode, resp.Body)
			time.Sleep(time.Second)

			resp = n.do(t, "GET", path, "", nil)
		}

		sum := sha256.Sum256([]byte(resp.Body))
		want := n.do(t, "GET", path+".sha256", "", nil)
		require.Equal(t, http.StatusOK, want.StatusCode)
		assert.Equal(t, hex.EncodeToString(sum[:]), strings.Fields(want.Body)[0], "%s: the ISO built after", stage)
		assertBlobsWhole(t, filepath.Join(data, "cas"))
	}
}

// fill writes a file on dir's file system until only leave bytes are free, and returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()

	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))

	free := int64(st.Bavail) * st.Bsize
	require.Greater(t, free, leave)

	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)

	defer f.Close()

	_, err = io.CopyN(f, zeroes{}, free-leave) // tmpfs allocates what is written, zeros included
	require.NoError(t, err)

	return path
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)

	return len(p), nil
}

// assertBlobsWhole checks that every blob under a CAS directory's final names hashes to its name.
func assertBlobsWhole(t *testing.T, cas string) {
	t.Helper()

	err := filepath.WalkDir(filepath.Join(cas, "sha256"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()

		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}

		assert.Equal(t, d.Name(), hex.EncodeToString(h.Sum(nil)), "blob %s is not what its name says", path)

		return nil
	})
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
}
