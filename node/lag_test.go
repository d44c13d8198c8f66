package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestClusterNodeBehindTheLog: a node that comes back and owns keys built while it was away, but has not yet
// caught up with the Raft log, must not build them again. While it cannot reach the leader it refuses with a 503
// (it could not record a build either) and builds nothing; once it has caught up it serves the recorded bytes,
// copied from the node that built them.
func TestClusterNodeBehindTheLog(t *testing.T) {
	c := startSecretCluster(t, realUpstream(t), 3) // its gate stands in front of a Raft port of its own
	leader := c.leader(t)
	away := c.other(t, leader.name)
	id := leader.createSchematic(t, `customization: {extraKernelArgs: [behind-the-log]}`)

	// The node that goes away knows the schematic (and the catalog): it only misses what is built meanwhile.
	require.True(t, waitFor(10*time.Second, func() bool { return away.AppliedIndex() >= leader.AppliedIndex() }),
		"%s applies the schematic", away.name)
	c.kill(away)
	c.waitFormed(t)

	// Command lines for many platforms: distinct keys, cheap to build, some of them owned by the node once back.
	built := map[string]string{} // path → sha256
	paths := []string{}

	for _, platform := range []string{"metal", "aws", "gcp", "azure", "nocloud", "openstack", "vmware", "hcloud",
		"oracle", "exoscale", "scaleway", "upcloud", "vultr", "akamai", "digital-ocean", "equinixMetal"} {
		for _, arch := range []string{"amd64", "arm64"} {
			path := "/image/" + id + "/v1.13.0/cmdline-" + platform + "-" + arch
			d := fetchURL(http.DefaultClient, c.live()[len(paths)%2].base+path)
			require.True(t, d.complete(), "%s: %d %v", path, d.status, d.err)
			built[path], paths = d.sha, append(paths, path)
		}
	}

	// Back on the same data, but its Raft traffic passes a gate that is shut: memberlist puts it back on the ring
	// at once, the log cannot reach it.
	gate := newGate(t)
	back := c.restart(t, away, func(cfg *node.Config) {
		cfg.RaftListen = gate.target
		cfg.RaftAdvertise = gate.addr
	})

	var owned string

	require.True(t, waitFor(30*time.Second, func() bool {
		if len(back.Status().Members) < 3 {
			return false
		}

		for _, path := range paths {
			key, err := back.RecipeKey(t.Context(), id, "v1.13.0", path[strings.LastIndexByte(path, '/')+1:])
			require.NoError(t, err)

			if back.Owner(key) == back.Name() {
				owned = path

				return true
			}
		}

		return false
	}), "the returning node sees the others and owns one of %d keys", len(paths))

	// Two answers are right, depending on whether the node has learnt who leads yet: a 503 naming the Raft leader,
	// or the recorded bytes, read with the record it lacks from the leader (docs/architecture.md §6) and copied from
	// a holder. Never a build of its own.
	resp := back.do(t, "GET", owned, "", nil)
	if resp.StatusCode == http.StatusOK {
		sum := sha256.Sum256([]byte(resp.Body))
		assert.Equal(t, built[owned], hex.EncodeToString(sum[:]), "%s on the node behind the log: not the recorded bytes",
			owned)
	} else {
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s on the node behind the log: %s", owned,
			resp.Body)
		assert.Contains(t, resp.Body, "Raft leader")
		assert.False(t, back.HasBlob("sha256:"+built[owned]), "the node behind the log built %s", owned)
	}

	assert.Zero(t, back.metric(t, "edgefactory_builds_total"))

	gate.open()

	require.True(t, waitFor(60*time.Second, func() bool {
		d := fetchURL(http.DefaultClient, back.base+owned)

		return d.complete() && d.sha == built[owned]
	}), "once caught up, the node serves the recorded bytes of %s", owned)
	assert.Zero(t, back.metric(t, "edgefactory_builds_total"), "the node behind the log built nothing")
	assert.True(t, waitFor(10*time.Second, func() bool { // counted once the copy is stored, after its last byte
		return back.metric(t, "edgefactory_peer_fetches_total") > 0
	}), "it copied the bytes from a peer")
}

// gate forwards TCP connections from addr to target once opened; until then it holds them, as a network that
// drops everything would, without the sender seeing an error.
type gate struct {
	addr, target string

	once   sync.Once
	opened chan struct{}
	closed chan struct{}
}

func newGate(t *testing.T) *gate {
	t.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	g := &gate{addr: l.Addr().String(), target: freeLoopbackAddr(t), opened: make(chan struct{}),
		closed: make(chan struct{})}

	t.Cleanup(func() {
		close(g.closed)
		l.Close()
	})

	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}

			go g.forward(conn)
		}
	}()

	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *gate) forward(conn net.Conn) {
	defer conn.Close()

	select {
	case <-g.opened:
	case <-g.closed:
		return
	}

	out, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer out.Close()

	go func() {
		io.Copy(out, conn) //nolint:errcheck // either side hanging up ends the pair
		out.Close()
	}()

	io.Copy(conn, out) //nolint:errcheck // idem
}

// restart starts a killed member again on its data directory, with tweak applied to its configuration.
func (c *cluster) restart(t testing.TB, m *member, tweak func(*node.Config)) *member {
	t.Helper()

	require.True(t, m.killed, "restart %s: it is running", m.name)

	return c.add(t, m.index, tweak)
}
