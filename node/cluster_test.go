package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const clusterSecret = "cluster-test-secret"

// TestClusterThreeNodes forms a three-node cluster from Join alone and checks what needs no builds: formation,
// read-your-writes across nodes, the peer API's secret, and writes through the death of the Raft leader.
func TestClusterThreeNodes(t *testing.T) {
	c := startCluster(t, upstream(t), 3)

	t.Run("forms", func(t *testing.T) { checkFormed(t, c, 3) })

	t.Run("a schematic created on one node is read on another at once", func(t *testing.T) {
		nodes := c.live()

		for i := range 30 {
			created := nodes[i%3].do(t, "POST", "/schematics",
				fmt.Sprintf(`customization: {extraKernelArgs: [ryw=%d]}`, i), nil)
			require.Equal(t, http.StatusCreated, created.StatusCode, created.Body)

			var body struct{ ID, Schematic string }
			require.NoError(t, json.Unmarshal([]byte(created.Body), &body))

			// No sleep, no retry: a node that has not applied the write yet confirms with the leader first.
			for _, reader := range []*member{nodes[(i+1)%3], nodes[(i+2)%3]} {
				got := reader.do(t, "GET", "/schematics/"+body.ID, "", nil)
				require.Equal(t, http.StatusOK, got.StatusCode, "created on %s, read on %s: %s", nodes[i%3].name,
					reader.name, got.Body)
				assert.Equal(t, body.Schematic, got.Body)
			}
		}
	})

	t.Run("the peer API needs a member certificate", func(t *testing.T) { checkPeerCertificate(t, c) })

	t.Run("writes survive the death of the leader", func(t *testing.T) {
		if testing.Short() {
			t.Skip("kills the leader and waits for an election; skipped with -short")
		}

		checkLeaderDeath(t, c)
	})
}

// checkFormed: one leader, size voters, every node's /cluster shows size alive members and the same ring.
func checkFormed(t *testing.T, c *cluster, size int) {
	var leader, ringID string

	for _, m := range c.live() {
		st := c.status(t, m)
		require.NotEmpty(t, st.Leader, m.name)

		if leader == "" {
			leader, ringID = st.Leader, st.Ring.ID
		}

		assert.Equal(t, leader, st.Leader, "%s names the same leader", m.name)
		assert.Equal(t, ringID, st.Ring.ID, "%s has the same ring", m.name)
		assert.Len(t, st.Ring.Members, size, m.name)
		assert.Len(t, st.Voters, size, "%s: %d voters", m.name, size)

		alive := 0

		for _, mb := range st.Members {
			if mb.State == "alive" {
				alive++

				assert.Equal(t, "voter", mb.Raft, "%s sees %s as a voter", m.name, mb.Name)
			}
		}

		assert.Equal(t, size, alive, "%s sees %d alive members", m.name, size)
	}

	leaders := 0

	for _, m := range c.live() {
		if m.name == leader {
			leaders++
		}
	}

	assert.Equal(t, 1, leaders, "exactly one leader")
}

// TestClusterSecret: members of a cluster not moved to mutual TLS yet authenticate the peer API with the cluster
// secret.
func TestClusterSecret(t *testing.T) {
	c := startSecretCluster(t, upstream(t), 2)

	checkPeerSecret(t, c)
}

// checkPeerSecret: requests to /_peer/ without the cluster secret, or with a wrong one, are refused with 403 and
// counted; the same request with the secret is served.
func checkPeerSecret(t *testing.T, c *cluster) {
	m := c.leader(t)
	before := m.metric(t, "edgefactory_peer_auth_failures_total")
	missing := "sha256:" + strings.Repeat("0", 64)
	cmd := `{"v":1,"op":"put-schematic"}`

	for _, tc := range []struct {
		name, method, path, body, auth string
		status                         int
	}{
		{"read index without a secret", "GET", "/_peer/readindex", "", "", http.StatusForbidden},
		{"read index with a wrong secret", "GET", "/_peer/readindex", "", "Bearer wrong", http.StatusForbidden},
		{"secret without the bearer scheme", "GET", "/_peer/readindex", "", clusterSecret, http.StatusForbidden},
		{"blob without a secret", "GET", "/_peer/blobs/" + missing, "", "", http.StatusForbidden},
		{"write without a secret", "POST", "/_peer/apply", cmd, "", http.StatusForbidden},
		{"write with a wrong secret", "POST", "/_peer/apply", cmd, "Bearer " + clusterSecret + "x",
			http.StatusForbidden},
		{"read index with the secret", "GET", "/_peer/readindex", "", "Bearer " + clusterSecret, http.StatusOK},
		{"blob with the secret", "GET", "/_peer/blobs/" + missing, "", "Bearer " + clusterSecret,
			http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]string{}
			if tc.auth != "" {
				header["Authorization"] = tc.auth
			}

			resp := m.do(t, tc.method, tc.path, tc.body, header)
			assert.Equal(t, tc.status, resp.StatusCode, resp.Body)
		})
	}

	assert.Equal(t, before+6, m.metric(t, "edgefactory_peer_auth_failures_total"), "refusals are counted")
}

// checkLeaderDeath: writers POST new schematics to random live nodes without pause; the leader is killed in the
// middle. Every write answered 201 is readable afterwards on every surviving node, and writes resume within a
// few seconds (the measured time is logged; the bound is generous).
func checkLeaderDeath(t *testing.T, c *cluster) {
	w := startWriters(c, 4)
	defer w.stop()

	require.True(t, waitFor(10*time.Second, func() bool { return w.since(time.Time{}) >= 50 }),
		"writes flow before the kill")

	leader := c.leader(t)
	killed := time.Now()
	c.kill(leader)

	survivor := c.live()[0]
	require.True(t, waitFor(30*time.Second, func() bool {
		st := survivor.Status()

		return st.Leader != "" && st.Leader != leader.name
	}), "a new leader is elected")

	elected := time.Since(killed)

	require.True(t, waitFor(30*time.Second, func() bool { return w.since(killed) >= 50 }),
		"writes resume after the leader died")

	acks, failures := w.stop()
	resumed := time.Duration(-1)

	for _, a := range acks {
		if !a.started.Before(killed) && (resumed < 0 || a.ended.Sub(killed) < resumed) {
			resumed = a.ended.Sub(killed)
		}
	}

	t.Logf("leader %s killed: new leader known after %s, first write issued after the kill succeeded after %s; "+
		"%d writes acknowledged, %d failed or cut off", leader.name, elected.Round(time.Millisecond),
		resumed.Round(time.Millisecond), len(acks), failures)
	assert.Less(t, resumed, 10*time.Second, "writes resume within a few seconds")
	assert.NotEqual(t, leader.name, c.leader(t).name)

	for _, m := range c.live() {
		for _, a := range acks {
			resp := m.do(t, "GET", "/schematics/"+a.id, "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "schematic %s acknowledged before or after the kill "+
				"is missing on %s", a.id, m.name)
		}
	}
}

// writers create new schematics through random live nodes, back to back, until stopped.
type writers struct {
	halt func()

	mu       sync.Mutex
	acks     []ack
	failures int
}

// ack is a write answered 201.
type ack struct {
	id             string
	started, ended time.Time
}

func startWriters(c *cluster, count int) *writers {
	var (
		w      = &writers{}
		seq    atomic.Int64
		done   = make(chan struct{})
		wg     sync.WaitGroup
		client = &http.Client{Timeout: 30 * time.Second}
	)

	for range count {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}

				body := fmt.Sprintf(`{"customization":{"extraKernelArgs":["write=%d"]}}`, seq.Add(1))
				started := time.Now()
				id, err := postSchematic(client, c.randomLive().base, body)

				w.mu.Lock()
				if err == nil {
					w.acks = append(w.acks, ack{id: id, started: started, ended: time.Now()})
				} else {
					w.failures++
				}
				w.mu.Unlock()
			}
		})
	}

	w.halt = sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})

	return w
}

// stop waits for the writers to finish and returns the acknowledged writes and the count of the others.
func (w *writers) stop() ([]ack, int) {
	w.halt()

	w.mu.Lock()
	defer w.mu.Unlock()

	return slices.Clone(w.acks), w.failures
}

// since counts the acknowledged writes issued at or after t.
func (w *writers) since(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()

	n := 0

	for _, a := range w.acks {
		if !a.started.Before(t) {
			n++
		}
	}

	return n
}

// TestClusterFiveNodes runs the miss path on five real nodes with real builds: a boot storm builds once, corrupt
// copies are caught, a sixth node reads through without building, and the death of a key's owner in the middle of
// its build does not fail the request.
func TestClusterFiveNodes(t *testing.T) {
	c := startCluster(t, realUpstream(t), 5)

	t.Run("forms", func(t *testing.T) { checkFormed(t, c, 5) })
	t.Run("a boot storm builds once", func(t *testing.T) { checkBootStorm(t, c) })
	t.Run("corrupt copies are caught", func(t *testing.T) { checkCorruptPeer(t, c) })
	t.Run("a sixth node builds nothing", func(t *testing.T) { checkSixthNode(t, c) })
	t.Run("the owner dies while building", func(t *testing.T) { checkOwnerDeath(t, c) })
}

// checkBootStorm: 200 concurrent requests for one uncached asset that takes seconds to build, round-robin over
// the nodes, cause exactly one build cluster-wide, and every client receives identical, complete bytes.
func checkBootStorm(t *testing.T, c *cluster) {
	id := c.live()[0].createSchematic(t, `customization: {extraKernelArgs: [storm]}`)
	before := c.buildStarts(t)
	require.Zero(t, before, "a fresh cluster")
	start := time.Now()
	results := storm(c.live(), "/image/"+id+"/v1.13.0/metal-amd64.iso", 200)
	elapsed := time.Since(start)

	shas := map[string]int{}

	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		require.Equal(t, http.StatusOK, r.status, "request %d", i)
		require.True(t, r.complete(), "request %d got %d bytes", i, r.size)
		assert.Equal(t, r.header.Get("X-Content-Sha256"), r.sha, "request %d: bytes match their digest", i)
		shas[r.sha]++
	}

	assert.Len(t, shas, 1, "every client received identical bytes")
	assert.Equal(t, before+1, c.buildStarts(t), "exactly one build begun cluster-wide")
	t.Logf("200 requests over %d nodes: %s, %d bytes each", len(c.live()), elapsed.Round(time.Millisecond),
		results[0].size)
}

// checkCorruptPeer: every copy of a built asset is corrupted on disk; a download through a node that lacks it
// fails (never a complete wrong file), the failure is counted, nothing corrupt is kept anywhere (the requester
// stores nothing, the holders verify and drop their copies), and the next request rebuilds the right bytes.
func checkCorruptPeer(t *testing.T, c *cluster) {
	first := c.live()[0]
	id := first.createSchematic(t, `customization: {extraKernelArgs: [corrupt]}`)
	path := "/image/" + id + "/v1.13.0/metal-amd64-uki.efi"
	key, holders := c.recipeKey(t, first, id, "v1.13.0", path[len("/image/"+id+"/v1.13.0/"):])
	require.Len(t, holders, 2)

	owner := c.byName(t, holders[0])
	good := fetchURL(http.DefaultClient, owner.base+path)
	require.True(t, good.complete(), "build through the owner: %v", good.err)

	digest, ok := owner.AssetDigest(key)
	require.True(t, ok)
	require.Equal(t, "sha256:"+good.sha, digest)
	require.True(t, waitFor(20*time.Second, func() bool { return c.byName(t, holders[1]).HasBlob(digest) }),
		"the owner pushes a copy to the second holder")

	var corrupted []*member

	for _, m := range c.live() {
		if m.HasBlob(digest) {
			flipByte(t, m.BlobPath(digest), good.size/2)
			corrupted = append(corrupted, m)
		}
	}

	require.NotEmpty(t, corrupted)

	asker := c.other(t, holders...)
	require.False(t, asker.HasBlob(digest))

	failures := asker.metric(t, "edgefactory_peer_verify_failures_total")
	bad := fetchURL(http.DefaultClient, asker.base+path)
	assert.False(t, bad.complete(), "the download through %s must fail", asker.name)
	assert.False(t, bad.size == good.size && bad.sha != good.sha, "a complete wrong file was served")
	assert.Greater(t, asker.metric(t, "edgefactory_peer_verify_failures_total"), failures, "the mismatch is counted")
	assert.False(t, asker.HasBlob(digest), "%s stored nothing", asker.name)

	for _, m := range corrupted {
		assert.True(t, waitFor(10*time.Second, func() bool { return !m.HasBlob(digest) }),
			"%s was asked to verify its copy and dropped it", m.name)
	}

	builds := c.builds(t)
	again := fetchURL(http.DefaultClient, asker.base+path)
	require.True(t, again.complete(), "the next request succeeds: %v", again.err)
	assert.Equal(t, good.sha, again.sha, "the rebuilt asset has the same bytes")
	assert.Equal(t, builds+1, c.builds(t), "rebuilt once")
}

// flipByte inverts one byte of a file in place (CAS blobs are read-only: the mode is lifted for the write).
func flipByte(t *testing.T, path string, off int64) {
	require.NoError(t, os.Chmod(path, 0o644))

	defer func() { require.NoError(t, os.Chmod(path, 0o444)) }()

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)

	defer f.Close()

	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)

	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// checkSixthNode: with ~20 assets built on five nodes, a sixth node joins and serves every one of them by reading
// through from the nodes that hold them: it builds nothing and nobody else builds either.
func checkSixthNode(t *testing.T, c *cluster) {
	nodes := c.live()

	type asset struct{ path, sha string }

	var assets []asset

	for i := range 7 {
		id := nodes[i%len(nodes)].createSchematic(t, fmt.Sprintf(`customization: {extraKernelArgs: [sixth=%d]}`, i))
		for _, p := range []string{"kernel-amd64", "cmdline-metal-amd64", "initramfs-amd64.xz"} {
			path := "/image/" + id + "/v1.13.0/" + p
			d := fetchURL(http.DefaultClient, nodes[len(assets)%len(nodes)].base+path)
			require.True(t, d.complete(), "%s: %v", path, d.err)
			assets = append(assets, asset{path: path, sha: d.sha})
		}
	}

	builds := c.builds(t)
	sixth := c.join(t)
	st := c.status(t, sixth)
	assert.Len(t, st.Ring.Members, 6)
	assert.Len(t, st.Voters, 5, "voters stay capped at five")

	for _, mb := range st.Members {
		if mb.Name == sixth.name {
			assert.Equal(t, "nonvoter", mb.Raft, "the sixth node joins Raft as a non-voter")
		}
	}

	for _, a := range assets {
		d := fetchURL(http.DefaultClient, sixth.base+a.path)
		require.True(t, d.complete(), "%s through the sixth node: %v", a.path, d.err)
		assert.Equal(t, a.sha, d.sha, a.path)
	}

	assert.Zero(t, sixth.metric(t, "edgefactory_builds_total"), "the sixth node built nothing")
	assert.Equal(t, builds, c.builds(t), "nobody built anything")
}

// checkOwnerDeath: a request for a slow asset through a node that does not own it is under way while the owner
// builds; the owner is killed; the request still completes with the right bytes (the next holder builds).
func checkOwnerDeath(t *testing.T, c *cluster) {
	first := c.live()[0]
	id := first.createSchematic(t, `customization: {extraKernelArgs: [owner-death]}`)
	const asset = "metal-amd64.iso"

	key, holders := c.recipeKey(t, first, id, "v1.13.0", asset)
	owner := c.byName(t, holders[0])
	asker := c.other(t, owner.name)
	before := c.builds(t)

	result := make(chan fetched, 1)

	go func() { result <- fetchURL(http.DefaultClient, asker.base+"/image/"+id+"/v1.13.0/"+asset) }()

	require.True(t, waitFor(60*time.Second, func() bool { return owner.Status().Builds.Running > 0 }),
		"the owner %s starts building", owner.name)

	ownerBuilds := owner.metric(t, "edgefactory_builds_total")
	c.kill(owner)

	var d fetched

	select {
	case d = <-result:
	case <-time.After(3 * time.Minute):
		require.FailNow(t, "the request never completed")
	}

	require.NoError(t, d.err)
	require.Equal(t, http.StatusOK, d.status)
	require.True(t, d.complete(), "%d bytes", d.size)
	assert.Equal(t, d.header.Get("X-Content-Sha256"), d.sha, "the bytes match their digest")

	// The record is committed before the bytes are served; a follower applies it a moment later.
	for _, m := range c.live() {
		assert.True(t, waitFor(10*time.Second, func() bool { _, _, ok := m.AssetRecord(key); return ok }), m.name)

		digest, builder, _ := m.AssetRecord(key)
		assert.Equal(t, "sha256:"+d.sha, digest, "%s records the served bytes", m.name)
		assert.NotEqual(t, owner.name, builder, "%s records a survivor as the builder", m.name)
	}

	assert.Equal(t, before-ownerBuilds+1, c.builds(t), "one survivor built it")
}

// postSchematic creates a schematic through base and returns its ID; anything but 201 is an error.
func postSchematic(client *http.Client, base, body string) (string, error) {
	resp, err := client.Post(base+"/schematics", "application/yaml", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()

	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}

	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}

	var created struct{ ID string }

	return created.ID, json.Unmarshal(data, &created)
}
