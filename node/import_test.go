package node_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/bundle"
	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/node"
)

// TestClusterImportBundle: a cluster that is its own upstream (--upstream-registry cluster) starts with nothing;
// a bundle of the synthetic release (signed, with extensions, overlays, talosctl and cluster images) mirrored from a
// registry is imported through one member; from then on every member lists the versions, builds and serves an ISO
// and the PXE kernel and initramfs, pulls an installer, and serves a cluster image under its full name and in the
// registry-mirror form, without any registry. Before that, a damaged bundle and one with an unsigned image are
// refused, naming the blob and the image, and the cluster keeps nothing of them. A second import moves no blob.
func TestClusterImportBundle(t *testing.T) {
	reg := realUpstream(t)
	ctx := t.Context()
	dir := t.TempDir()
	key := synthetic.PublicKeyPEM()

	mirrored, err := bundle.Mirror(ctx, bundle.Options{
		From: reg, SourceMap: []string{"registry.k8s.io=" + reg + "/registry.k8s.io"}, Versions: "v1.13.0",
		Extensions: []string{"all"}, Overlays: []string{"all"}, Talosctl: true, ClusterImages: true,
		PublicKeys: [][]byte{key}, RequireSignatures: true, To: filepath.Join(dir, "release"),
	})
	require.NoError(t, err)

	c := startClusterOf(t, &cluster{reg: node.ClusterUpstream, dir: t.TempDir(), expect: 3, noCatalog: true},
		func(_ int, cfg *node.Config) {
			cfg.InputPublicKeys = [][]byte{key}
			cfg.CatalogRefresh = 300 * time.Millisecond
		})
	via := c.other(t, c.leader(t).name) // any member will do: not the leader, to show it
	client := &imports.Client{Base: via.base, Secret: clusterSecret}

	imager := mirrored.Manifest.Images[0]
	require.Equal(t, "ghcr.io/siderolabs/imager:v1.13.0", imager.Reference)

	t.Run("a damaged bundle is refused, naming the blob", func(t *testing.T) {
		damaged := copyDir(t, filepath.Join(dir, "release"))
		victim := largestBlob(t, damaged)
		flipByte(t, filepath.Join(damaged, "blobs", "sha256", strings.TrimPrefix(victim, "sha256:")), 100)

		_, err := importDir(ctx, t, damaged, client)
		require.ErrorContains(t, err, victim)
		assertNothingImported(t, c)
	})

	t.Run("a bundle with an unsigned image is refused, naming the image", func(t *testing.T) {
		unsigned := copyDir(t, filepath.Join(dir, "release"))
		editManifest(t, unsigned, func(m *bundle.Manifest) { m.Images[0].Signatures = nil })

		_, err := importDir(ctx, t, unsigned, client)
		require.ErrorContains(t, err, "ghcr.io/siderolabs/imager:v1.13.0")
		require.ErrorContains(t, err, "no cosign signature")
		assertNothingImported(t, c)
	})

	res, err := importDir(ctx, t, filepath.Join(dir, "release"), client)
	require.NoError(t, err)
	assert.Equal(t, len(mirrored.Manifest.Images), res.Images)
	assert.Equal(t, mirrored.Manifest.Blobs, res.Moved, "every blob of the bundle moved once")

	c.noCatalog = false
	c.waitFormed(t) // every member ready: its catalog read from the cluster itself

	id := c.leader(t).createSchematic(t, `customization: {extraKernelArgs: [air-gapped], systemExtensions: {officialExtensions: [siderolabs/hello-world-service]}}`)

	for _, m := range c.live() {
		t.Run("served by "+m.name, func(t *testing.T) {
			assert.Contains(t, m.do(t, "GET", "/versions", "", nil).Body, "v1.13.0")

			for _, asset := range []string{"metal-amd64.iso", "kernel-amd64", "initramfs-amd64.xz"} {
				path := "/image/" + id + "/v1.13.0/" + asset
				d := fetchURL(http.DefaultClient, m.base+path)
				require.True(t, d.complete(), "%s on %s: %d %v", asset, m.name, d.status, d.err)
				sum := m.do(t, "GET", path+".sha256", "", nil)
				assert.Contains(t, sum.Body, d.sha, "%s matches its .sha256", asset)
			}

			ref, err := name.ParseReference(strings.TrimPrefix(m.base, "http://")+"/metal-installer/"+id+":v1.13.0",
				name.Insecure)
			require.NoError(t, err)
			pullInstaller(t, ref)

			pause := mirrored.Manifest.Images[len(mirrored.Manifest.Images)-1]
			for _, im := range mirrored.Manifest.Images {
				if im.Repository == "registry.k8s.io/pause" {
					pause = im
				}
			}

			require.Equal(t, "registry.k8s.io/pause", pause.Repository)
			full := m.do(t, "GET", "/v2/registry.k8s.io/pause/manifests/"+pause.Tag, "", nil)
			assert.Equal(t, http.StatusOK, full.StatusCode, full.Body)
			assert.Equal(t, pause.Digest, full.Header.Get("Docker-Content-Digest"))

			mirror := m.do(t, "GET", "/v2/pause/manifests/"+pause.Tag+"?ns=registry.k8s.io", "", nil)
			assert.Equal(t, http.StatusOK, mirror.StatusCode, mirror.Body)
			assert.Equal(t, pause.Digest, mirror.Header.Get("Docker-Content-Digest"))

			checkMirrorPatch(t, c, m)
		})
	}

	again, err := importDir(ctx, t, filepath.Join(dir, "release"), client)
	require.NoError(t, err)
	assert.Zero(t, again.Moved, "a second import moves no blob")
	assert.Equal(t, res.Blobs, again.Blobs)
}

// importDir imports the bundle at dir through client.
func importDir(ctx context.Context, t *testing.T, dir string, client *imports.Client) (imports.CommitResponse, error) {
	t.Helper()

	b, err := bundle.Open(dir)
	require.NoError(t, err)

	defer b.Close()

	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	return bundle.Import(ctx, b, client, bundle.ImportOptions{})
}

// assertNothingImported checks that no member serves an image of the release and that no member stores a blob of
// a refused bundle that nothing records.
func assertNothingImported(t *testing.T, c *cluster) {
	t.Helper()

	for _, m := range c.live() {
		resp := m.do(t, "GET", "/v2/ghcr.io/siderolabs/imager/tags/list", "", nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s lists tags of a refused bundle: %s", m.name,
			resp.Body)
		assert.Zero(t, m.Status().Cache.Blobs, "%s keeps blobs of a refused bundle", m.name)
	}
}

// copyDir copies a directory bundle.
func copyDir(t *testing.T, src string) string {
	t.Helper()

	dst := filepath.Join(t.TempDir(), "bundle")
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	require.NoError(t, err, "%s", out)

	return dst
}

// largestBlob is the digest of a directory bundle's largest blob.
func largestBlob(t *testing.T, dir string) string {
	t.Helper()

	b, err := bundle.Open(dir)
	require.NoError(t, err)

	defer b.Close()

	var best bundle.BlobInfo
	for _, blob := range b.Blobs() {
		if blob.Size > best.Size {
			best = blob
		}
	}

	return best.Digest
}

// editManifest rewrites a directory bundle's bundle.json.
func editManifest(t *testing.T, dir string, edit func(*bundle.Manifest)) {
	t.Helper()

	path := filepath.Join(dir, bundle.ManifestFile)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)

	var m bundle.Manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	edit(&m)

	raw, err = json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, raw, 0o644))
}

// checkMirrorPatch reads m's registry mirror patch for v1.13.0 with Talos' own configuration loader: a
// RegistryMirrorConfig for each registry the version's images come from, every member an endpoint, no fallback.
func checkMirrorPatch(t *testing.T, c *cluster, m *member) {
	t.Helper()

	resp := m.do(t, "GET", "/talos/registry-mirrors.yaml?version=v1.13.0", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	cfg, err := configloader.NewFromBytes([]byte(resp.Body))
	require.NoError(t, err, "the patch is Talos machine configuration:\n%s", resp.Body)

	mirrors := cfg.RegistryMirrorConfigs()
	assert.ElementsMatch(t, []string{"ghcr.io", "registry.k8s.io"}, slices.Collect(maps.Keys(mirrors)), resp.Body)

	var want []string
	for _, mb := range c.live() {
		want = append(want, mb.URL())
	}

	for host, mc := range mirrors {
		var got []string
		for _, e := range mc.Endpoints() {
			got = append(got, e.Endpoint())
		}

		assert.ElementsMatch(t, want, got, "%s: every member is an endpoint", host)
		assert.True(t, mc.SkipFallback(), "%s: no fallback to a registry the site cannot reach", host)
	}

	missing := m.do(t, "GET", "/talos/registry-mirrors.yaml?version=v1.12.0", "", nil)
	assert.Equal(t, http.StatusNotFound, missing.StatusCode, "no image serves v1.12.0: %s", missing.Body)

	noVersion := m.do(t, "GET", "/talos/registry-mirrors.yaml", "", nil)
	assert.Equal(t, http.StatusBadRequest, noVersion.StatusCode, noVersion.Body)
}
