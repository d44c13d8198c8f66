package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
	"github.com/edgefactory/edgefactory/node"
)

// talosctlURLs is the listing a node at base gives for the synthetic release's version, asked as asked.
func talosctlURLs(base, asked string) string {
	urls := make([]string, 0, len(synthetic.TalosctlFiles))
	for _, f := range synthetic.TalosctlFiles { // sorted
		urls = append(urls, base+"/talosctl/"+asked+"/"+f)
	}

	data, _ := json.Marshal(urls) // strings

	return string(data) + "\n"
}

// waitTalosctl waits until a node lists the talosctl binaries of version (the leader reads talosctl-all images
// after the rest of the catalog) and returns the listing.
func waitTalosctl(t testing.TB, r *running, version string) string {
	t.Helper()

	var last response

	require.Eventually(t, func() bool {
		last = r.do(t, "GET", "/talosctl/"+version, "", nil)

		return last.StatusCode == http.StatusOK && last.Body != "[]\n"
	}, 20*time.Second, 20*time.Millisecond, "no talosctl listing: %d %s", last.StatusCode, last.Body)

	return last.Body
}

// metricWith sums a metric's samples whose labels contain labels (e.g. `kind="talosctl"`).
func (r *running) metricWith(t testing.TB, name, labels string) float64 {
	t.Helper()

	total := 0.0

	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`\{([^}]*)\} (\S+)$`).FindAllStringSubmatch(
		r.do(t, "GET", "/metrics", "", nil).Body, -1) {
		if strings.Contains(m[1], labels) {
			v, err := strconv.ParseFloat(m[2], 64)
			require.NoError(t, err)

			total += v
		}
	}

	return total
}

// TestTalosctlListing: GET /talosctl/{version} lists absolute download URLs, sorted, with the version as asked
// (parsed tolerantly); [] for a known version before talosctl downloads; 404 for an unknown version, old or new;
// 400 for what is no version at all.
func TestTalosctlListing(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts(), Versions: []string{"v1.10.0", "v1.13.0"}})
	n := startReady(t, testConfig(t, t.TempDir(), srv.Addr))

	require.Equal(t, talosctlURLs(n.URL(), "v1.13.0"), waitTalosctl(t, n, "v1.13.0"))

	for _, tc := range []struct {
		asked, status, body string
	}{
		{"1.13.0", "200", talosctlURLs(n.URL(), "v1.13.0")},
		{"v1.13", "200", talosctlURLs(n.URL(), "v1.13")},
		{"v1.10.0", "200", "[]\n"},
		{"v1.99.0", "404", "version 1.99.0 is not available\n"},
		{"v1.9.0", "404", "version 1.9.0 is not available\n"},
		{"latest", "400", `invalid Talos version "latest"`},
	} {
		resp := n.do(t, "GET", "/talosctl/"+tc.asked, "", nil)
		assert.Equal(t, tc.status, strconv.Itoa(resp.StatusCode), tc.asked)
		assert.True(t, strings.HasPrefix(resp.Body, tc.body), "%s: %q", tc.asked, resp.Body)

		if resp.StatusCode == http.StatusOK {
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), tc.asked)
		}
	}
}

// TestTalosctlDownload: every listed URL downloads the file of the talosctl-all image (bytes, sha256, length,
// attachment name, Range, HEAD); each is copied out of the image once, then served from the store; an unknown file
// is a 404 naming it, a version without talosctl-all the official 404.
func TestTalosctlDownload(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts(), Versions: []string{"v1.10.0", "v1.13.0"}})
	n := startReady(t, testConfig(t, t.TempDir(), srv.Addr))

	var urls []string
	require.NoError(t, json.Unmarshal([]byte(waitTalosctl(t, n, "v1.13")), &urls))

	for _, u := range urls {
		file := u[strings.LastIndex(u, "/")+1:]
		want := string(synthetic.TalosctlContent("v1.13.0", file))
		sum := sha256.Sum256([]byte(want))

		resp := n.do(t, "GET", strings.TrimPrefix(u, n.URL()), "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", u, resp.Body)
		assert.Equal(t, want, resp.Body, file)
		assert.Equal(t, hex.EncodeToString(sum[:]), resp.Header.Get("X-Content-Sha256"), file)
		assert.Equal(t, `"sha256:`+hex.EncodeToString(sum[:])+`"`, resp.Header.Get("ETag"), file)
		assert.Equal(t, strconv.Itoa(len(want)), resp.Header.Get("Content-Length"), file)
		assert.Equal(t, `attachment; filename="`+file+`"`, resp.Header.Get("Content-Disposition"), file)
		assert.NotEmpty(t, resp.Header.Get("Content-Type"), file)
	}

	assert.InDelta(t, float64(len(synthetic.TalosctlFiles)), n.metricWith(t, "edgefactory_builds_total", `kind="talosctl"`), 0)

	const path = "/talosctl/v1.13.0/talosctl-linux-amd64"

	want := string(synthetic.TalosctlContent("v1.13.0", "talosctl-linux-amd64"))

	resp := n.do(t, "GET", path, "", map[string]string{"Range": "bytes=10-19"})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, want[10:20], resp.Body)

	resp = n.do(t, "HEAD", path, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Body)
	assert.Equal(t, strconv.Itoa(len(want)), resp.Header.Get("Content-Length"))
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))

	resp = n.do(t, "GET", path, "", map[string]string{"If-None-Match": `"sha256:` + sha256Hex(want) + `"`})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)

	assert.InDelta(t, float64(len(synthetic.TalosctlFiles)), n.metricWith(t, "edgefactory_builds_total", `kind="talosctl"`), 0,
		"served from the store")

	for _, tc := range []struct{ path, status, body string }{
		{"/talosctl/v1.13.0/talosctl-plan9-amd64", "404",
			`talosctl file "talosctl-plan9-amd64" is not available for version 1.13.0 (available: talosctl-darwin-amd64, `},
		{"/talosctl/v1.13.0/..", "404", ""}, // the router's answer: a path that names no route
		{"/talosctl/v1.10.0/talosctl-linux-amd64", "404", "version 1.10.0 is not available\n"},
		{"/talosctl/v1.99.0/talosctl-linux-amd64", "404", "version 1.99.0 is not available\n"},
		{"/talosctl/latest/talosctl-linux-amd64", "400", `invalid Talos version "latest"`},
	} {
		resp := n.do(t, "GET", tc.path, "", nil)
		assert.Equal(t, tc.status, strconv.Itoa(resp.StatusCode), tc.path)
		assert.True(t, strings.HasPrefix(resp.Body, tc.body), "%s: %q", tc.path, resp.Body)
	}

	// The image itself is a source image of the node's registry, as the official /v2/siderolabs/talosctl-all.
	vi, ok := srv.Manifest.Version("v1.13.0")
	require.True(t, ok)

	ref, err := name.ParseReference(strings.TrimPrefix(n.base, "http://")+"/siderolabs/talosctl-all:v1.13.0", name.Insecure)
	require.NoError(t, err)

	idx, err := remote.Index(ref)
	require.NoError(t, err)

	got, err := idx.Digest()
	require.NoError(t, err)
	assert.Equal(t, vi.Talosctl.Digest, got.String())
}

// TestTalosctlMirrorWithout: a registry without talosctl-all (a mirror that did not copy it) costs the version
// nothing else: its extensions are served, its talosctl listing is empty and a download is the official 404.
func TestTalosctlMirrorWithout(t *testing.T) {
	reg := upstream(t)
	mirror := startRegistryProxy(t, reg, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/talosctl-all/") {
			return false
		}

		answerRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known")

		return true
	})

	n := startReady(t, testConfig(t, t.TempDir(), mirror.addr))

	require.Eventually(t, func() bool {
		return n.do(t, "GET", "/talosctl/v1.13.0", "", nil).Body == "[]\n"
	}, 20*time.Second, 20*time.Millisecond)

	resp := n.do(t, "GET", "/version/v1.13.0/extensions/official", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Body, "siderolabs/amd-ucode")

	resp = n.do(t, "GET", "/talosctl/v1.13.0/talosctl-linux-amd64", "", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "version 1.13.0 is not available\n", resp.Body)
}

// TestTalosctlCluster: in a cluster of three, followers list talosctl binaries from the replicated catalog with no
// upstream traffic; a binary is copied out of talosctl-all once, by the owner of its key, whichever member is asked;
// a member that holds no copy streams it from a holder and keeps a verified copy.
func TestTalosctlCluster(t *testing.T) {
	reg := upstream(t)

	logs := make([]*registryProxy, 3)
	for i := range logs {
		logs[i] = startRegistryProxy(t, reg, nil)
	}

	c := startCluster(t, reg, 3, func(i int, cfg *node.Config) { cfg.Upstream.Registry = logs[i].addr })
	leader := c.leader(t)

	for _, m := range c.all() {
		require.Equal(t, talosctlURLs(m.URL(), "v1.13.0"), waitTalosctl(t, m.running, "v1.13.0"), m.name)

		if m.name != leader.name {
			assert.Zero(t, logs[m.index].count("/talosctl-all/"), "%s: a follower lists without upstream traffic", m.name)
		}
	}

	assert.Positive(t, logs[leader.index].count("/talosctl-all/"), "the leader read talosctl-all")

	const file = "talosctl-linux-arm64"

	want := string(synthetic.TalosctlContent("v1.13.0", file))
	wantDigest := "sha256:" + sha256Hex(want)

	key, err := leader.TalosctlKey("v1.13.0", file)
	require.NoError(t, err)

	holders := leader.Holders(key, 2)
	owner := c.byName(t, holders[0])
	asker := c.other(t, holders...)

	// The leader reads every version's talosctl-all: wait until it has done with all of them, so that the blob
	// requests counted below are the copy's alone.
	waitTalosctl(t, leader.running, "v1.12.0")

	before := make([]int, 3)
	for i, l := range logs {
		before[i] = l.count("/blobs/")
	}

	resp := asker.do(t, "GET", "/talosctl/v1.13.0/"+file, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	assert.Equal(t, want, resp.Body)
	assert.Equal(t, sha256Hex(want), resp.Header.Get("X-Content-Sha256"))

	var (
		digest, builder string
		ok              bool
	)

	require.Eventually(t, func() bool {
		digest, builder, ok = asker.AssetRecord(key)

		return ok
	}, 10*time.Second, 20*time.Millisecond, "the index records the binary")
	assert.Equal(t, wantDigest, digest)
	assert.Equal(t, owner.name, builder, "copied out of the image by the key's owner")

	for i, l := range logs {
		if c.all()[i].name != owner.name {
			assert.Equal(t, before[i], l.count("/blobs/"), "%s pulled nothing", c.all()[i].name)
		}
	}

	require.Eventually(t, func() bool { return asker.HasBlob(wantDigest) }, 10*time.Second, 20*time.Millisecond,
		"the asker keeps a verified copy")

	for _, m := range c.all() {
		resp := m.do(t, "GET", "/talosctl/v1.13/"+file, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", m.name, resp.Body)
		assert.Equal(t, want, resp.Body, m.name)
	}

	total := 0.0
	for _, m := range c.all() {
		total += m.metricWith(t, "edgefactory_builds_total", `kind="talosctl"`)
	}

	assert.InDelta(t, 1.0, total, 0, "one copy out of the image, cluster-wide")
}
