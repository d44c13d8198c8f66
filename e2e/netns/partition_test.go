//go:build netns

package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const asset = "/v1.13.0/kernel-amd64"

// TestNetnsPartition cuts one node of three off its peers and heals it, twice on the same cluster: first a follower
// (node 3, or node 2 if node 3 leads), then the leader. The cut-off node keeps serving what it has (a cached asset,
// a known schematic) and refuses writes with a 503 that says why; the majority keeps accepting writes; after
// healing every node sees the same three alive members, leader and ring, and the writes of both sides.
func TestNetnsPartition(t *testing.T) {
	RequireLab(t)
	partsDir := requireRealParts(t)

	lab := NewLab(t, 3)
	c := startCluster(t, lab, partsDir)

	start := time.Now()
	waitConverged(t, c, 90*time.Second)
	t.Logf("cluster formed %v after the nodes were ready", time.Since(start).Round(time.Millisecond))

	for _, tc := range []struct {
		name string
		pick func(leader int) int
	}{
		{"follower", func(leader int) int {
			if leader == 3 {
				return 2
			}

			return 3
		}},
		{"leader", func(leader int) int { return leader }},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			st, ok := c.status(1)
			require.True(t, ok)

			leader := nodeIndex(t, st.Leader)
			partition(t, c, tc.pick(leader), leader, tc.name)
		})
		if !ok {
			return // the next partition needs a healed cluster
		}
	}
}

// partition runs one cut-and-heal of node cut; tag makes its schematics unique.
func partition(t *testing.T, c *cluster, cut, leader int, tag string) {
	var majority []int

	for i := 1; i <= c.lab.n; i++ {
		if i != cut {
			majority = append(majority, i)
		}
	}

	id := c.createSchematic(t, majority[0], tag+"-before")
	sum := cacheEverywhere(t, c, id)

	t.Logf("cutting %s off (the leader is %s)", NodeNS(cut), NodeNS(leader))

	start := time.Now()
	c.lab.Cut(cut)
	waitPartitionSeen(t, c, cut, start)

	// The cut-off node serves what it has.
	hits := c.metric(t, cut, "edgefactory_cache_hits_total")
	r := c.get(t, cut, "/image/"+id+asset)
	require.Equal(t, http.StatusOK, r.status, "cached asset on the cut-off node: %s", r)
	require.Equal(t, sum, sha(r.body), "cached asset on the cut-off node: other bytes")
	require.Greater(t, c.metric(t, cut, "edgefactory_cache_hits_total"), hits, "not served from its cache")
	t.Logf("cut-off node served the cached asset in %v", r.took.Round(time.Millisecond))

	r = c.get(t, cut, "/schematics/"+id)
	require.Equal(t, http.StatusOK, r.status, "known schematic on the cut-off node: %s", r)
	require.Contains(t, string(r.body), "netns.test="+tag+"-before")

	// The majority keeps writing.
	during := c.createSchematic(t, majority[0], tag+"-during")
	r = c.get(t, majority[1], "/schematics/"+during)
	require.Equal(t, http.StatusOK, r.status, "schematic written during the partition, read on %s: %s",
		NodeNS(majority[1]), r)

	// The cut-off node refuses new writes, saying why, and does not claim the majority's write is missing.
	r = c.postSchematic(t, cut, tag+"-refused")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "POST /schematics on the cut-off node: %s", r)
	require.Contains(t, string(r.body), "no Raft leader reachable")
	t.Logf("cut-off node refused a new schematic: %s", r)

	r = c.get(t, cut, "/schematics/"+during)
	require.Equal(t, http.StatusServiceUnavailable, r.status,
		"a schematic it cannot know yet must not be reported missing by the cut-off node: %s", r)

	// Nor does it build what it has not got: the majority may have built it meanwhile, and it could not record
	// the build anyway.
	blobs := c.blobs(t, cut)
	r = c.get(t, cut, "/image/"+id+"/v1.13.0/cmdline-metal-arm64")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "an asset the cut-off node would build: %s", r)
	require.Contains(t, string(r.body), "no Raft leader reachable")
	require.Equal(t, blobs, c.blobs(t, cut), "the cut-off node built the asset it refused")

	heal := time.Now()
	c.lab.Heal(cut)
	waitConverged(t, c, 90*time.Second)
	t.Logf("cluster re-merged %v after healing", time.Since(heal).Round(time.Millisecond))

	r = c.get(t, cut, "/schematics/"+during)
	require.Equal(t, http.StatusOK, r.status, "majority's schematic on the healed node: %s", r)
	require.Contains(t, string(r.body), "netns.test="+tag+"-during")

	after := c.createSchematic(t, cut, tag+"-after")
	r = c.get(t, majority[0], "/schematics/"+after)
	require.Equal(t, http.StatusOK, r.status, "healed node's write read on %s: %s", NodeNS(majority[0]), r)
}

// blobs is how many blobs node i's store holds.
func (c *cluster) blobs(t *testing.T, i int) int {
	t.Helper()

	st, ok := c.status(i)
	require.True(t, ok, "%s: /cluster does not answer", NodeNS(i))

	return st.Cache.Blobs
}

// nodeIndex is i for the node named ef-n<i>.
func nodeIndex(t *testing.T, name string) int {
	t.Helper()

	for i := 1; i <= maxNodes; i++ {
		if name == NodeNS(i) {
			return i
		}
	}

	require.Failf(t, "unknown node", "%q", name)

	return 0
}

// cacheEverywhere fetches the asset of schematic id through every node until each serves it from its own cache,
// and returns its sha256 (the same everywhere).
func cacheEverywhere(t *testing.T, c *cluster, id string) string {
	t.Helper()

	var want string

	for i := 1; i <= c.lab.n; i++ {
		r := c.get(t, i, "/image/"+id+asset)
		require.Equal(t, http.StatusOK, r.status, "%s through %s: %s", asset, NodeNS(i), r)

		if want == "" {
			want = sha(r.body)
			t.Logf("%s: %d bytes in %v (first fetch)", asset, len(r.body), r.took.Round(time.Millisecond))
		}

		require.Equal(t, want, sha(r.body), "%s through %s: other bytes", asset, NodeNS(i))
	}

	// A node keeps its read-through copy once the transfer is verified; a cache hit proves it has.
	for i := 1; i <= c.lab.n; i++ {
		ok := poll(30*time.Second, 500*time.Millisecond, func() bool {
			hits := c.metric(t, i, "edgefactory_cache_hits_total")
			r := c.get(t, i, "/image/"+id+asset)

			return r.status == http.StatusOK && sha(r.body) == want &&
				c.metric(t, i, "edgefactory_cache_hits_total") > hits
		})
		require.True(t, ok, "%s never served %s from its cache", NodeNS(i), asset)
	}

	return want
}

// waitPartitionSeen waits until both sides notice the cut: the cut-off node knows no leader and sees only itself
// alive; the others see it gone and agree on a leader among themselves.
func waitPartitionSeen(t *testing.T, c *cluster, cut int, start time.Time) {
	t.Helper()

	var noLeader, alone, majority time.Duration

	ok := poll(60*time.Second, 100*time.Millisecond, func() bool {
		if st, ok := c.status(cut); ok {
			if noLeader == 0 && st.Leader == "" {
				noLeader = time.Since(start)
			}

			if alone == 0 && slices.Equal(st.alive(), []string{NodeNS(cut)}) {
				alone = time.Since(start)
			}
		}

		if majority == 0 && c.majoritySeen(cut) {
			majority = time.Since(start)
		}

		return noLeader != 0 && alone != 0 && majority != 0
	})
	require.True(t, ok, "the partition was not noticed within 60s (cut-off node: no leader after %v, alone after "+
		"%v; majority after %v; 0: never)", noLeader, alone, majority)

	t.Logf("partition seen: the cut-off node knew no leader after %v and saw its peers dead after %v; the majority "+
		"saw it dead and agreed on a leader after %v", noLeader.Round(time.Millisecond), alone.Round(time.Millisecond),
		majority.Round(time.Millisecond))
}

// majoritySeen reports whether every node but cut sees only the others alive and they agree on a leader among them.
func (c *cluster) majoritySeen(cut int) bool {
	leader := ""

	for i := 1; i <= c.lab.n; i++ {
		if i == cut {
			continue
		}

		st, ok := c.status(i)
		if !ok || len(st.alive()) != c.lab.n-1 || slices.Contains(st.alive(), NodeNS(cut)) ||
			st.Leader == "" || st.Leader == NodeNS(cut) || (leader != "" && st.Leader != leader) {
			return false
		}

		leader = st.Leader
	}

	return true
}

func waitConverged(t *testing.T, c *cluster, within time.Duration) {
	t.Helper()

	var why string

	ok := poll(within, 250*time.Millisecond, func() bool {
		var ok bool
		ok, why = c.converged()

		return ok
	})
	require.True(t, ok, "the cluster did not converge within %v: %s", within, why)
}

// poll calls cond every interval until it holds (true) or within has passed (false). Unlike require.Eventually
// it runs cond on the test's goroutine, so cond may use require.
func poll(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)

	for {
		if cond() {
			return true
		}

		if time.Now().After(deadline) {
			return false
		}

		time.Sleep(interval)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)

	return hex.EncodeToString(s[:])
}
