package node_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// cluster is a set of real nodes in this test process, each with its own data dir and ports, joined through gossip:
// every node's Join lists every node's gossip address, and all share BootstrapExpect and the cluster secret.
type cluster struct {
	reg    string
	dir    string
	expect int
	seeds  []string // gossip addresses of every node started so far
	// noCatalog: the upstream has no release yet (the cluster is its own upstream before an import), so formed
	// means a leader and caught up, not ready.
	noCatalog bool
	// secure: members talk mutual TLS on cluster ports (ports[i]); node1's data directory is made by node.Init and
	// the others join with its token.
	secure bool
	ports  []string
	token  string

	mu    sync.Mutex
	nodes []*member
}

// member is one node of a test cluster.
type member struct {
	*running
	name   string
	index  int // its position: node<index+1>, data under node<index+1>/
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	killed bool
}

// startCluster starts size nodes reading the registry reg and waits until they have formed one cluster: one
// leader, every node ready, every node seeing the same alive members and the same ring. The members talk mutual
// TLS on their cluster ports, the cluster formed as an operator forms it: node1's data directory made by node.Init,
// the others joining with its token. tweak, if given, changes node i's configuration. The nodes are killed when the
// test ends (graceful leaves are tested elsewhere and would only slow the suite down).
func startCluster(t testing.TB, reg string, size int, tweak ...func(i int, cfg *node.Config)) *cluster {
	t.Helper()

	return startClusterOf(t, &cluster{reg: reg, dir: t.TempDir(), expect: size, secure: true}, tweak...)
}

// startSecretCluster is startCluster with members that authenticate with the cluster secret over plain HTTP, each
// on a Raft port of its own (the way before the cluster port, and what tests gating Raft traffic need).
func startSecretCluster(t testing.TB, reg string, size int, tweak ...func(i int, cfg *node.Config)) *cluster {
	t.Helper()

	return startClusterOf(t, &cluster{reg: reg, dir: t.TempDir(), expect: size}, tweak...)
}

// startClusterOf starts c, as startCluster describes.
func startClusterOf(t testing.TB, c *cluster, tweak ...func(i int, cfg *node.Config)) *cluster {
	t.Helper()

	size := c.expect
	for range size {
		c.seeds = append(c.seeds, freeLoopbackAddr(t))
		c.ports = append(c.ports, freeLoopbackAddr(t))
	}

	if c.secure {
		res, err := node.Init(filepath.Join(c.dir, "node1"), "test", time.Hour)
		require.NoError(t, err)

		c.token = res.Token
	}

	t.Cleanup(c.killAll)

	for i := range size {
		c.add(t, i, func(cfg *node.Config) {
			for _, f := range tweak {
				f(i, cfg)
			}
		})
	}

	c.waitFormed(t)

	return c
}

// join starts one more node (named after its position), whose seeds are every node's gossip address, and waits
// until the cluster includes it.
func (c *cluster) join(t testing.TB) *member {
	t.Helper()

	c.mu.Lock()
	c.seeds = append(c.seeds, freeLoopbackAddr(t))
	c.ports = append(c.ports, freeLoopbackAddr(t))
	i := len(c.seeds) - 1
	c.mu.Unlock()

	m := c.add(t, i)
	c.waitFormed(t)

	return m
}

// add starts node i (named node<i+1>, with its data under the cluster's directory), tweak changing its
// configuration.
func (c *cluster) add(t testing.TB, i int, tweak ...func(*node.Config)) *member {
	t.Helper()

	name := fmt.Sprintf("node%d", i+1)
	cfg := testConfig(t, filepath.Join(c.dir, name), c.reg)
	cfg.NodeName = name
	cfg.GossipListen = c.seeds[i]
	cfg.Join = slices.Clone(c.seeds)
	cfg.BootstrapExpect = c.expect
	cfg.ClusterSecret = clusterSecret
	cfg.Replicas = 2
	cfg.Logger = cfg.Logger.With("node", name)
	cfg = node.WithFastGossip(cfg)

	if c.secure {
		c.mu.Lock()
		cfg.ClusterListen, cfg.Join, cfg.ClusterSecret = c.ports[i], slices.Clone(c.ports), ""
		c.mu.Unlock()

		if i > 0 {
			cfg.JoinToken = c.token
		}

		// Imports need credentials in a secure cluster: the tests present the cluster secret as the API token.
		cfg.APITokenFile = filepath.Join(c.dir, "api-tokens")
		require.NoError(t, os.WriteFile(cfg.APITokenFile, []byte("tests:"+clusterSecret+"\n"), 0o600))
	}

	for _, f := range tweak {
		f(&cfg)
	}

	n, err := node.New(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	m := &member{running: &running{Node: n, base: "http://" + n.Addr()}, name: name, index: i, cancel: cancel,
		done: make(chan struct{})}
	m.stop = func() {}

	go func() {
		defer close(m.done)
		_ = n.Run(ctx) // its error after a kill or a stop is not what these tests check
	}()

	c.mu.Lock()
	c.nodes = append(c.nodes, m)
	c.mu.Unlock()

	return m
}

// kill crashes m (node.Kill) and waits for its Run to return.
func (c *cluster) kill(m *member) { c.end(m, true) }

// stop stops m gracefully, as SIGTERM does (its Run context ends), and waits for its Run to return.
func (c *cluster) stop(m *member) { c.end(m, false) }

func (c *cluster) end(m *member, crash bool) {
	c.mu.Lock()
	if m.killed {
		c.mu.Unlock()

		return
	}

	m.killed = true
	c.mu.Unlock()

	if crash {
		m.Kill()
	}

	m.cancel()
	<-m.done
}

func (c *cluster) killAll() {
	var wg sync.WaitGroup

	for _, m := range c.all() {
		wg.Go(func() { c.kill(m) })
	}

	wg.Wait()
}

func (c *cluster) all() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()

	return slices.Clone(c.nodes)
}

// live lists the nodes not killed.
func (c *cluster) live() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()

	return slices.DeleteFunc(slices.Clone(c.nodes), func(m *member) bool { return m.killed })
}

// byName finds a live node.
func (c *cluster) byName(t testing.TB, name string) *member {
	t.Helper()

	for _, m := range c.live() {
		if m.name == name {
			return m
		}
	}

	require.Failf(t, "no such live node", "%s", name)

	return nil
}

// leader is the live node every live node names as the Raft leader.
func (c *cluster) leader(t testing.TB) *member {
	t.Helper()

	return c.byName(t, c.status(t, c.live()[0]).Leader)
}

// steadyLeader waits (up to 30 s) until every live node names the same live leader, and returns it: a test that
// runs for minutes on a loaded machine may see the leadership move.
func (c *cluster) steadyLeader(t testing.TB) *member {
	t.Helper()

	var leader *member

	require.True(t, waitFor(30*time.Second, func() bool {
		name := ""

		for _, m := range c.live() {
			st := m.Status()
			if st.Leader == "" || name != "" && st.Leader != name {
				return false
			}

			name = st.Leader
		}

		leader = c.byNameOrNil(name)

		return leader != nil
	}), "the live nodes agree on a live leader")

	return leader
}

// status reads a node's GET /cluster.
func (c *cluster) status(t testing.TB, m *member) node.ClusterStatus {
	t.Helper()

	resp := m.do(t, "GET", "/cluster", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	var st node.ClusterStatus
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &st))

	return st
}

// waitFormed waits until every live node is ready, names the same leader, sees exactly the live nodes alive, has
// them all in its ring (same ring ID everywhere) and in the Raft configuration.
func (c *cluster) waitFormed(t testing.TB) {
	t.Helper()

	var why string

	ok := waitFor(60*time.Second, func() bool {
		why = c.notFormed()

		return why == ""
	})
	require.True(t, ok, "cluster did not form: %s", why)
}

// notFormed says what keeps the cluster from being formed, or "".
func (c *cluster) notFormed() string {
	live := c.live()
	names := make([]string, len(live))

	for i, m := range live {
		names[i] = m.name
	}

	slices.Sort(names)

	var leader, ringID string

	for _, m := range live {
		if err := m.Ready(context.Background()); err != nil &&
			(!c.noCatalog || !strings.Contains(err.Error(), "release catalog not read yet")) {
			return m.name + " not ready: " + err.Error()
		}

		st := m.Status()

		var alive []string

		for _, mb := range st.Members {
			if mb.State == "alive" {
				alive = append(alive, mb.Name)
			}

			if mb.State == "alive" && mb.Raft == "none" && mb.Name == st.Leader {
				return m.name + " sees the leader outside the raft configuration"
			}
		}

		switch {
		case !slices.Equal(alive, names):
			return fmt.Sprintf("%s sees alive %v, want %v", m.name, alive, names)
		case !slices.Equal(st.Ring.Members, names):
			return fmt.Sprintf("%s has ring members %v, want %v", m.name, st.Ring.Members, names)
		case leader != "" && st.Leader != leader || ringID != "" && st.Ring.ID != ringID:
			return m.name + " disagrees on the leader or the ring"
		}

		leader, ringID = st.Leader, st.Ring.ID
	}

	// The leader adds every alive member to the Raft configuration.
	lead := c.byNameOrNil(leader)
	if lead == nil {
		return "the leader " + leader + " is not a live node"
	}

	st := lead.Status()
	for _, mb := range st.Members {
		if mb.State == "alive" && mb.Raft == "none" {
			return mb.Name + " is not in the raft configuration yet"
		}
	}

	return ""
}

func (c *cluster) byNameOrNil(name string) *member {
	for _, m := range c.live() {
		if m.name == name {
			return m
		}
	}

	return nil
}

// builds sums edgefactory_builds_total over the live nodes.
func (c *cluster) builds(t testing.TB) float64 {
	t.Helper()

	total := 0.0
	for _, m := range c.live() {
		total += m.metric(t, "edgefactory_builds_total")
	}

	return total
}

// buildStarts waits until no live member builds or waits to build, checks that no build lost to an earlier
// recorded one (a duplicate), and returns the builds begun on all of them: a build is counted as it starts, so one
// still running or lost at its Raft commit is seen, unlike edgefactory_builds_total (counted as it ends).
func (c *cluster) buildStarts(t testing.TB) float64 {
	t.Helper()

	require.True(t, waitFor(2*time.Minute, func() bool {
		for _, m := range c.live() {
			if st := m.Status(); st.Builds.Running+st.Builds.Queued > 0 {
				return false
			}
		}

		return true
	}), "members still building after 2 minutes")

	total := 0.0

	for _, m := range c.live() {
		total += m.metric(t, "edgefactory_build_starts_total")
		require.Zero(t, m.metric(t, "edgefactory_build_conflicts_total"), "%s built a recipe already recorded", m.name)
	}

	return total
}

// recipeKey plans path on m and returns its recipe key, owner and holders (Replicas = 2) in m's ring view.
func (c *cluster) recipeKey(t testing.TB, m *member, id, version, path string) (key string, holders []string) {
	t.Helper()

	key, err := m.RecipeKey(context.Background(), id, version, path)
	require.NoError(t, err)

	return key, m.Holders(key, 2)
}

// other returns a live node whose name is none of names.
func (c *cluster) other(t testing.TB, names ...string) *member {
	t.Helper()

	for _, m := range c.live() {
		if !slices.Contains(names, m.name) {
			return m
		}
	}

	require.Fail(t, "every live node is excluded", "%v", names)

	return nil
}

// randomLive picks a live node.
func (c *cluster) randomLive() *member {
	live := c.live()

	return live[rand.IntN(len(live))]
}

// freeLoopbackAddr finds a loopback port free for both TCP and UDP (memberlist binds both), below the ephemeral
// range so that the nodes' other listeners (port 0) cannot be handed it before its node binds it.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()

	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))

		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}

		u, err := net.ListenPacket("udp", addr)
		l.Close()

		if err != nil {
			continue
		}

		u.Close()

		return addr
	}

	require.FailNow(t, "no free gossip port")

	return ""
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)

	for {
		if cond() {
			return true
		}

		if time.Now().After(deadline) {
			return false
		}

		time.Sleep(20 * time.Millisecond)
	}
}

// fetched is one GET whose body was hashed as it arrived, never held in memory.
type fetched struct {
	status  int
	header  http.Header
	size    int64  // body bytes received
	sha     string // hex sha256 of what was received (hashed downloads)
	crc     string // hex CRC-32C of what was received (unhashed downloads)
	err     error  // the request failed or the body ended early
	elapsed time.Duration
}

// complete reports whether the whole announced body arrived.
func (d fetched) complete() bool {
	return d.err == nil && d.status == http.StatusOK && d.size == contentLengthOf(d.header)
}

func contentLengthOf(h http.Header) int64 {
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		return -1
	}

	return n
}

// stormClient keeps a connection per concurrent download.
var stormClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 512, DisableCompression: true, IdleConnTimeout: 30 * time.Second,
}}

// fetchURL downloads url, hashing the body.
func fetchURL(client *http.Client, url string) fetched { return fetchWith(client, url, true) }

// fetchWith downloads url, hashing the body when hashed (else sha stays empty: a benchmark measures the server,
// not the client's hashing).
func fetchWith(client *http.Client, url string, hashed bool) fetched {
	start := time.Now()

	resp, err := client.Get(url)
	if err != nil {
		return fetched{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()

	// Unhashed downloads still check their bytes, with CRC-32C (the CPU's own instruction: hundreds of clients
	// sharing two cores with the servers would otherwise measure SHA-256 more than the serving).
	var h hash.Hash = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if hashed {
		h = sha256.New()
	}

	n, err := drain(h, resp.Body)
	d := fetched{status: resp.StatusCode, header: resp.Header, size: n, err: err, elapsed: time.Since(start)}

	if hashed {
		d.sha = hex.EncodeToString(h.Sum(nil))
	} else {
		d.crc = hex.EncodeToString(h.Sum(nil))
	}

	return d
}

// fileCRC is the CRC-32C of a file, to compare with unhashed downloads.
func fileCRC(t testing.TB, path string) string {
	t.Helper()

	f, err := os.Open(path)
	require.NoError(t, err)

	defer f.Close()

	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	_, err = io.Copy(h, f)
	require.NoError(t, err)

	return hex.EncodeToString(h.Sum(nil))
}

// drain copies a response body in 256 KiB steps, as a download client does (io.Discard alone reads 8 KiB at a
// time: hundreds of in-process clients would then measure their own system calls more than the server).
func drain(w io.Writer, body io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)

	return io.CopyBuffer(struct{ io.Writer }{w}, body, buf)
}

// storm sends requests concurrent GETs of path, round-robin over nodes, and returns every download (hashed).
func storm(nodes []*member, path string, requests int) []fetched {
	return stormWith(basesOf(nodes), path, requests, true)
}

// basesOf lists the nodes' base URLs.
func basesOf(nodes []*member) []string {
	bases := make([]string, len(nodes))
	for i, m := range nodes {
		bases[i] = m.base
	}

	return bases
}

// stormWith sends requests concurrent GETs of path, round-robin over the servers at bases.
func stormWith(bases []string, path string, requests int, hashed bool) []fetched {
	out := make([]fetched, requests)

	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
	)

	ready.Add(1)

	for i := range requests {
		base := bases[i%len(bases)]

		wg.Go(func() {
			ready.Wait() // all at once
			out[i] = fetchWith(stormClient, base+path, hashed)
		})
	}

	ready.Done()
	wg.Wait()

	return out
}
