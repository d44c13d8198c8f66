package node_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// assetStatus asks m for the status of an asset.
func (r *running) assetStatus(t testing.TB, schematic, version, path string) (node.AssetStatus, response) {
	t.Helper()

	q := url.Values{"schematic": {schematic}, "version": {version}, "path": {path}}
	resp := r.do(t, "GET", "/ui/api/asset-status?"+q.Encode(), "", nil)

	var st node.AssetStatus
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &st), resp.Body)
	}

	return st, resp
}

// stageOrder is the order a build goes through its stages (docs/api.md §9.4).
var stageOrder = []string{"checking the index", "queued", "fetching inputs", "building", "signing", "compressing",
	"storing", "copying to holders"}

// TestObserveBuild: a member that is not the builder follows an ISO's build through the asset-status route, as
// the UI does: not built, then building (its stage moving forward in order, its elapsed time growing), then
// cached; the builder lists the build in /cluster while it runs, and no more once it is over.
func TestObserveBuild(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3)
	first := c.live()[0]
	id := first.createSchematic(t, `customization: {extraKernelArgs: [observed]}`)

	const version, path = "v1.13.0", "metal-amd64.iso"

	st, resp := first.assetStatus(t, id, version, path)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	require.Equal(t, node.AssetNotBuilt, st.State)
	require.NotEmpty(t, st.Member, "the member that would build it")

	owner := c.byName(t, st.Member)

	var asker *member

	for _, m := range c.live() {
		if m != owner {
			asker = m
		}
	}

	done := make(chan response, 1)

	go func() { done <- asker.do(t, "GET", "/image/"+id+"/"+version+"/"+path, "", nil) }()

	states := []string{node.AssetNotBuilt}

	var (
		samples []node.AssetStatus
		listed  []node.BuildStatus
	)

	deadline := time.Now().Add(3 * time.Minute)

	for time.Now().Before(deadline) {
		st, resp := asker.assetStatus(t, id, version, path)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		if st.State != states[len(states)-1] {
			states = append(states, st.State)
		}

		if st.State == node.AssetBuilding {
			samples = append(samples, st)
			listed = append(listed, c.status(t, owner).Builds.InFlight...)
		}

		if st.State == node.AssetCached {
			break
		}

		time.Sleep(20 * time.Millisecond)
	}

	require.Equal(t, []string{node.AssetNotBuilt, node.AssetBuilding, node.AssetCached}, states)
	require.GreaterOrEqual(t, len(samples), 2)

	var stages []string

	for i, s := range samples {
		assert.Equal(t, owner.name, s.Member, "the owner builds")
		require.Contains(t, stageOrder, s.Stage)

		if i > 0 {
			assert.GreaterOrEqual(t, s.ElapsedSeconds, samples[i-1].ElapsedSeconds)
			assert.GreaterOrEqual(t, slices.Index(stageOrder, s.Stage), slices.Index(stageOrder, samples[i-1].Stage),
				"stages move forward: %s after %s", s.Stage, samples[i-1].Stage)
		}

		if len(stages) == 0 || stages[len(stages)-1] != s.Stage {
			stages = append(stages, s.Stage)
		}
	}

	t.Logf("stages seen through %s: %v over %.1f s", asker.name, stages, samples[len(samples)-1].ElapsedSeconds)
	assert.Contains(t, stages, "building", "the imager's stage")
	assert.Greater(t, samples[len(samples)-1].ElapsedSeconds, samples[0].ElapsedSeconds, "elapsed grows")

	require.NotEmpty(t, listed, "the builder lists the build in /cluster")
	assert.Equal(t, path, listed[0].Path)
	assert.Equal(t, id, listed[0].Schematic)
	assert.Equal(t, owner.name, listed[0].Member)

	got := <-done
	require.Equal(t, http.StatusOK, got.StatusCode)

	require.Eventually(t, func() bool { return len(c.status(t, owner).Builds.InFlight) == 0 }, time.Minute,
		50*time.Millisecond, "the build is no longer in flight once its copies are pushed")

	st, _ = asker.assetStatus(t, id, version, path)
	assert.Equal(t, node.AssetCached, st.State)
	assert.Equal(t, 1.0, c.builds(t), "one build")

	// The builder answers from its store now: a hit, in its hit rate.
	require.Equal(t, http.StatusOK, owner.do(t, "GET", "/image/"+id+"/"+version+"/"+path, "", nil).StatusCode)

	cache := c.status(t, owner).Cache
	assert.Equal(t, uint64(1), cache.Hits)
	assert.Equal(t, uint64(2), cache.Requests, "the asker's request and this one")
	assert.InDelta(t, 0.5, cache.HitRate, 1e-9)
}

// TestAssetStatusBuildsNothing: the asset-status route plans as /image does (a bad path is a 400 naming it, an
// unknown schematic a 404) and never builds.
func TestAssetStatusBuildsNothing(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))
	id := n.createSchematic(t, `customization: {extraKernelArgs: [status]}`)

	_, resp := n.assetStatus(t, id, "v1.13.0", "metal-amd64.ssd")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, resp.Body, `invalid profile path: "metal-amd64.ssd"`)

	_, resp = n.assetStatus(t, id, "v1.13.0", "")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, resp.Body, "schematic, version and path")

	_, resp = n.assetStatus(t, "aaaaaaaaaaaa", "v1.13.0", "metal-amd64.iso")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, resp.Body)

	for range 3 {
		st, resp := n.assetStatus(t, id, "v1.13.0", "metal-amd64.iso")
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, node.AssetNotBuilt, st.State)
		assert.Equal(t, "test-node", st.Member)
		assert.Len(t, st.Key, 64)
	}

	assert.Zero(t, n.metric(t, "edgefactory_builds_total"), "asking built nothing")
	assert.Equal(t, "application/json", n.do(t, "GET", "/ui/api/asset-status?schematic="+id+
		"&version=v1.13.0&path=metal-amd64.iso", "", nil).Header.Get("Content-Type"))
}

// TestClusterPageData: /cluster gives what the cluster page shows: ring shares summing to one, voters and the
// leader, last contact, cache hit rate, the catalog's last sync, and a failed build among the recent errors.
func TestClusterPageData(t *testing.T) {
	c := startCluster(t, upstream(t), 3) // stand-in parts: the imager refuses the UKI stub, so a kernel build fails
	first := c.live()[0]

	require.Eventually(t, func() bool {
		for _, m := range c.live() {
			for _, ms := range c.status(t, m).Members {
				if ms.Name != m.name && ms.LastContact.IsZero() {
					return false
				}
			}
		}

		return true
	}, 10*time.Second, 50*time.Millisecond, "every member has heard from the others")

	for _, m := range c.live() {
		st := c.status(t, m)
		sum, leaders, voters := 0.0, 0, 0

		for _, ms := range st.Members {
			sum += ms.RingShare
			assert.Greater(t, ms.RingShare, 0.1, ms.Name)

			if ms.Leader {
				leaders++
				assert.Equal(t, st.Leader, ms.Name)
			}

			if ms.Voter {
				voters++
			}

			if ms.Name == m.name {
				assert.True(t, ms.LastContact.IsZero(), "no last contact with itself")
			} else {
				assert.WithinDuration(t, time.Now(), ms.LastContact, 10*time.Second, ms.Name)
			}
		}

		assert.InDelta(t, 1.0, sum, 1e-6, "ring shares on %s", m.name)
		assert.Equal(t, 1, leaders)
		assert.Equal(t, 3, voters)
		assert.Contains(t, st.Catalog, "v1.13.0")
		assert.NotNil(t, st.RecentErrors)
		assert.NotNil(t, st.Builds.InFlight)
	}

	// Recorded after the round (talosctl binaries last), so after the members were ready.
	for _, m := range c.live() {
		require.Eventually(t, func() bool { return !c.status(t, m).CatalogSync.LastSync.IsZero() }, 20*time.Second,
			50*time.Millisecond, "the catalog's last sync is recorded on %s", m.name)
	}

	id := first.createSchematic(t, `customization: {extraKernelArgs: [fails]}`)
	st, _ := first.assetStatus(t, id, "v1.13.0", "kernel-amd64")
	builder := c.byName(t, st.Member)

	resp := builder.do(t, "GET", "/image/"+id+"/v1.13.0/kernel-amd64", "", nil)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode, resp.Body)

	errs := c.status(t, builder).RecentErrors
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].What, "kernel-amd64")
	assert.Contains(t, errs[0].Error, "UKI stub")
	assert.WithinDuration(t, time.Now(), errs[0].Time, time.Minute)

	// A held failure is not recorded again.
	builder.do(t, "GET", "/image/"+id+"/v1.13.0/kernel-amd64", "", nil)
	assert.Len(t, c.status(t, builder).RecentErrors, 1)

	cache := c.status(t, builder).Cache
	assert.Equal(t, uint64(2), cache.Requests, "both requests counted")
	assert.Zero(t, cache.Hits)
	assert.Zero(t, cache.HitRate)
}
