package node_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/bundle"
	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/node"
)

// ipxeNames are the three iPXE binaries.
var ipxeNames = []string{"undionly.kpxe", "ipxe.efi", "ipxe-arm64.efi"}

// ipxeParts is build/parts/ipxe: Debian's iPXE binaries, which make deps puts there.
func ipxeParts(t *testing.T) string {
	t.Helper()

	dir, err := filepath.Abs(filepath.Join("..", "build", "parts", "ipxe"))
	require.NoError(t, err)

	if _, err := os.Stat(filepath.Join(dir, "ipxe.efi")); err != nil {
		t.Skipf("the iPXE binaries are not in %s (run `make deps`): %v", dir, err)
	}

	return dir
}

// TestClusterImportIPXE: a bundle carrying Debian's iPXE binaries is imported into a three-member cluster that is its
// own upstream. Before that, a member doing network boot without --ipxe-dir waits (nothing written, /ipxe/{name}
// answers 503 saying why); a bundle naming a file that is not an iPXE binary is refused, naming it. After it, every
// member holds the netboot/ipxe setting, the waiting member fills its iPXE directory with byte-identical files and
// serves them; a blob whose bytes no longer match is refused and never written; and a bundle without iPXE binaries
// leaves the setting alone.
func TestClusterImportIPXE(t *testing.T) {
	src := ipxeParts(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "bundle")

	mirrored, err := bundle.Mirror(ctx, bundle.Options{IPXEDir: src, To: dir})
	require.NoError(t, err)
	require.NotNil(t, mirrored.Manifest.IPXE)

	c := startClusterOf(t, &cluster{reg: node.ClusterUpstream, dir: t.TempDir(), expect: 3, noCatalog: true},
		func(i int, cfg *node.Config) {
			cfg.InputPublicKeys = [][]byte{synthetic.PublicKeyPEM()}

			if i == 2 { // network boot on loopback, binaries from the cluster, listeners not started
				cfg.NetbootInterfaces = []string{"lo"}
				*cfg = node.WithIPXEPoll(node.WithoutNetbootServer(*cfg), 100*time.Millisecond)
			}
		})
	booter := c.byName(t, "node3")
	client := &imports.Client{Base: c.other(t, booter.name).base, Secret: clusterSecret}

	t.Run("before an import the member waits", func(t *testing.T) {
		wait, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()

		require.ErrorIs(t, booter.AwaitIPXE(wait), context.DeadlineExceeded)
		assertNoIPXEFiles(t, booter.IPXEDir())

		resp := booter.do(t, "GET", "/ipxe/ipxe.efi", "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Contains(t, resp.Body, "iPXE binaries not imported yet")
	})

	t.Run("a file that is not an iPXE binary is refused, naming it", func(t *testing.T) {
		bad := copyDir(t, dir)
		editManifest(t, bad, func(m *bundle.Manifest) { m.IPXE.Files[1].Name = "snponly.efi" })

		_, err := importDir(ctx, t, bad, client)
		require.ErrorContains(t, err, `"snponly.efi"`)

		for _, m := range c.live() {
			_, ok := m.IPXESetting()
			assert.False(t, ok, "%s records no binaries of a refused bundle", m.name)
		}
	})

	res, err := importDir(ctx, t, dir, client)
	require.NoError(t, err)
	assert.Equal(t, 3, res.IPXE, "the three binaries recorded")
	assert.Equal(t, 3, res.Moved, "their blobs moved")

	efi := mirrored.Manifest.IPXE.Files[1]
	require.Equal(t, "ipxe.efi", efi.Name)

	for _, m := range c.live() {
		require.Eventually(t, func() bool {
			v, ok := m.IPXESetting()

			return ok && strings.Contains(v, efi.Digest)
		}, 10*time.Second, 50*time.Millisecond, "%s holds the setting", m.name)
	}

	t.Run("the member fetches byte-identical files and serves them", func(t *testing.T) {
		wait, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()

		require.NoError(t, booter.AwaitIPXE(wait))

		for _, name := range ipxeNames {
			want, err := os.ReadFile(filepath.Join(src, name))
			require.NoError(t, err)

			got, err := os.ReadFile(filepath.Join(booter.IPXEDir(), name))
			require.NoError(t, err)
			assert.Equal(t, want, got, name)

			resp, err := http.Get(booter.base + "/ipxe/" + name)
			require.NoError(t, err)

			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode, name)
			assert.Equal(t, want, body, "/ipxe/%s serves the fetched file", name)
		}
	})

	t.Run("bytes that do not match are refused and never written", func(t *testing.T) {
		require.True(t, booter.HasBlob(efi.Digest), "the fetch kept a verified copy")
		flipByte(t, booter.BlobPath(efi.Digest), 100)

		target := filepath.Join(booter.IPXEDir(), "ipxe.efi")
		require.NoError(t, os.Remove(target))

		err := booter.FetchIPXE(ctx)
		require.ErrorContains(t, err, "iPXE binary ipxe.efi")
		require.ErrorContains(t, err, "not written")
		assert.NoFileExists(t, target)

		entries, err := os.ReadDir(booter.IPXEDir())
		require.NoError(t, err)
		assert.Len(t, entries, 2, "the other two binaries, and no temporary file left")
	})

	t.Run("a bundle without iPXE binaries leaves the setting alone", func(t *testing.T) {
		before, ok := booter.IPXESetting()
		require.True(t, ok)

		without := copyDir(t, dir)
		editManifest(t, without, func(m *bundle.Manifest) { m.IPXE = nil })

		again, err := importDir(ctx, t, without, client)
		require.NoError(t, err)
		assert.Zero(t, again.IPXE)

		for _, m := range c.live() {
			after, ok := m.IPXESetting()
			assert.True(t, ok, m.name)
			assert.Equal(t, before, after, m.name)
		}
	})
}

// assertNoIPXEFiles checks that none of the binaries is in dir.
func assertNoIPXEFiles(t *testing.T, dir string) {
	t.Helper()

	for _, name := range ipxeNames {
		assert.NoFileExists(t, filepath.Join(dir, name))
	}
}
