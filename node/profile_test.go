package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/node"
)

// TestBuildProfileMixedArch: in a cluster of two amd64 members and one arm64 member (its profile's architecture
// overridden), the cluster builds with the amd64 profile (2 of 3); every member plans the same recipe key, an ISO
// asked through every member (the arm64 one first) is built once, by an amd64 member, and every member serves the
// same bytes. Setting buildProfile to the arm64 profile moves building to the arm64 member alone.
func TestBuildProfileMixedArch(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3, func(i int, cfg *node.Config) {
		if i == 2 {
			*cfg = node.WithProfileArch(*cfg, "arm64")
		}
	})
	arm := c.byName(t, "node3")

	st := waitBuilders(t, c, "node1", "node2")
	require.Equal(t, "amd64", st.BuildProfile.Arch)

	amdProfile := st.BuildProfile.ID
	armProfile := memberOf(st, "node3").Profile
	require.NotEqual(t, amdProfile, armProfile)

	for _, m := range c.live() {
		ms := memberOf(c.status(t, m), "node3")
		assert.Equal(t, "arm64", ms.Arch, "%s sees node3's architecture", m.name)
		assert.False(t, ms.MayBuild)
		assert.Contains(t, ms.WhyNot, "build profile "+armProfile+", the cluster builds with "+amdProfile)
	}

	id := arm.createSchematic(t, `customization: {extraKernelArgs: [profile=mixed]}`)
	path := "/image/" + id + "/v1.13.0/metal-amd64.iso"
	key := sameKey(t, c, id, path)

	before := c.builds(t)
	sums := map[string]int{}

	for _, m := range append([]*member{arm}, c.live()[:2]...) {
		resp := m.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", m.name, resp.Body)
		sums[sha256Hex(resp.Body)]++
	}

	require.Len(t, sums, 1, "every member serves the same bytes")
	assert.Equal(t, 1.0, c.builds(t)-before, "built once")
	assert.Zero(t, arm.metric(t, "edgefactory_builds_total"), "the arm64 member never builds")

	_, builder, ok := arm.AssetRecord(key)
	require.True(t, ok)
	assert.Contains(t, []string{"node1", "node2"}, builder, "built by an amd64 member")
	assert.Equal(t, amdProfile, arm.AssetProfile(key), "the record names the profile that built it")

	t.Run("buildProfile set to the arm64 profile", func(t *testing.T) {
		setBuildProfile(t, c, armProfile)
		st := waitBuilders(t, c, "node3")
		assert.Equal(t, "arm64", st.BuildProfile.Arch)

		armKey := sameKey(t, c, id, path)
		require.NotEqual(t, key, armKey, "keys are planned with the profile that builds")

		for _, m := range c.live() {
			resp := m.do(t, "GET", path, "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", m.name, resp.Body)
		}

		assert.Equal(t, 1.0, arm.metric(t, "edgefactory_builds_total"), "built once, by the arm64 member")
		assert.Equal(t, 2.0, c.builds(t)-before)
		assert.Equal(t, armProfile, arm.AssetProfile(armKey))

		setBuildProfile(t, c, "")
		waitBuilders(t, c, "node1", "node2")
		assert.Equal(t, key, sameKey(t, c, id, path), "back to the profile most members share")
	})
}

// TestBuildRoles: a member started with role cache and one whose host tools are degraded (an mksquashfs older than
// 4.6, found by the real check) never build, even for keys they own on the ring of all members: they fetch, serve
// and keep copies, and /cluster says why each does not build. With the cluster's profile set to the degraded
// member's, nobody may build, and a request says so.
func TestBuildRoles(t *testing.T) {
	reg := realUpstream(t)
	degraded := oldMksquashfsCheck(t)

	c := startCluster(t, reg, 4, func(i int, cfg *node.Config) {
		switch i {
		case 2:
			cfg.Role = "cache"
		case 3:
			*cfg = node.WithToolCheck(*cfg, degraded)
		}
	})
	cache, worn := c.byName(t, "node3"), c.byName(t, "node4")

	st := waitBuilders(t, c, "node1", "node2")

	for _, m := range c.live() {
		st := c.status(t, m)

		cs := memberOf(st, "node3")
		assert.Equal(t, "cache", cs.Role, m.name)
		assert.False(t, cs.MayBuild, m.name)
		assert.Contains(t, cs.WhyNot, "role cache", m.name)

		ws := memberOf(st, "node4")
		assert.Equal(t, "build", ws.Role, m.name)
		assert.False(t, ws.MayBuild, m.name)
		assert.Equal(t, []string{"mksquashfs"}, ws.DegradedTools, m.name)
		assert.Contains(t, ws.WhyNot, "degraded host tools (mksquashfs)", m.name)
	}

	// Keys the cache and the degraded member own on the ring of every member: there, they would have built them.
	type asset struct{ path, key string }

	var assets []asset

	owned := map[string]int{}

	for i := 0; owned["node3"] < 2 || owned["node4"] < 2; i++ {
		require.Less(t, i, 200, "no key owned by node3 and node4")

		id := cache.createSchematic(t, fmt.Sprintf(`customization: {extraKernelArgs: [role=%d]}`, i))
		path := "/image/" + id + "/v1.13.0/kernel-amd64"
		key := sameKey(t, c, id, path)

		if owner := cache.Owner(key); (owner == "node3" || owner == "node4") && owned[owner] < 2 {
			owned[owner]++

			assets = append(assets, asset{path, key})
		}
	}

	for _, a := range assets {
		var sum string

		for _, m := range []*member{cache, worn, c.byName(t, "node1")} {
			resp := m.do(t, "GET", a.path, "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", m.name, resp.Body)

			if sum == "" {
				sum = sha256Hex(resp.Body)
			}

			assert.Equal(t, sum, sha256Hex(resp.Body), "%s serves the same bytes", m.name)
		}

		digest, builder, ok := cache.AssetRecord(a.key)
		require.True(t, ok)
		assert.Contains(t, []string{"node1", "node2"}, builder)
		assert.Equal(t, st.BuildProfile.ID, cache.AssetProfile(a.key))
		assert.True(t, cache.HasBlob(digest), "the cache member keeps a copy")
		assert.True(t, worn.HasBlob(digest), "the degraded member keeps a copy")
	}

	assert.Zero(t, cache.metric(t, "edgefactory_builds_total"), "the cache member never builds")
	assert.Zero(t, worn.metric(t, "edgefactory_builds_total"), "the degraded member never builds")
	assert.Equal(t, float64(len(assets)), c.builds(t), "each built once")

	t.Run("no member may build", func(t *testing.T) {
		setBuildProfile(t, c, memberOf(st, "node4").Profile)
		waitBuilders(t, c)

		id := cache.createSchematic(t, `customization: {extraKernelArgs: [role=nobody]}`)
		resp := cache.do(t, "GET", "/image/"+id+"/v1.13.0/kernel-amd64", "", nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, resp.Body)
		assert.Contains(t, resp.Body, "no member may build")
		assert.Contains(t, resp.Body, "node4: degraded host tools (mksquashfs)")

		setBuildProfile(t, c, "")
		waitBuilders(t, c, "node1", "node2")
	})
}

// oldMksquashfsCheck is the host-tool check of a member whose only mksquashfs is the system's (Debian 12's 4.5.1,
// older than the 4.6 the imager's SELinux labels need): the real check, with EDGEFACTORY_MKSQUASHFS pointing at it.
// It skips the test on a host whose system mksquashfs is recent enough.
func oldMksquashfsCheck(t *testing.T) func(context.Context) hosttools.Report {
	t.Helper()

	check := func(ctx context.Context) hosttools.Report {
		// Members start one after another and build nothing meanwhile: nobody else reads the variable now.
		old := os.Getenv(hosttools.MksquashfsEnv)
		os.Setenv(hosttools.MksquashfsEnv, "/usr/bin/mksquashfs")
		defer os.Setenv(hosttools.MksquashfsEnv, old)

		return hosttools.Check(ctx)
	}

	if len(check(context.Background()).Degraded()) == 0 {
		t.Skip("the system mksquashfs is 4.6 or later: this host cannot have degraded tools")
	}

	return check
}

// waitBuilders waits until every live member names exactly builders as the members that may build, and returns
// the first member's status.
func waitBuilders(t *testing.T, c *cluster, builders ...string) node.ClusterStatus {
	t.Helper()

	var (
		st  node.ClusterStatus
		why string
	)

	ok := waitFor(20*time.Second, func() bool {
		id := ""

		for i, m := range c.live() {
			s := m.Status()
			if i == 0 {
				st, id = s, s.BuildProfile.ID
			}

			if !slices.Equal(s.BuildProfile.Builders, builders) || s.BuildProfile.ID != id {
				why = fmt.Sprintf("%s: profile %s, builders %v", m.name, s.BuildProfile.ID, s.BuildProfile.Builders)

				return false
			}
		}

		return true
	})
	require.True(t, ok, "want builders %v: %s", builders, why)

	return st
}

// sameKey plans path on every live member and requires one recipe key.
func sameKey(t *testing.T, c *cluster, id, path string) string {
	t.Helper()

	var key string

	for _, m := range c.live() {
		k, err := m.RecipeKey(context.Background(), id, "v1.13.0", strings.TrimPrefix(path, "/image/"+id+"/v1.13.0/"))
		require.NoError(t, err, m.name)

		if key == "" {
			key = k
		}

		require.Equal(t, key, k, "%s plans the same key", m.name)
	}

	return key
}

// setBuildProfile changes the buildProfile cluster setting through the first live member.
func setBuildProfile(t *testing.T, c *cluster, id string) {
	t.Helper()

	resp := c.live()[0].do(t, "PUT", "/cluster/settings", fmt.Sprintf(`{"buildProfile":%q}`, id),
		map[string]string{"Authorization": "Bearer " + clusterSecret})
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
}
