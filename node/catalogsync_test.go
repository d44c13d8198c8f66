package node_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCatalogKeepsVersionsTheListingLeavesOut: a registry that lists fewer Talos versions than it serves (a mirror
// being synced or garbage-collected, a pull-through cache listing only what it has cached) must not make the
// factory forget versions that machines boot from; a version is removed once the registry, asked for it, says it
// is gone.
func TestCatalogKeepsVersionsTheListingLeavesOut(t *testing.T) {
	mirror := newListingMirror(t, upstream(t))
	cfg := testConfig(t, t.TempDir(), mirror.addr)
	cfg.CatalogRefresh = 200 * time.Millisecond
	n := startReady(t, cfg)

	versions := func() string { return n.do(t, "GET", "/versions", "", nil).Body }
	rounds := func(k int) { // waits until the leader has synced k more times
		t.Helper()

		before := n.metric(t, "edgefactory_catalog_syncs_total")
		require.Eventually(t, func() bool { return n.metric(t, "edgefactory_catalog_syncs_total") >= before+float64(k) },
			20*time.Second, 20*time.Millisecond)
	}

	require.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", versions())

	mirror.list([]string{})
	rounds(3)
	assert.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", versions(), "an empty listing removes nothing")

	mirror.list([]string{"v1.13.0"})
	rounds(3)
	assert.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", versions(), "a version left out of the listing but served is kept")

	mirror.remove("v1.12.0")
	require.Eventually(t, func() bool { return versions() == `["v1.13.0"]`+"\n" }, 20*time.Second,
		20*time.Millisecond, "a version the registry no longer has is removed")
}

// listingMirror is a registry in front of another that can list fewer imager tags than it serves, and forget tags.
type listingMirror struct {
	*registryProxy

	mu      sync.Mutex
	listed  []string // nil: list what the registry behind has
	removed []string
}

func newListingMirror(t testing.TB, registry string) *listingMirror {
	t.Helper()

	m := &listingMirror{}
	m.registryProxy = startRegistryProxy(t, registry, func(w http.ResponseWriter, r *http.Request) bool {
		m.mu.Lock()
		listed, removed := m.listed, slices.Clone(m.removed)
		m.mu.Unlock()

		const imager = "/v2/siderolabs/imager/"

		switch {
		case r.URL.Path == imager+"tags/list" && listed != nil:
			w.Header().Set("Content-Type", "application/json")
			body := map[string]any{"name": "siderolabs/imager", "tags": listed}
			json.NewEncoder(w).Encode(body) //nolint:errcheck // test server: a failed write is the client's to see
		case strings.HasPrefix(r.URL.Path, imager+"manifests/") &&
			slices.Contains(removed, strings.TrimPrefix(r.URL.Path, imager+"manifests/")):
			answerRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		default:
			return false
		}

		return true
	})

	return m
}

func (m *listingMirror) list(tags []string) {
	m.mu.Lock()
	m.listed = tags
	m.mu.Unlock()
}

func (m *listingMirror) remove(tag string) {
	m.mu.Lock()
	m.removed = append(m.removed, tag)
	m.mu.Unlock()
}

// restore serves a removed tag again.
func (m *listingMirror) restore(tag string) {
	m.mu.Lock()
	m.removed = slices.DeleteFunc(m.removed, func(r string) bool { return r == tag })
	m.mu.Unlock()
}
