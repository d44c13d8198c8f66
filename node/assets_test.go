package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// realUpstream starts a registry holding the synthetic release built from real parts (Debian kernel, busybox,
// systemd-boot 257), which asset builds need; without them (no `make deps`) the test is skipped.
func realUpstream(t testing.TB) string {
	t.Helper()

	if testing.Short() {
		t.Skip("builds boot assets; skipped with -short")
	}

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), testLogger(t))
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("synthetic release parts missing (%v): run `make deps`", parts.Missing())
	}

	if os.Getenv("EDGEFACTORY_MKSQUASHFS") == "" {
		t.Setenv("EDGEFACTORY_MKSQUASHFS", repoFile(t, "build/hosttools/squashfs-tools/usr/bin/mksquashfs"))
	}

	return synthetictest.StartRegistry(t, synthetic.Options{Parts: parts})
}

// createSchematic posts a schematic and returns its ID.
func (r *running) createSchematic(t testing.TB, body string) string {
	t.Helper()

	resp := r.do(t, "POST", "/schematics", body, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)

	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &created))

	return created.ID
}

// metric reads one counter or gauge (summing matching series) from /metrics.
func (r *running) metric(t testing.TB, name string) float64 {
	t.Helper()

	body := r.do(t, "GET", "/metrics", "", nil).Body
	total := 0.0

	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(\{[^}]*\})? (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)

		total += v
	}

	return total
}

func sha256Hex(b string) string {
	sum := sha256.Sum256([]byte(b))

	return hex.EncodeToString(sum[:])
}

// TestImageServing checks the download protocol on a real asset: validators, Range, If-Range, If-None-Match,
// HEAD, the .sha256 file, ?filename= and alias paths.
func TestImageServing(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	id := n.createSchematic(t, `customization: {}`)
	base := "/image/" + id + "/v1.13.0/"

	full := n.do(t, "GET", base+"kernel-amd64", "", nil)
	require.Equal(t, http.StatusOK, full.StatusCode, full.Body)

	digest := sha256Hex(full.Body)
	etag := `"sha256:` + digest + `"`

	t.Run("headers", func(t *testing.T) {
		h := full.Header
		assert.Equal(t, "application/octet-stream", h.Get("Content-Type"))
		assert.Equal(t, `attachment; filename="kernel-amd64"`, h.Get("Content-Disposition"))
		assert.Equal(t, etag, h.Get("ETag"))
		assert.Equal(t, digest, h.Get("X-Content-Sha256"))
		assert.Equal(t, "bytes", h.Get("Accept-Ranges"))
		assert.Equal(t, strconv.Itoa(len(full.Body)), h.Get("Content-Length"))
		assert.Empty(t, h.Get("Last-Modified"))
	})

	t.Run("range", func(t *testing.T) {
		for _, rng := range [][2]int{{0, 0}, {100, 4195}, {len(full.Body) - 512, len(full.Body) - 1}} {
			resp := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", rng[0], rng[1])})
			require.Equal(t, http.StatusPartialContent, resp.StatusCode)
			assert.Equal(t, full.Body[rng[0]:rng[1]+1], resp.Body, "206 body byte for byte")
			assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", rng[0], rng[1], len(full.Body)), resp.Header.Get("Content-Range"))
		}

		resume := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"Range": "bytes=1000-"})
		assert.Equal(t, full.Body[1000:], resume.Body)

		bad := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full.Body)+10)})
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, bad.StatusCode)
	})

	t.Run("if-range", func(t *testing.T) {
		same := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"Range": "bytes=0-9", "If-Range": etag})
		assert.Equal(t, http.StatusPartialContent, same.StatusCode)

		changed := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"Range": "bytes=0-9", "If-Range": `"sha256:0000"`})
		assert.Equal(t, http.StatusOK, changed.StatusCode, "a stale validator gets the whole asset")
		assert.Len(t, changed.Body, len(full.Body))
	})

	t.Run("if-none-match", func(t *testing.T) {
		resp := n.do(t, "GET", base+"kernel-amd64", "", map[string]string{"If-None-Match": etag})
		assert.Equal(t, http.StatusNotModified, resp.StatusCode)
		assert.Empty(t, resp.Body)
	})

	t.Run("head", func(t *testing.T) {
		resp := n.do(t, "HEAD", base+"kernel-amd64", "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Body)
		assert.Equal(t, etag, resp.Header.Get("ETag"))
		assert.Equal(t, strconv.Itoa(len(full.Body)), resp.Header.Get("Content-Length"))
	})

	t.Run("checksum file", func(t *testing.T) {
		resp := n.do(t, "GET", base+"kernel-amd64.sha256", "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, digest+"  kernel-amd64\n", resp.Body)
	})

	t.Run("filename override and aliases", func(t *testing.T) {
		resp := n.do(t, "HEAD", base+"kernel-x86_64?filename=vmlinuz", "", nil)
		assert.Equal(t, `attachment; filename="vmlinuz"`, resp.Header.Get("Content-Disposition"))
		assert.Equal(t, etag, resp.Header.Get("ETag"), "x86_64 is amd64: the same asset")

		alias := n.do(t, "HEAD", base+"kernel-x86_64", "", nil)
		assert.Equal(t, `attachment; filename="kernel-x86_64"`, alias.Header.Get("Content-Disposition"),
			"named as requested, not by the normalised path")
		assert.Equal(t, etag, alias.Header.Get("ETag"))
	})

	t.Run("content types", func(t *testing.T) {
		for path, want := range map[string]string{
			"initramfs-amd64.xz":  "application/x-xz",
			"metal-amd64-uki.efi": "application/efi",
			"cmdline-metal-amd64": "application/octet-stream",
		} {
			resp := n.do(t, "HEAD", base+path, "", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, path)
			assert.Equal(t, want, resp.Header.Get("Content-Type"), path)
		}
	})
}

// TestImageErrors: every bad request gets its documented status and body (docs/api.md §1.1, §1.3): the path's and the
// schematic's errors keep the official service's step prefixes, the steps run in its order (schematic, version
// syntax, path, version availability), and the Enterprise-only suffixes are refused before anything is looked up.
func TestImageErrors(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	id := n.createSchematic(t, `customization: {systemExtensions: {officialExtensions: [siderolabs/nope]}}`)

	const badVersion = `invalid Talos version "v1.7": No Major.Minor.Patch elements found ` +
		`(expected vMAJOR.MINOR.PATCH, e.g. v1.13.0)` + "\n"

	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/image/aaaaaaaaaaaa/v1.13.0/kernel-amd64", 404, `schematic ID "aaaaaaaaaaaa" not found` + "\n"},
		{"/image/" + strings.Repeat("e", 64) + "/v1.13.0/kernel-amd64", 404,
			`schematic ID "` + strings.Repeat("e", 64) + `" not found` + "\n"},
		{"/image/aaaaaaaaaaaa/v1.99.0/kernel-foo", 404, `schematic ID "aaaaaaaaaaaa" not found` + "\n"},
		{"/image/" + id + "/v1.99.0/kernel-amd64", 404, "version 1.99.0 is not available\n"},
		{"/image/" + id + "/v1.7/kernel-amd64", 400, badVersion},
		{"/image/" + id + "/v1.7/kernel-foo", 400, badVersion},
		{"/image/" + id + "/v1.13.0/kernel-foo", 400,
			`error parsing profile from path: invalid architecture: "foo"` + "\n"},
		{"/image/" + id + "/v1.99.0/kernel-foo", 400,
			`error parsing profile from path: invalid architecture: "foo"` + "\n"},
		{"/image/" + id + "/v1.13.0/metal-amd64.ssd", 400,
			`error parsing profile from path: invalid profile path: "metal-amd64.ssd"` + "\n"},
		{"/image/" + id + "/v1.13.0/metal-amd64.ssd.xz", 400,
			`error parsing profile from path: invalid profile path: "metal-amd64.ssd"` + "\n"},
		{"/image/" + id + "/v1.13.0/mars-amd64.iso", 400,
			`error parsing profile from path: unknown platform: "mars"` + "\n"},
		{"/image/" + id + "/v1.13.0/initramfs-amd64.xz", 400, `error enhancing profile from schematic: ` +
			`official extension "siderolabs/nope" is not available for Talos version v1.13.0` + "\n"},
		{"/image/aaaaaaaaaaaa/v1.13.0/kernel-amd64.sha512", 402,
			"enterprise not enabled: checksum endpoint is not available\n"},
		{"/image/" + id + "/v1.99.0/metal-amd64.ssd.sha512", 402,
			"enterprise not enabled: checksum endpoint is not available\n"},
		{"/image/aaaaaaaaaaaa/v1.13.0/kernel-amd64.sigstore.json", 402,
			"enterprise signing is not enabled: signature endpoint is not available\n"},
		{"/pxe/" + id + "/v1.13.0/metal", 400, `error parsing profile from path: invalid platform-arch: "metal"` + "\n"},
		{"/pxe/" + id + "/v1.99.0/metal-foo", 400,
			`error parsing profile from path: invalid architecture: "foo"` + "\n"},
		{"/pxe/" + id + "/v1.99.0/metal-amd64", 404, "version 1.99.0 is not available\n"},
		{"/pxe/aaaaaaaaaaaa/v1.13.0/metal-amd64", 404, `schematic ID "aaaaaaaaaaaa" not found` + "\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := n.do(t, "GET", tc.path, "", nil)
			assert.Equal(t, tc.status, resp.StatusCode, resp.Body)
			assert.Equal(t, tc.body, resp.Body)
			assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		})
	}

	t.Run("an unknown extension does not matter for the kernel and the command line", func(t *testing.T) {
		for _, path := range []string{"kernel-amd64", "cmdline-metal-amd64"} {
			resp := n.do(t, "HEAD", "/image/"+id+"/v1.13.0/"+path, "", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		}
	})
}

// TestBuildOnce: a storm of concurrent requests for one uncached asset causes exactly one build, everyone gets the
// same bytes, and a restarted node serves the asset from disk without building again.
func TestBuildOnce(t *testing.T) {
	dir := t.TempDir()
	reg := realUpstream(t)
	n := startReady(t, testConfig(t, dir, reg))
	id := n.createSchematic(t, `customization: {systemExtensions: {officialExtensions: [siderolabs/hello-world-service]}}`)
	path := "/image/" + id + "/v1.13.0/initramfs-amd64.xz"

	const clients = 20

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		bodies = map[string]int{}
	)

	for range clients {
		wg.Go(func() {
			resp := n.do(t, "GET", path, "", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			mu.Lock()
			bodies[sha256Hex(resp.Body)]++
			mu.Unlock()
		})
	}

	wg.Wait()
	require.Len(t, bodies, 1, "every client received identical bytes")
	require.True(t, waitFor(time.Minute, func() bool { return n.Status().Builds.Running == 0 }), "still building")
	assert.Equal(t, 1.0, n.metric(t, "edgefactory_build_starts_total"), "exactly one build begun")
	assert.Zero(t, n.metric(t, "edgefactory_build_conflicts_total"), "a second build lost to the first")

	n.stop()

	again := startReady(t, testConfig(t, dir, reg))
	resp := again.do(t, "GET", path, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, bodies, sha256Hex(resp.Body))
	assert.Equal(t, 0.0, again.metric(t, "edgefactory_build_starts_total"), "served after restart without rebuilding")
	assert.Equal(t, 1.0, again.metric(t, "edgefactory_cache_hits_total"))
}

// TestFailedBuildHeld: a build that failed answers the requests for the same recipe that follow with its error for
// a while (saying so) instead of building, and pulling from upstream, once per request; after that it is tried again.
func TestFailedBuildHeld(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t))) // stand-in parts: the imager's UKI stub is refused
	path := "/image/" + n.createSchematic(t, `customization: {extraKernelArgs: [held]}`) + "/v1.13.0/kernel-amd64"

	first := n.do(t, "GET", path, "", nil)
	require.Equal(t, http.StatusInternalServerError, first.StatusCode, first.Body)
	require.Contains(t, first.Body, "UKI stub")
	require.Equal(t, 1.0, n.metric(t, "edgefactory_builds_total"))

	for range 3 {
		again := n.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusInternalServerError, again.StatusCode)
		require.Contains(t, again.Body, "UKI stub", "the same error")
		require.Contains(t, again.Body, "this build failed", "saying it is the earlier build's")
	}

	require.Equal(t, 1.0, n.metric(t, "edgefactory_builds_total"), "no build while the failure is held")

	require.Eventually(t, func() bool {
		n.do(t, "GET", path, "", nil)

		return n.metric(t, "edgefactory_builds_total") == 2
	}, 20*time.Second, 500*time.Millisecond, "built again once the failure is no longer held")
}
