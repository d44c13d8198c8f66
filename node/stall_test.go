package node_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestClusterStuckMember: a member whose HTTP side is stuck (it accepts connections and answers nothing, as one
// does on a dead disk while its gossip and Raft go on) must not hold downloads through other members forever: a
// request it was asked to build goes to the next holder, a copy it was to send comes from the next holder. A
// member that is building is not stuck: it keeps the asker waiting with heartbeats, and the asset is built once.
func TestClusterStuckMember(t *testing.T) {
	const silence = 2 * time.Second

	c, relays := startRelayedCluster(t, 3, func(_ int, cfg *node.Config) { *cfg = node.WithPeerSilence(*cfg, silence) })

	leader := c.leader(t)
	stuck := c.other(t, leader.name) // writes and read barriers go to the leader: keep its HTTP working
	id := leader.createSchematic(t, `customization: {extraKernelArgs: [stuck-member]}`)
	paths := ownedCmdlines(t, c, stuck, id, 2)
	client := &http.Client{Timeout: time.Minute}

	t.Run("the next holder builds what a stuck owner was asked for", func(t *testing.T) {
		_, holders := c.recipeKey(t, leader, id, "v1.13.0", paths[0])
		asker := c.other(t, holders...)
		builds := c.builds(t)

		relays[stuck.index].freeze()
		defer relays[stuck.index].thaw()

		d := fetchURL(client, asker.base+"/image/"+id+"/v1.13.0/"+paths[0])
		require.True(t, d.complete(), "through %s while the owner %s is stuck: %d %v", asker.name, stuck.name,
			d.status, d.err)
		assert.Equal(t, d.header.Get("X-Content-Sha256"), d.sha)
		assertGaveUpAfter(t, d.elapsed, silence)
		assert.Equal(t, builds+1, c.builds(t), "built once")
		assert.Zero(t, stuck.metric(t, "edgefactory_builds_total"), "the stuck owner built nothing")

		key, _ := c.recipeKey(t, leader, id, "v1.13.0", paths[0])

		var builder string

		require.True(t, waitFor(10*time.Second, func() bool { // the asker applies the record in its own time
			_, b, ok := asker.AssetRecord(key)
			builder = b

			return ok
		}), "no asset record")
		assert.Equal(t, holders[1], builder, "built by the next holder, not the asker %s", asker.name)
	})

	t.Run("a copy comes from the next holder when one holder is stuck", func(t *testing.T) {
		key, holders := c.recipeKey(t, leader, id, "v1.13.0", paths[1])
		built := fetchURL(client, stuck.base+"/image/"+id+"/v1.13.0/"+paths[1])
		require.True(t, built.complete(), "build through the owner: %v", built.err)

		digest, ok := stuck.AssetDigest(key)
		require.True(t, ok)
		require.True(t, waitFor(20*time.Second, func() bool { return c.byName(t, holders[1]).HasBlob(digest) }),
			"the owner pushes a copy to the second holder")

		asker := c.other(t, holders...)
		builds := c.builds(t)

		relays[stuck.index].freeze()
		defer relays[stuck.index].thaw()

		d := fetchURL(client, asker.base+"/image/"+id+"/v1.13.0/"+paths[1])
		require.True(t, d.complete(), "through %s while the holder %s is stuck: %d %v", asker.name, stuck.name,
			d.status, d.err)
		assertGaveUpAfter(t, d.elapsed, silence) // the stuck holder, first in line, was tried and given up
		assert.Equal(t, built.sha, d.sha)
		assert.Equal(t, builds, c.builds(t), "nothing rebuilt")
	})

	t.Run("an owner building longer than the silence limit is waited for", func(t *testing.T) {
		iso := leader.createSchematic(t, `customization: {extraKernelArgs: [stuck-member-iso]}`)
		_, holders := c.recipeKey(t, leader, iso, "v1.13.0", "metal-amd64.iso")
		asker := c.other(t, holders...)
		builds := c.builds(t)

		d := fetchURL(client, asker.base+"/image/"+iso+"/v1.13.0/metal-amd64.iso")
		require.True(t, d.complete(), "through %s: %d %v", asker.name, d.status, d.err)
		require.Greater(t, d.elapsed, silence, "the build outlasts the silence limit (else this proves nothing)")
		assert.Equal(t, builds+1, c.builds(t), "built once: the asker did not give up on the building owner")
	})
}

// giveUpMargin is how long after the silence limit a request that gave up on a stuck member may take to finish
// elsewhere (a cmdline's build or copy takes well under a second): well below the 30 s default silence, so an
// implementation ignoring the configured limit fails.
const giveUpMargin = 10 * time.Second

// assertGaveUpAfter checks that a request waited out the silence limit on a stuck member, and not much longer.
func assertGaveUpAfter(t *testing.T, elapsed, silence time.Duration) {
	t.Helper()

	assert.GreaterOrEqual(t, elapsed, silence, "given up before the silence limit")
	assert.Less(t, elapsed, silence+giveUpMargin, "given up long after the silence limit: the configured %v "+
		"was not the one used", silence)
}

// TestClusterCorruptResumedCopy: a copy that a holder with rotten bytes began and a healthy holder finished does
// not match its digest. Both senders are asked to check their copies (the one that started it is the culprit: it
// drops its copy, the healthy one keeps its own), and a client resuming the broken download from this node gets
// the whole asset again (200), not the missing end of it: its beginning came from the rotten copy.
//
// Controls: the same resume through a member with no corruption history gets 206, and once the asking member's
// memory of the bad copy has passed (badSourceMemory, 10 minutes, on a test clock) it gets 206 again.
func TestClusterCorruptResumedCopy(t *testing.T) {
	var shift atomic.Int64 // how far the members' copy-health clock is ahead of the real one

	clock := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	c, relays := startRelayedCluster(t, 3, func(_ int, cfg *node.Config) { *cfg = node.WithClock(*cfg, clock) })

	leader := c.leader(t)

	// An asset whose owner is not the leader (the owner's HTTP is cut below; writes go to the leader).
	var (
		id, path, key string
		holders       []string
	)

	for i := 0; ; i++ {
		require.Less(t, i, 50, "no UKI owned by a follower")

		id = leader.createSchematic(t, fmt.Sprintf(`customization: {extraKernelArgs: [resumed-corrupt=%d]}`, i))
		path = "/image/" + id + "/v1.13.0/metal-amd64-uki.efi"

		if key, holders = c.recipeKey(t, leader, id, "v1.13.0", "metal-amd64-uki.efi"); holders[0] != leader.name {
			break
		}
	}

	rotten, healthy := c.byName(t, holders[0]), c.byName(t, holders[1])
	good := fetchURL(http.DefaultClient, rotten.base+path)
	require.True(t, good.complete(), "build through the owner: %v", good.err)

	digest, ok := rotten.AssetDigest(key)
	require.True(t, ok)
	require.True(t, waitFor(20*time.Second, func() bool { return healthy.HasBlob(digest) }),
		"the owner pushes a copy to the second holder")

	// The owner's copy rots near its beginning; it sends the first MiB of it, then its connection breaks.
	flipByte(t, rotten.BlobPath(digest), 1000)
	relays[rotten.index].cutAfter(1 << 20)

	asker := c.other(t, holders...)
	failures := asker.metric(t, "edgefactory_peer_verify_failures_total")
	broken := fetchURL(http.DefaultClient, asker.base+path)
	require.False(t, broken.complete(), "a download started from rotten bytes must fail")
	require.Greater(t, broken.size, int64(1<<19), "the download had started")
	relays[rotten.index].cutAfter(-1)

	assert.Greater(t, asker.metric(t, "edgefactory_peer_verify_failures_total"), failures, "the mismatch is counted")
	assertNoCorruptCopy(t, asker, digest)
	assert.True(t, waitFor(10*time.Second, func() bool { return !rotten.HasBlob(digest) }),
		"the holder that began the copy was asked to check its copy, and dropped it")
	assert.True(t, healthy.HasBlob(digest), "the healthy holder keeps its copy")

	// The client resumes where its download broke, naming the asset it had begun.
	resume := func(m *member) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, m.base+path, nil)
		require.NoError(t, err)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", broken.size))
		req.Header.Set("If-Range", good.header.Get("ETag"))

		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)

		defer resp.Body.Close()

		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)

		return resp.StatusCode, string(body)
	}

	status, body := resume(asker)
	assert.Equal(t, http.StatusOK, status, "a resumed download of a copy that went wrong starts over")
	assert.Equal(t, good.sha, sha256Hex(body), "the whole asset, right")
	assertNoCorruptCopy(t, asker, digest)

	status, body = resume(healthy) // no corruption history there
	assert.Equal(t, http.StatusPartialContent, status, "the same resume through %s, which saw no bad copy",
		healthy.name)
	assert.Equal(t, good.size-broken.size, int64(len(body)), "the rest of the asset")

	shift.Store(int64(10*time.Minute + time.Second)) // the asker's memory of the bad copy has passed

	status, body = resume(asker)
	assert.Equal(t, http.StatusPartialContent, status, "resumed after the 10-minute window")
	assert.Equal(t, good.size-broken.size, int64(len(body)), "the rest of the asset")
}

// assertNoCorruptCopy checks that m stores no copy of digest, or only one whose bytes match it.
func assertNoCorruptCopy(t *testing.T, m *member, digest string) {
	t.Helper()

	if !m.HasBlob(digest) {
		return
	}

	data, err := os.ReadFile(m.BlobPath(digest))
	require.NoError(t, err)
	assert.Equal(t, digest, "sha256:"+sha256Hex(string(data)), "%s keeps a corrupt copy", m.name)
}

// startRelayedCluster starts a cluster on the real release whose members reach each other's HTTP through relays
// (one per member, by index) that can freeze or cut; clients, Raft and gossip go direct.
func startRelayedCluster(t *testing.T, size int, tweak ...func(i int, cfg *node.Config)) (*cluster, []*relay) {
	t.Helper()

	relays := make([]*relay, size)
	// On the cluster secret: the relay stands in front of a member's HTTP side, which carries the peer API there. In
	// a secure cluster the peer API shares the cluster port with Raft, and a relay in front of it would freeze Raft
	// as well, which is not the stuck member these tests describe (its gossip and Raft go on).
	c := startSecretCluster(t, realUpstream(t), size, append([]func(int, *node.Config){func(i int, cfg *node.Config) {
		cfg.Listen = freeLoopbackAddr(t)
		relays[i] = newRelay(t, cfg.Listen)
		cfg.ExternalURL = "http://" + relays[i].addr
	}}, tweak...)...)

	return c, relays
}

// ownedCmdlines returns n command-line asset paths of schematic id whose owner is m.
func ownedCmdlines(t *testing.T, c *cluster, m *member, id string, n int) []string {
	t.Helper()

	var paths []string

	for _, platform := range []string{"metal", "aws", "gcp", "azure", "nocloud", "openstack", "vmware", "hcloud",
		"oracle", "exoscale", "scaleway", "upcloud", "vultr", "akamai", "digital-ocean", "equinixMetal"} {
		for _, arch := range []string{"amd64", "arm64"} {
			path := fmt.Sprintf("cmdline-%s-%s", platform, arch)
			if _, holders := c.recipeKey(t, m, id, "v1.13.0", path); holders[0] == m.name {
				paths = append(paths, path)
			}

			if len(paths) == n {
				return paths
			}
		}
	}

	require.Failf(t, "too few keys", "%s owns %d of the command lines, want %d", m.name, len(paths), n)

	return nil
}

// relay forwards TCP connections to target. Frozen, it passes nothing in either direction, on connections open
// or new, while still accepting them: what the other side sees of a member that is stuck. A connection that
// carried anything while frozen is cut when the relay thaws, its bytes dropped (the member was restarted), so
// nothing asked of the stuck member is done late.
type relay struct {
	addr string

	mu     sync.Mutex
	thawed chan struct{} // closed while the relay passes bytes
	budget int64         // bytes still to pass towards clients before their connection is cut; < 0: no limit
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	r := &relay{addr: l.Addr().String(), thawed: make(chan struct{}), budget: -1}
	close(r.thawed)

	var (
		mu    sync.Mutex
		conns []net.Conn
	)

	t.Cleanup(func() {
		l.Close()
		r.thaw()

		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}

			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()

				continue
			}

			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()

			go r.pump(out, in, false)
			go r.pump(in, out, true)
		}
	}()

	return r
}

func (r *relay) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()

	select {
	case <-r.thawed:
		r.thawed = make(chan struct{})
	default:
	}
}

func (r *relay) thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()

	select {
	case <-r.thawed:
	default:
		close(r.thawed)
	}
}

// held waits out a freeze and says whether there was one.
func (r *relay) held() bool {
	r.mu.Lock()
	thawed := r.thawed
	r.mu.Unlock()

	select {
	case <-thawed:
		return false
	default:
		<-thawed

		return true
	}
}

// cutAfter lets n more bytes through towards clients, then cuts the connection carrying them (a member that
// crashes in the middle of sending).
func (r *relay) cutAfter(n int64) {
	r.mu.Lock()
	r.budget = n
	r.mu.Unlock()
}

// allow takes up to n bytes from the budget and says how many may pass, and whether the connection is then cut.
func (r *relay) allow(n int) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.budget < 0 {
		return n, false
	}

	pass := min(int64(n), r.budget)
	r.budget -= pass

	return int(pass), pass < int64(n) || r.budget == 0
}

// pump copies src to dst; what it reads while the relay is frozen ends both connections once thawed, and bytes
// towards the client (toClient) beyond the budget end them too.
func (r *relay) pump(dst, src net.Conn, toClient bool) {
	defer dst.Close()
	defer src.Close()

	buf := make([]byte, 64<<10)

	for {
		n, err := src.Read(buf)
		if r.held() {
			return
		}

		cut := false
		if toClient {
			n, cut = r.allow(n)
		}

		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}

		if err != nil || cut {
			return
		}
	}
}
