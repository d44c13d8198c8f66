package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// Installer images served by the OCI frontend (docs/api.md §5), pulled by real clients: go-containerregistry's remote
// package (what crane uses) and, when it is installed, the cosign CLI. The e2e suite adds skopeo.

const (
	mediaTypeCosignSig   = "application/vnd.dev.cosign.artifact.sig.v1+json"
	annotationCosignSig  = "dev.cosignproject.cosign/signature"
	prereleaseForLatest  = "v1.14.0-alpha.1"
	installerRepoForTest = "metal-installer"
)

// ociUpstream is realUpstream with a pre-release newer than v1.13.0, so that `latest` must skip it.
func ociUpstream(t testing.TB) string {
	t.Helper()

	if testing.Short() {
		t.Skip("builds installer images; skipped with -short")
	}

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), testLogger(t))
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("synthetic release parts missing (%v): run `make deps`", parts.Missing())
	}

	if os.Getenv("EDGEFACTORY_MKSQUASHFS") == "" {
		t.Setenv("EDGEFACTORY_MKSQUASHFS", repoFile(t, "build/hosttools/squashfs-tools/usr/bin/mksquashfs"))
	}

	return synthetictest.StartRegistry(t, synthetic.Options{Parts: parts,
		Versions: []string{"v1.13.0", prereleaseForLatest}})
}

// installerBuilds sums edgefactory_builds_total{kind="installer"} (every result) on a node.
func installerBuilds(t testing.TB, r *running) float64 {
	t.Helper()

	total := 0.0

	for line := range strings.SplitSeq(r.do(t, "GET", "/metrics", "", nil).Body, "\n") {
		if !strings.HasPrefix(line, "edgefactory_builds_total{") || !strings.Contains(line, `kind="installer"`) {
			continue
		}

		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)

		total += v
	}

	return total
}

// ref names an installer repository's tag or digest on a node, as a registry client would.
func ref(t testing.TB, r *running, repo, id, reference string) name.Reference {
	t.Helper()

	sep := ":"
	if strings.HasPrefix(reference, "sha256:") {
		sep = "@"
	}

	out, err := name.ParseReference(strings.TrimPrefix(r.base, "http://")+"/"+repo+"/"+id+sep+reference, name.Insecure)
	require.NoError(t, err)

	return out
}

// registryError decodes the distribution spec's error envelope and returns its one code.
func registryError(t testing.TB, resp response) string {
	t.Helper()

	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	var env struct {
		Errors []struct{ Code, Message string }
	}

	require.NoError(t, json.Unmarshal([]byte(resp.Body), &env), "envelope: %s", resp.Body)
	require.Len(t, env.Errors, 1, resp.Body)
	assert.NotEmpty(t, env.Errors[0].Message)

	return env.Errors[0].Code
}

// installerImage is a pulled installer index: its digest and every blob it is made of.
type installerImage struct {
	index     string
	manifests map[string]string // arch → manifest digest
	blobs     []string          // index, manifests, configs and layers
	layer2    map[string]v1.Hash
}

// pullInstaller pulls an installer index and both images with go-containerregistry (as crane does) and checks
// their content against docs/api.md §5.6: exactly linux/amd64 and linux/arm64, two layers each, the installer binary
// in the base layer and only the boot files in the second. Every blob's bytes are verified against its digest.
func pullInstaller(t *testing.T, r name.Reference) installerImage {
	t.Helper()

	idx, err := remote.Index(r)
	require.NoError(t, err)

	digest, err := idx.Digest()
	require.NoError(t, err)

	im, err := idx.IndexManifest()
	require.NoError(t, err)
	assert.Equal(t, types.OCIImageIndex, im.MediaType)

	out := installerImage{index: digest.String(), manifests: map[string]string{}, blobs: []string{digest.String()},
		layer2: map[string]v1.Hash{}}

	var platforms []string

	for _, desc := range im.Manifests {
		require.NotNil(t, desc.Platform)
		platforms = append(platforms, desc.Platform.OS+"/"+desc.Platform.Architecture)
		arch := desc.Platform.Architecture

		img, err := idx.Image(desc.Digest)
		require.NoError(t, err)

		cfg, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, arch, cfg.Architecture)

		configDigest, err := img.ConfigName()
		require.NoError(t, err)

		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 2, "%s: base + artifacts", arch)

		assert.Contains(t, synthetictest.LayerFiles(t, layers[0]), "usr/bin/installer", arch)
		assert.ElementsMatch(t, []string{"usr/install/" + arch + "/vmlinuz.efi", "usr/install/" + arch + "/systemd-boot.efi"},
			synthetictest.LayerFiles(t, layers[1]), "%s: the artifacts layer holds exactly the boot files", arch)

		out.manifests[arch] = desc.Digest.String()
		out.blobs = append(out.blobs, desc.Digest.String(), configDigest.String())

		for _, l := range layers {
			d, err := l.Digest()
			require.NoError(t, err)

			out.blobs = append(out.blobs, d.String())
		}

		out.layer2[arch], err = layers[1].Digest()
		require.NoError(t, err)
	}

	assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, platforms, "exactly these platforms, in this order")
	require.NoError(t, validate.Index(idx), "every blob's bytes and size match its descriptor")

	return out
}

// TestInstallerImageCluster requests an installer image on one node of three and pulls everything from a node that
// neither built nor assembled it, then checks signatures, referrers, Range and the asset index from the third. A
// storm of cold pulls of another schematic across all nodes builds each architecture once.
func TestInstallerImageCluster(t *testing.T) {
	c := startCluster(t, ociUpstream(t), 3)
	first := c.live()[0]
	id := first.createSchematic(t, `customization: {extraKernelArgs: [oci-pull]}`)

	// The owners of the two installer tarballs build them; b is neither, a asks first and assembles the index.
	var builders []string

	for _, arch := range []string{"amd64", "arm64"} {
		key, err := first.RecipeKey(context.Background(), id, "v1.13.0", "metal-installer-"+arch+".tar")
		require.NoError(t, err)

		builders = append(builders, first.Owner(key))
	}

	b := c.other(t, builders...)
	a := c.other(t, b.name)
	third := c.other(t, a.name, b.name)
	t.Logf("tarball owners %v; manifest asked on %s; pulled from %s; blobs checked on %s", builders, a.name, b.name,
		third.name)

	cold := a.do(t, "GET", "/v2/"+installerRepoForTest+"/"+id+"/manifests/v1.13.0", "", nil)
	require.Equal(t, http.StatusOK, cold.StatusCode, cold.Body)
	indexDigest := cold.Header.Get("Docker-Content-Digest")

	total := 0.0
	for _, m := range c.live() {
		total += installerBuilds(t, m.running)
	}

	require.Equal(t, 2.0, total, "one build per architecture")
	require.Zero(t, installerBuilds(t, b.running), "%s built nothing", b.name)

	img := pullInstaller(t, ref(t, b.running, installerRepoForTest, id, "v1.13.0"))
	require.Equal(t, indexDigest, img.index)
	require.Zero(t, installerBuilds(t, b.running), "pulling from %s built nothing there", b.name)

	repo := "/v2/" + installerRepoForTest + "/" + id
	sig := signatureOf(t, b.running, repo, img.index)

	// First, while the third node has read nothing of this image.
	t.Run("every blob is in the asset index", func(t *testing.T) {
		checkBlobsListed(t, third.running, repo, append(img.blobs, sig.manifest, sig.payload, sig.config))
	})
	t.Run("manifests by digest", func(t *testing.T) { checkManifestsByDigest(t, b.running, repo, cold, img) })
	t.Run("HEAD", func(t *testing.T) { checkHead(t, b.running, repo, img) })
	t.Run("blob range", func(t *testing.T) { checkBlobRange(t, b.running, repo, img.layer2["arm64"].String()) })
	t.Run("latest is the newest release", func(t *testing.T) { checkLatest(t, b.running, repo, img.index) })
	t.Run("referrers", func(t *testing.T) { checkReferrers(t, b.running, id, repo, img.index, sig) })
	t.Run("signature verifies", func(t *testing.T) { checkSignature(t, c, b.running, repo, img.index, sig) })
	t.Run("cosign CLI", func(t *testing.T) {
		checkCosignCLI(t, ref(t, b.running, installerRepoForTest, id, img.index).String(), b.do(t, "GET",
			"/oci/cosign/signing-key.pub", "", nil).Body)
	})
	t.Run("cold pull storm builds once per architecture", func(t *testing.T) { checkColdStorm(t, c) })
}

func checkManifestsByDigest(t *testing.T, r *running, repo string, byTag response, img installerImage) {
	resp := r.do(t, "GET", repo+"/manifests/"+img.index, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	assert.Equal(t, byTag.Body, resp.Body, "the tag and the digest name the same index")
	assert.Equal(t, "application/vnd.oci.image.index.v1+json", resp.Header.Get("Content-Type"))
	assert.Equal(t, img.index, resp.Header.Get("Docker-Content-Digest"))
	assert.Equal(t, img.index, "sha256:"+sha256Hex(resp.Body))

	for arch, d := range img.manifests {
		resp := r.do(t, "GET", repo+"/manifests/"+d, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, arch)
		assert.Equal(t, d, "sha256:"+sha256Hex(resp.Body), arch)
		assert.Equal(t, string(types.DockerManifestSchema2), resp.Header.Get("Content-Type"), arch)
	}
}

func checkHead(t *testing.T, r *running, repo string, img installerImage) {
	get := r.do(t, "GET", repo+"/manifests/v1.13.0", "", nil)

	for _, ref := range []string{"v1.13.0", img.index} {
		resp := r.do(t, "HEAD", repo+"/manifests/"+ref, "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, ref)
		assert.Empty(t, resp.Body, ref)
		assert.Equal(t, img.index, resp.Header.Get("Docker-Content-Digest"), ref)
		assert.Equal(t, strconv.Itoa(len(get.Body)), resp.Header.Get("Content-Length"), ref)
		assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"), ref)
	}

	for _, d := range img.blobs[1:] {
		full := r.do(t, "GET", repo+"/blobs/"+d, "", nil)
		resp := r.do(t, "HEAD", repo+"/blobs/"+d, "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, d)
		assert.Empty(t, resp.Body, d)
		assert.Equal(t, d, resp.Header.Get("Docker-Content-Digest"), d)
		assert.Equal(t, strconv.Itoa(len(full.Body)), resp.Header.Get("Content-Length"), d)
	}
}

func checkBlobRange(t *testing.T, r *running, repo, digest string) {
	full := r.do(t, "GET", repo+"/blobs/"+digest, "", nil)
	require.Equal(t, http.StatusOK, full.StatusCode)
	require.Equal(t, digest, "sha256:"+sha256Hex(full.Body))
	require.Greater(t, len(full.Body), 8192)
	assert.Equal(t, "bytes", full.Header.Get("Accept-Ranges"))

	for _, rng := range [][2]int{{0, 0}, {100, 4195}, {len(full.Body) - 512, len(full.Body) - 1}} {
		resp := r.do(t, "GET", repo+"/blobs/"+digest, "", map[string]string{
			"Range": fmt.Sprintf("bytes=%d-%d", rng[0], rng[1]),
		})
		require.Equal(t, http.StatusPartialContent, resp.StatusCode)
		assert.Equal(t, full.Body[rng[0]:rng[1]+1], resp.Body, "206 body byte for byte")
		assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", rng[0], rng[1], len(full.Body)), resp.Header.Get("Content-Range"))
	}

	beyond := r.do(t, "GET", repo+"/blobs/"+digest, "", map[string]string{
		"Range": fmt.Sprintf("bytes=%d-", len(full.Body)+1),
	})
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, beyond.StatusCode)
}

func checkLatest(t *testing.T, r *running, repo, index string) {
	versions := r.do(t, "GET", "/versions", "", nil)
	require.Contains(t, versions.Body, prereleaseForLatest, "the pre-release is listed, so latest must skip it")

	resp := r.do(t, "GET", repo+"/manifests/latest", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	assert.Equal(t, index, resp.Header.Get("Docker-Content-Digest"), "latest is v1.13.0, not the pre-release")
}

// checkBlobsListed fetches every blob from a node that holds none of them: it serves a blob it lacks only when
// the replicated asset index lists it, so each answer proves the listing. The first request is a Range request,
// answered while the node's own copy is still arriving.
func checkBlobsListed(t *testing.T, r *running, repo string, blobs []string) {
	slices.Sort(blobs)
	blobs = slices.Compact(blobs)

	for _, d := range blobs {
		require.False(t, r.HasBlob(d), "%s is not on this node yet", d)
	}

	partial := r.do(t, "GET", repo+"/blobs/"+blobs[0], "", map[string]string{"Range": "bytes=1-"})
	require.Equal(t, http.StatusPartialContent, partial.StatusCode, partial.Body)

	for _, d := range blobs {
		resp := r.do(t, "GET", repo+"/blobs/"+d, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", d, resp.Body)
		assert.Equal(t, d, "sha256:"+sha256Hex(resp.Body))
		assert.Equal(t, d, resp.Header.Get("Docker-Content-Digest"))

		if d == blobs[0] {
			assert.Equal(t, resp.Body[1:], partial.Body)
		}
	}
}

// checkColdStorm: 50 concurrent cold pulls (index and both image manifests) of a new installer, round-robin over
// the nodes, get the same index everywhere and cause one build per architecture cluster-wide.
func checkColdStorm(t *testing.T, c *cluster) {
	nodes := c.live()
	id := nodes[0].createSchematic(t, `customization: {extraKernelArgs: [oci-storm]}`)

	before := 0.0
	for _, m := range nodes {
		before += installerBuilds(t, m.running)
	}

	const pulls = 50

	var (
		wg      sync.WaitGroup
		start   sync.WaitGroup
		mu      sync.Mutex
		digests = map[string]int{}
		errs    []error
	)

	start.Add(1)

	for i := range pulls {
		r := ref(t, nodes[i%len(nodes)].running, installerRepoForTest, id, "v1.13.0")

		wg.Go(func() {
			start.Wait()

			d, err := coldPull(r)

			mu.Lock()
			defer mu.Unlock()

			if err != nil {
				errs = append(errs, fmt.Errorf("pull %d from %s: %w", i, r.Context().RegistryStr(), err))
			}

			digests[d]++
		})
	}

	start.Done()
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	assert.Len(t, digests, 1, "every client got the same index: %v", digests)

	after := 0.0
	for _, m := range nodes {
		after += installerBuilds(t, m.running)
	}

	assert.Equal(t, 2.0, after-before, "one installer build per architecture cluster-wide")
}

// coldPull fetches an index and the manifests and configs of its images.
func coldPull(r name.Reference) (string, error) {
	idx, err := remote.Index(r)
	if err != nil {
		return "", err
	}

	d, err := idx.Digest()
	if err != nil {
		return "", err
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}

	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return "", err
		}

		if _, err := img.ConfigFile(); err != nil {
			return "", err
		}
	}

	return d.String(), nil
}
