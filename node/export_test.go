package node

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/imager/recipe"
)

// Test-only hooks for the black-box cluster tests (package node_test).

// WithFastGossip shortens gossip failure detection (about a second on loopback instead of several), seed
// re-joins and the bootstrap settle time, so cluster tests do not wait for LAN timers. The values leave room
// for a loaded machine: builds share two cores with the nodes, and a false death would move keys mid-test.
func WithFastGossip(cfg Config) Config {
	cfg.tune = &tuning{
		gossip: func(c *memberlist.Config) {
			c.ProbeInterval = 250 * time.Millisecond
			c.ProbeTimeout = 150 * time.Millisecond
			c.GossipInterval = 50 * time.Millisecond
			c.PushPullInterval = 2 * time.Second
			c.SuspicionMult = 3
			c.GossipToTheDeadTime = 2 * time.Second
			c.TCPTimeout = 2 * time.Second
		},
		rejoin: time.Second,
		settle: 500 * time.Millisecond,
	}

	return cfg
}

// WithClock sets the clock of what the member remembers about copies that went wrong (tests move it forward).
func WithClock(cfg Config, now func() time.Time) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.now = now

	return cfg
}

// WithPeerSilence shortens how long a peer may send nothing (no answer, no heartbeat, no bytes) before a request
// to it is abandoned for the next holder.
func WithPeerSilence(cfg Config, d time.Duration) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.peerSilence = d

	return cfg
}

// WithDrain shortens how long requests under way may finish when the node stops.
func WithDrain(cfg Config, d time.Duration) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.drain = d

	return cfg
}

// WithRaftBackoff leaves calls to unreachable Raft followers to raft's own exponential back-off, as before the
// transport held them (for showing what the hold changes).
func WithRaftBackoff(cfg Config) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.raftBackoff = true

	return cfg
}

// RaftAddr is the address other members dial for this node's Raft traffic.
func (n *Node) RaftAddr() string { return n.store.Addr() }

// PauseApply holds this node's Raft state machine (the log still replicates here) until resume is called.
func (n *Node) PauseApply() (resume func()) { return n.store.PauseApply() }

// AppliedIndex is the last Raft log index applied to this node's state.
func (n *Node) AppliedIndex() uint64 { return n.store.AppliedIndex() }

// Kill stops the node abruptly, as a crash would: gossip stops without a leave, Raft stops without handing
// leadership over or leaving the configuration, builds are cancelled and every HTTP connection is cut. Run then
// returns (with an error) once its context ends, without leaving; Close is still safe.
func (n *Node) Kill() {
	// Run must not leave gracefully once its HTTP server stops (it would ask the leader to remove this node).
	n.crashed.Store(true)
	n.cluster.Shutdown()
	n.store.Close()  // a crash reports nothing
	n.server.Close() // idem

	if n.secure != nil {
		n.secure.server.Close() // idem
		n.secure.port.Close()
	}

	n.cancel()
	n.builder.Close() // idem
}

// Name is the node's member name.
func (n *Node) Name() string { return n.cfg.NodeName }

// RecipeKey plans the asset at path for a schematic and version on this node and returns its recipe key.
func (n *Node) RecipeKey(ctx context.Context, schematicID, version, path string) (string, error) {
	r, err := n.catalog.Plan(ctx, schematicID, version, path, recipe.ParsePath)

	return r.Key, err
}

// Owner is the member that owns key in this node's ring view.
func (n *Node) Owner(key string) string {
	owner, _ := n.cluster.Owner(key)

	return owner
}

// Holders are the members that should hold key in this node's ring view, the owner first.
func (n *Node) Holders(key string, count int) []string { return n.cluster.Holders(key, count) }

// AssetDigest is the content digest ("sha256:…") the replicated index records for key on this node.
func (n *Node) AssetDigest(key string) (string, bool) {
	digest, _, ok := n.AssetRecord(key)

	return digest, ok
}

// AssetRecord is the content digest and the builder the replicated index records for key on this node.
func (n *Node) AssetRecord(key string) (digest, builder string, ok bool) {
	rec, ok, err := n.store.Asset(key)

	return rec.Digest, rec.Builder, ok && err == nil
}

// HasBlob reports whether this node's CAS holds digest.
func (n *Node) HasBlob(digest string) bool { return n.cas.Has(digest) }

// BlobPath is where this node's CAS keeps digest's file (the layout documented by package cas).
func (n *Node) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")

	return filepath.Join(n.cfg.DataDir, "cas", "sha256", hex[:2], hex)
}

// DropBlob deletes digest from this node's CAS (a benchmark's next first download).
func (n *Node) DropBlob(digest string) error { return n.cas.Delete(digest) }

// WithoutNetbootServer keeps Run from starting the proxyDHCP and TFTP listeners (port 67 on a real interface) and
// the wait for the iPXE binaries: the test calls AwaitIPXE or FetchIPXE itself.
func WithoutNetbootServer(cfg Config) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.noNetbootServer = true

	return cfg
}

// WithIPXEPoll shortens how often a member waiting for the iPXE binaries reads the cluster setting.
func WithIPXEPoll(cfg Config, d time.Duration) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.ipxePoll = d

	return cfg
}

// AwaitIPXE waits until the cluster names iPXE binaries and this member has them in its iPXE directory.
func (n *Node) AwaitIPXE(ctx context.Context) error { return n.awaitIPXE(ctx) }

// FetchIPXE tries once to bring the cluster's iPXE binaries into this member's iPXE directory.
func (n *Node) FetchIPXE(ctx context.Context) error { return n.fetchIPXE(ctx) }

// IPXEDir is the directory this member's network boot serves the iPXE binaries from.
func (n *Node) IPXEDir() string { return n.cfg.ipxeDir() }

// IPXESetting is the cluster setting naming the iPXE binaries, as this member's state holds it.
func (n *Node) IPXESetting() (string, bool) {
	raw, ok, err := n.store.Setting("netboot/ipxe")

	return string(raw), ok && err == nil
}

// ExpiredJoinToken records a join token of the cluster that expired an hour ago and returns it.
func (n *Node) ExpiredJoinToken(ctx context.Context) (string, error) {
	ca, err := n.secure.signingCA(n.store)
	if err != nil {
		return "", err
	}

	token, rec, err := newToken(ca, time.Hour, "test")
	if err != nil {
		return "", err
	}

	rec.Expires = time.Now().Add(-time.Hour)

	return token.String(), n.putJSONSetting(ctx, tokenPrefix+rec.ID, rec)
}

// WithCertValidity shortens how long member certificates last (they renew with a third of it left).
func WithCertValidity(cfg Config, d time.Duration) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.certValidity = d

	return cfg
}

// WithProfileArch makes the member's build profile name arch as its architecture (an arm64 member on this host).
func WithProfileArch(cfg Config, arch string) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.profileArch = arch

	return cfg
}

// WithToolCheck replaces the member's host-tool check at start (check runs the real one in another environment).
func WithToolCheck(cfg Config, check func(context.Context) hosttools.Report) Config {
	if cfg.tune == nil {
		cfg.tune = &tuning{}
	}

	cfg.tune.checkTools = check

	return cfg
}

// Builder is the member that builds key in this node's view: the first on the ring of members that may build.
func (n *Node) Builder(key string) string {
	if b := n.cluster.Builders(key); len(b) > 0 {
		return b[0]
	}

	return ""
}

// AssetProfile is the build profile the replicated index records for key on this node.
func (n *Node) AssetProfile(key string) string {
	rec, _, _ := n.store.Asset(key)

	return rec.Profile
}
