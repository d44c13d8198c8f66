package node_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends/settings"
	"github.com/edgefactory/edgefactory/node"
)

const opsToken = "0123456789abcdef0123456789abcdef"

// TestClusterSettings: the cluster settings change on any member, take effect on every member (the catalog policy
// included: a version declared broken leaves every member's catalog), refuse bad values naming them, and outlive
// the leader: a new leader follows the cluster's settings, not its own flags.
func TestClusterSettings(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("# operators\nops:"+opsToken+"\n"), 0o600))
	c := startCluster(t, upstream(t), 3, func(_ int, cfg *node.Config) {
		cfg.CatalogRefresh = time.Hour
		cfg.APITokenFile = tokens
	})
	ops := map[string]string{"Authorization": "Bearer " + opsToken}
	leader := c.steadyLeader(t)
	follower := c.other(t, leader.name)

	get := func(m *member) settings.Settings {
		t.Helper()

		resp := m.do(t, "GET", "/cluster/settings", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		var s settings.Settings
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &s))

		return s
	}
	versions := func(m *member) string { return m.do(t, "GET", "/versions", "", nil).Body }

	initial := get(follower)
	assert.Equal(t, settings.Settings{MinVersion: "1.2.0", BrokenVersions: []string{}, Replicas: 2,
		CatalogInterval: "1h0m0s"}, initial, "a new cluster starts with the members' flags")
	require.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", versions(follower))

	for body, want := range map[string]string{
		`{"replicas":0}`:                    "replicas: 0 is out of range 1..64",
		`{"bogus":1}`:                       "bogus: unknown setting",
		`{"brokenVersions":["one"]}`:        `brokenVersions: "one" is not a version`,
		`{"catalogInterval":"1s"}`:          "catalogInterval: 1s is out of range",
		`{"cacheBudget":"lots"}`:            `cacheBudget: "lots" is not a size`,
		`{"changedBy":"me"}`:                "changedBy: is recorded by the cluster",
		`{}`:                                "no setting to change",
		`replicas: 3`:                       "want a JSON object",
		`{"minVersion":"1.x","replicas":2}`: `minVersion: "1.x" is not a version`,
	} {
		resp := follower.do(t, "PUT", "/cluster/settings", body, ops)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, resp.Body, want, body)
	}

	assert.Equal(t, initial, get(leader), "a refused change changes nothing")

	change := `{"brokenVersions":"v1.12.0","replicas":"3","cacheBudget":"1GiB"}`
	for _, header := range []map[string]string{nil, {"Authorization": "Bearer not-the-token-at-all"}} {
		resp := follower.do(t, "PUT", "/cluster/settings", change, header)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "settings change without valid credentials")
	}

	assert.Equal(t, 2.0, follower.metric(t, "edgefactory_api_refused_total"), "refusals are counted")

	resp := follower.do(t, "PUT", "/cluster/settings", change, ops)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	var changed settings.Settings
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &changed))
	assert.Equal(t, []string{"v1.12.0"}, changed.BrokenVersions)
	assert.Equal(t, 3, changed.Replicas)
	assert.Equal(t, int64(1<<30), changed.CacheBudget)
	assert.Equal(t, "1.2.0", changed.MinVersion, "settings the change does not name keep their values")
	assert.Equal(t, "ops", changed.ChangedBy, "the change records who made it")
	require.NotNil(t, changed.ChangedAt)
	assert.Equal(t, changed, get(follower), "the member that took the change reads it back at once")

	for _, m := range c.live() {
		require.Eventually(t, func() bool { return assert.ObjectsAreEqual(changed, get(m)) }, 10*time.Second,
			50*time.Millisecond, "%s holds the change", m.name)
		require.Eventually(t, func() bool { return versions(m) == `["v1.13.0"]`+"\n" }, 20*time.Second,
			50*time.Millisecond, "the broken version left %s's catalog", m.name)
		require.Eventually(t, func() bool {
			return m.do(t, "GET", "/versions?broken=true", "", nil).Body == `["v1.12.0"]`+"\n"
		}, 10*time.Second, 50*time.Millisecond, "%s lists the broken version", m.name)
		// GET answers with the cluster's settings at once (a linearizable read); each member puts them in force
		// at its next read of its replica, twice a second.
		require.Eventually(t, func() bool { return c.status(t, m).Ring.Replicas == 3 }, 10*time.Second,
			50*time.Millisecond, "%s places assets on 3 members", m.name)
		require.Eventually(t, func() bool { return c.status(t, m).Cache.BudgetBytes == 1<<30 }, 10*time.Second,
			50*time.Millisecond, "%s keeps its cache within the cluster's budget", m.name)
	}

	// The leader goes; the new one runs a catalog round under the cluster's settings, not its own flags.
	c.stop(leader)
	next := c.steadyLeader(t)
	require.Eventually(t, func() bool { return next.metric(t, "edgefactory_catalog_syncs_total") >= 1 },
		20*time.Second, 50*time.Millisecond)

	for _, m := range c.live() {
		assert.Equal(t, changed, get(m), "%s keeps the settings after the leader change", m.name)
		assert.Equal(t, `["v1.13.0"]`+"\n", versions(m), "%s still hides the broken version", m.name)
	}

	// A change through a survivor unbreaks the version: the new leader reads it back into every catalog.
	resp = c.other(t, next.name).do(t, "PUT", "/cluster/settings", `{"brokenVersions":[]}`, ops)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	for _, m := range c.live() {
		require.Eventually(t, func() bool { return versions(m) == `["v1.12.0","v1.13.0"]`+"\n" }, 20*time.Second,
			50*time.Millisecond, "%s serves the version again", m.name)
	}
}
