//go:build netns

package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/bundle"
	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// TestNetnsAirGap: an air-gapped site. The synthetic release is mirrored into a bundle tar where a registry is
// reachable (the test's own namespace); three members that are their own upstream run in namespaces whose only
// links are to each other and to the test; the bundle is imported through one of them. Then every member lists the
// version, builds and serves an ISO and the PXE kernel and initramfs (matching their .sha256), serves an installer
// that cosign verifies, a cluster image in the registry-mirror form, and a registry mirror patch Talos' own decoder
// reads; with one member killed, the other two still do. nftables in each member's namespace counts every
// connection a member opens to anything but its peers, during the whole test: the count is 0.
func TestNetnsAirGap(t *testing.T) {
	requireRealParts(t)
	lab := NewLab(t, 3)

	// The count sees what leaves: a connection attempt from a member's namespace to the test's host is one.
	lab.CountEgress(1)
	lab.Command(1, "curl", "-s", "--max-time", "1", "http://10.78.1.1:9/").Run() //nolint:errcheck // refused
	n, rules := lab.Egress(1)
	require.Positive(t, n, "the egress count misses a connection to the test's host:\n%s", rules)

	for i := 1; i <= lab.n; i++ {
		lab.CountEgress(i)
	}

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(t, err)

	reg := synthetictest.StartRegistry(t, synthetic.Options{Parts: parts})
	dir := t.TempDir()
	tarball := filepath.Join(dir, "release.tar")
	_, err = bundle.Mirror(t.Context(), bundle.Options{
		From: reg, SourceMap: []string{"registry.k8s.io=" + reg + "/registry.k8s.io"}, Versions: "v1.13.0",
		Extensions: []string{"all"}, Overlays: []string{"all"}, Talosctl: true, ClusterImages: true,
		PublicKeys: [][]byte{synthetic.PublicKeyPEM()}, RequireSignatures: true, To: tarball,
	})
	require.NoError(t, err, "mirror the synthetic release")

	c := startNodes(t, lab, "--upstream-registry", "cluster", "--catalog-refresh", "1s")

	b, err := bundle.Open(tarball)
	require.NoError(t, err)

	defer b.Close()

	res, err := bundle.Import(t.Context(), b, &imports.Client{Base: c.urls[1], Secret: clusterSecret, HTTP: client},
		bundle.ImportOptions{})
	require.NoError(t, err, "import the bundle through %s", NodeNS(1))
	assert.Equal(t, len(b.Images()), res.Images)

	for i := 1; i <= lab.n; i++ {
		waitOK(t, c.urls[i]+"/readyz", 90*time.Second, NodeNS(i))
	}

	id := c.createSchematic(t, 1, "air-gapped")

	c.checkSite(t, id, []int{1, 2, 3})

	// One member gone: the others still serve all of it (the assets built meanwhile included).
	require.NoError(t, c.procs[3].Kill())
	c.checkSite(t, c.createSchematic(t, 1, "air-gapped-after-a-loss"), []int{1, 2})

	for i := 1; i <= lab.n; i++ {
		n, rules := lab.Egress(i)
		assert.Zero(t, n, "%s opened connections that left the cluster:\n%s", NodeNS(i), rules)
	}
}

// checkSite checks, through each of members, everything an air-gapped site serves for a schematic.
func (c *cluster) checkSite(t *testing.T, id string, members []int) {
	t.Helper()

	for _, i := range members {
		t.Run(NodeNS(i), func(t *testing.T) {
			assert.Contains(t, string(c.get(t, i, "/versions").body), "v1.13.0")

			for _, asset := range []string{"metal-amd64.iso", "kernel-amd64", "initramfs-amd64.xz"} {
				path := "/image/" + id + "/v1.13.0/" + asset
				got := c.get(t, i, path)
				require.Equal(t, http.StatusOK, got.status, "%s: %s", asset, got)

				sum := sha256.Sum256(got.body)
				assert.Contains(t, string(c.get(t, i, path+".sha256").body), hex.EncodeToString(sum[:]),
					"%s matches its .sha256", asset)
			}

			host := strings.TrimPrefix(c.urls[i], "http://")
			image := host + "/metal-installer/" + id + ":v1.13.0"
			ref, err := name.ParseReference(image, name.Insecure)
			require.NoError(t, err)

			idx, err := remote.Index(ref)
			require.NoError(t, err, "pull the installer")

			_, err = idx.IndexManifest()
			require.NoError(t, err)
			cosignVerify(t, c.urls[i], image)

			pause := c.get(t, i, "/v2/pause/manifests/3.10.1?ns=registry.k8s.io")
			assert.Equal(t, http.StatusOK, pause.status, "a cluster image in the registry-mirror form: %s", pause)

			patch := c.get(t, i, "/talos/registry-mirrors.yaml?version=v1.13.0")
			require.Equal(t, http.StatusOK, patch.status, "%s", patch)

			cfg, err := configloader.NewFromBytes(patch.body)
			require.NoError(t, err, "the patch is Talos machine configuration:\n%s", patch.body)
			assert.Contains(t, cfg.RegistryMirrorConfigs(), "registry.k8s.io")
		})
	}
}

// cosignVerify checks an installer image's signature with the cosign CLI `make deps` builds, offline, against the
// cluster's public key; it skips that check, saying so, when the CLI is missing.
func cosignVerify(t *testing.T, base, image string) {
	t.Helper()

	bin := filepath.Join(e2e.RepoRoot(t), "build", "tools", "cosign")
	if _, err := os.Stat(bin); err != nil {
		t.Logf("cosign verification skipped: %s is missing (make deps builds it)", bin)

		return
	}

	pub := do(t, http.MethodGet, base+"/oci/cosign/signing-key.pub", "")
	require.Equal(t, http.StatusOK, pub.status, "%s", pub)

	key := filepath.Join(t.TempDir(), "cosign.pub")
	require.NoError(t, os.WriteFile(key, pub.body, 0o644))

	out, err := exec.CommandContext(t.Context(), bin, "verify", "--key", key, "--insecure-ignore-tlog=true",
		"--insecure-ignore-sct=true", "--offline=true", "--allow-insecure-registry", "--allow-http-registry",
		image).CombinedOutput()
	require.NoError(t, err, "cosign verify %s: %s", image, out)
}
