// Package node composes a running Edge Factory member: it opens the replicated state (raftstore), joins the
// cluster, builds each capability under node/internal (peer, cluster, assets, catalog, registry, keys) complete
// from what it needs, and mounts the frontends on one HTTP listener; it runs the leader's duties, says when the
// member is ready, and stops it gracefully. Every member runs the same code; a single node is a cluster of one.
// docs/architecture.md describes the whole.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/api"
	"github.com/edgefactory/edgefactory/frontends/auth"
	"github.com/edgefactory/edgefactory/frontends/imports"
	machinesapi "github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/netboot"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/frontends/pxe"
	"github.com/edgefactory/edgefactory/frontends/ratecap"
	settingsapi "github.com/edgefactory/edgefactory/frontends/settings"
	"github.com/edgefactory/edgefactory/frontends/ui"
	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/buildprofile"
	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/imager/inputs"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/internal/connlimit"
	"github.com/edgefactory/edgefactory/internal/memo"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/node/internal/assets"
	"github.com/edgefactory/edgefactory/node/internal/catalog"
	"github.com/edgefactory/edgefactory/node/internal/cluster"
	"github.com/edgefactory/edgefactory/node/internal/keys"
	"github.com/edgefactory/edgefactory/node/internal/machines"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/node/internal/registry"
	"github.com/edgefactory/edgefactory/node/internal/settings"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Node is one running member.
type Node struct {
	cfg      Config
	log      *slog.Logger
	store    *raftstore.Store
	metrics  *metrics
	reg      *prometheus.Registry
	catalog  *catalog.Catalog
	profile  buildprofile.Profile // what decides the bytes this member would build
	keys     *keys.SecureBoot
	cosign   *keys.Cosign
	cas      *cas.Store
	builder  *imager.Builder
	assets   *assets.Service
	registry *registry.Registry
	cluster  *cluster.Cluster
	peers    *peer.Client
	machines *machines.Table
	settings *settings.Keeper
	secure   *secure     // nil unless members talk mutual TLS on the cluster port (ClusterListen)
	guard    *auth.Guard // credentials of protected writes
	// settingsChanged wakes the leader's duties when the catalog policy changed (capacity 1).
	settingsChanged chan struct{}
	netboot         *netboot.Server
	// netbootWaits: network boot is on but the iPXE binaries are not in <data>/ipxe yet; Run starts it once they
	// came from the cluster.
	netbootWaits bool
	// netbootSegments maps each network-boot interface to its prefix, as gossiped.
	netbootSegments map[string]string

	// ctx ends when the node closes: background work (transfers to and from peers) stops with it.
	ctx    context.Context //nolint:containedctx // the node's lifetime
	cancel context.CancelFunc

	pxe *memo.Memo[string, pxeEntry] // PXE request → answer

	ln     net.Listener
	server *http.Server

	closeOnce sync.Once
	closeErr  error

	// crashed is set by the tests' Kill (export_test.go): a crashed node leaves nothing gracefully.
	crashed atomic.Bool
}

// New opens the member's state and binds its listener; Run starts serving.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}

	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "tmp"), filepath.Join(cfg.DataDir, "tools")} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}

	// The Raft log and its snapshots hold the cluster's private keys (secure boot, PCR, cosign), and raft writes
	// snapshots with the process umask (022, for reproducible builds): only the directory keeps others out.
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}

	// An older version made it wider.
	if err := os.Chmod(raftDir, 0o700); err != nil { //nolint:gosec // G302 takes a directory's 0700 for a file mode
		return nil, fmt.Errorf("restrict %s: %w", raftDir, err)
	}

	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), pxe: memo.New[string, pxeEntry](100_000),
		peers: peer.NewClient(cfg.ClusterSecret, cfg.peerSilence(), nil)}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	if cfg.InputVerifyOff {
		n.log.Warn("input verification is off (--input-verify=off): release inputs and imported images are used " +
			"without checking their signatures; for labs only")
	}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newMetrics(n.reg)

	guard, err := auth.New(auth.Config{TokenFile: cfg.APITokenFile, Htpasswd: cfg.Htpasswd, Dev: cfg.Dev,
		ProtectWrites: cfg.ProtectWrites, Imports: cfg.ClusterListen != "", Registerer: n.reg})
	if err != nil {
		n.cancel()

		return nil, fmt.Errorf("configuration: %w", err)
	}

	n.guard = guard

	if cfg.ClusterListen != "" {
		if err := n.openSecure(); err != nil {
			n.cancel()

			return nil, fmt.Errorf("secure cluster: %w", err)
		}
	} else if cfg.ClusterSecret != "" {
		n.log.Warn("members authenticate with --cluster-secret over plain HTTP, which anyone on the network can " +
			"read: move the cluster to mutual TLS (--cluster-listen and join tokens, README \"Securing a cluster\")")
	}

	if err := n.openStore(); err != nil {
		n.closeState()

		return nil, err
	}

	ln, err := (&net.ListenConfig{}).Listen(n.ctx, "tcp", cfg.Listen)
	if err != nil {
		n.closeState()

		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}

	n.ln = connlimit.Listen(ln, connlimit.Options{Max: cfg.MaxConnections, Stall: cfg.StallTimeout})
	if n.cfg.ExternalURL == "" {
		scheme := "http://"
		if cfg.TLSCert != "" {
			scheme = "https://"
		}

		n.cfg.ExternalURL = scheme + advertisable(ln.Addr().String())
	}

	n.cfg.ExternalURL = strings.TrimSuffix(n.cfg.ExternalURL, "/")

	if n.netbootSegments, err = netbootSegments(cfg.NetbootInterfaces); err != nil {
		ln.Close() // already failing
		n.closeState()

		return nil, err
	}

	if err := n.installTools(); err != nil {
		ln.Close() // already failing
		n.closeState()

		return nil, err
	}

	if n.cluster, err = cluster.New(n.clusterConfig(), n.store, n.peers); err != nil {
		ln.Close() // already failing
		n.closeState()

		return nil, err
	}

	if err := n.open(); err != nil {
		ln.Close() // already failing
		n.closeState()

		return nil, err
	}

	if cfg.ipxeFromCluster() && !n.ipxePresent() {
		n.netbootWaits = true // Run waits for them, and says so at once
	} else if n.netboot, err = n.newNetboot(); err != nil {
		ln.Close() // already failing
		n.closeState()

		return nil, err
	}

	n.server = &http.Server{
		Handler:           n.router(),
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}

	return n, nil
}

// openStore opens the replicated state.
func (n *Node) openStore() error {
	cfg := n.cfg

	store, err := raftstore.Open(raftstore.Config{
		NodeID:        cfg.NodeName,
		RaftDir:       filepath.Join(cfg.DataDir, "raft"),
		StatePath:     filepath.Join(cfg.DataDir, "state.db"),
		BindAddr:      cfg.RaftListen,
		AdvertiseAddr: cfg.RaftAdvertise,
		Stream:        n.raftStream(),
		// A lone node forms its cluster at once; anything with company bootstraps through the cluster package,
		// which first asks the seeds whether a cluster already exists.
		Bootstrap:   cfg.BootstrapExpect == 1 && len(cfg.Join) == 0,
		Logger:      n.log,
		RaftBackoff: cfg.tune != nil && cfg.tune.raftBackoff,
	})
	if err != nil {
		return fmt.Errorf("open replicated state in %s: %w", cfg.DataDir, err)
	}

	n.store = store

	return nil
}

// staleReadsEnv, set to 1, makes reads skip the leader check (cluster.Config.StaleReads). It exists for one test
// only: the linearizability check in e2e/netns runs a cluster with it to show that the check catches stale reads.
// It is read here and nowhere else, and is no flag so that nobody turns it on by accident.
const staleReadsEnv = "EDGEFACTORY_TEST_STALE_READS"

// clusterConfig is this member's part in the cluster as configured.
func (n *Node) clusterConfig() cluster.Config {
	cfg := n.cfg
	cc := cluster.Config{
		NodeName: cfg.NodeName, URL: cfg.ExternalURL, Zone: cfg.Zone, Version: cfg.Version,
		GossipListen: cfg.GossipListen, GossipAdvertise: cfg.GossipAdvertise, Join: cfg.Join, GossipKey: cfg.GossipKey,
		BootstrapExpect: cfg.BootstrapExpect, DeadMemberGrace: cfg.DeadMemberGrace, RingPartitions: cfg.RingPartitions,
		NetbootSegments: slices.Sorted(maps.Values(n.netbootSegments)), Logger: n.log, Registerer: n.reg,
		StaleReads: os.Getenv(staleReadsEnv) == "1",
		Build:      buildprofile.MemberOf(cfg.NodeName, n.profile, cfg.Role),
	}
	if cc.StaleReads {
		n.log.Warn("reads skip the Raft leader check and may be stale: " + staleReadsEnv + "=1 is for tests only")
	}
	if n.secure != nil {
		cc.PeerURL = "https://" + n.secure.port.Addr().String()
		cc.Join, cc.ResolveSeeds, cc.GossipKey = n.seedsOtherThanSelf(), n.secure.resolveSeeds, n.secure.gossipKey
	}

	if cfg.tune != nil {
		cc.Tune = &cluster.Tune{Gossip: cfg.tune.gossip, Rejoin: cfg.tune.rejoin, Settle: cfg.tune.settle}
	}

	return cc
}

// open opens the rest of the member's state: the CAS, release inputs, the builder and its tools, the keys.
func (n *Node) open() error {
	cfg := n.cfg
	store := n.store

	var err error

	src := release.Source{
		Registry:   cfg.Upstream.Registry,
		Namespace:  cfg.Upstream.Namespace,
		Insecure:   cfg.Upstream.Insecure,
		MinVersion: cfg.Upstream.MinVersion,
		Broken:     cfg.Upstream.Broken,
		Trust:      cfg.trust(),
	}

	if cfg.Upstream.Cluster() {
		// The cluster is its own upstream: the catalog and the release inputs are read from this member's own
		// /v2/siderolabs/… (which serves the images a bundle brought), over loopback: nothing leaves the cluster.
		src.Registry, src.Insecure = loopback(n.ln.Addr().String()), true
	}

	if n.keys, err = keys.NewSecureBoot(store, cfg.SecureBoot, cfg.SecureBootKeyBits, n.log.With("component", "keys")); err != nil {
		return err
	}

	if n.cosign, err = keys.NewCosign(store, cfg.CosignKey, n.log.With("component", "keys")); err != nil {
		return err
	}

	if n.cas, err = cas.Open(filepath.Join(cfg.DataDir, "cas"), cas.Options{
		Budget: cfg.CacheSize, MinFree: cfg.LowSpaceWatermark, Logger: n.log.With("component", "cas"),
	}); err != nil {
		return fmt.Errorf("open asset store: %w", err)
	}

	inputs, err := inputs.Open(filepath.Join(cfg.DataDir, "inputs"), src, n.log.With("component", "inputs"))
	if err != nil {
		return fmt.Errorf("open release inputs: %w", err)
	}

	n.builder, err = imager.New(imager.Config{
		TmpDir:      filepath.Join(cfg.DataDir, "tmp"),
		Concurrency: cfg.BuildConcurrency,
		QueueDepth:  cfg.BuildQueue,
		Timeout:     cfg.BuildTimeout,
		Nice:        cfg.BuildNice,
		Inputs:      inputs,
		SecureBoot:  n.keys.Current,
		RequestID:   frontends.RequestID,
		Logger:      n.log.With("component", "builder"),
	})
	if err != nil {
		return fmt.Errorf("set up the builder: %w", err)
	}

	n.settings = settings.New(settings.Config{
		Store: store, Leader: n.cluster, Confirm: n.cluster.ConfirmRead, Initial: cfg.initialSettings(),
		Apply: n.applySettings, Check: n.checkSettings,
		Logger: n.log.With("component", "settings"),
	})
	n.settingsChanged = make(chan struct{}, 1)

	n.catalog = catalog.New(catalog.Config{
		Store: store, Leader: n.cluster, Schematics: n, Keys: n.keys, Profile: n.cluster, Source: src, Refresh: cfg.CatalogRefresh,
		Recheck: cfg.CatalogRecheck, Registerer: n.reg, Logger: n.log.With("component", "catalog"),
	})

	n.assets = assets.New(assets.Config{
		Store: store, CAS: n.cas, Builder: n.builder, Members: n.cluster, Leader: n.cluster, Peers: n.peers,
		Replicas: n.settings.Replicas, Profile: n.profile.ID(), Background: n.ctx, Registerer: n.reg,
		Logger: n.log.With("component", "assets"), Now: cfg.copyClock(),
	})

	n.registry = registry.New(registry.Config{
		Self: cfg.NodeName, Store: store, Leader: n.cluster, Assets: n.assets, Planner: n.catalog, Cosign: n.cosign,
		Upstream: registry.Upstream{Registry: src.Registry, Namespace: src.Namespace, Insecure: src.Insecure,
			Cluster: cfg.Upstream.Cluster()},
		Members: n.cluster, Peers: n.peers, Replicas: n.settings.Replicas, Trust: *cfg.trust(),
		Background: n.ctx, Logger: n.log.With("component", "registry"),
	})

	n.machines = n.newMachines()

	return nil
}

// installTools puts the host-tool adapters first on PATH, reports tools the imager will miss, and makes this
// member's build profile from what it found.
func (n *Node) installTools() error {
	dir := filepath.Join(n.cfg.DataDir, "tools")
	if err := hosttools.Install(dir); err != nil {
		return fmt.Errorf("install host-tool adapters: %w", err)
	}

	if err := hosttools.PrependPath(dir); err != nil {
		return fmt.Errorf("host-tool adapters on PATH: %w", err)
	}

	check, arch := hosttools.Check, runtime.GOARCH
	if t := n.cfg.tune; t != nil && t.checkTools != nil {
		check = t.checkTools
	}

	if t := n.cfg.tune; t != nil && t.profileArch != "" {
		arch = t.profileArch
	}

	report := check(context.Background())
	n.profile = buildprofile.New(n.cfg.Version, imager.Version, arch, report)
	n.log.Info("build profile", "profile", n.profile.ID(), "arch", arch, "builder", imager.Version,
		"role", n.cfg.Role)
	if missing := report.MissingRequired(); len(missing) > 0 {
		n.log.Error("host tools missing: builds that need them will fail; run `make deps` or `edgefactory doctor`",
			"missing", missing)
	}

	for _, t := range report.Degraded() {
		n.log.Warn("host tool degraded: this member does not build (its bytes would differ from other members'), "+
			"it fetches and serves; run `make deps` or `edgefactory doctor`", "tool", t.Name, "why", t.Why)
	}

	if missing := report.MissingForReproducibility(); len(missing) > 0 {
		n.log.Warn("host tools missing for reproducible builds: the same asset built on two nodes will differ; "+
			"run `make deps` or `edgefactory doctor`", "missing", missing)
	}

	return nil
}

// closeState closes whatever open opened.
func (n *Node) closeState() {
	if n.cluster != nil {
		n.cluster.Shutdown()
	}

	if n.store != nil {
		n.store.Close() // already failing
	}

	if n.cas != nil {
		n.cas.Close() // already failing
	}

	if n.secure != nil {
		n.secure.port.Close() // already failing
	}
}

// raftStream is the stream Raft runs on: the cluster port in a secure cluster, else nil (a port of its own).
func (n *Node) raftStream() raft.StreamLayer {
	if n.secure == nil {
		return nil
	}

	return n.secure.port.Raft()
}

// loopback is the address this host reaches a listener at without leaving it: a wildcard address becomes the
// loopback address of its family.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}

	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}

	return net.JoinHostPort(host, port)
}

// advertisable turns a listener address into one a client can dial (0.0.0.0 and :: become the host name).
func advertisable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}

	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}

	return net.JoinHostPort(host, port)
}

func (n *Node) router() http.Handler {
	a := &api.API{Schematics: n, Catalog: n.catalog, Assets: n, Talosctl: n, Health: n, Mirrors: n, Logger: n.log,
		ExternalURL: n.cfg.ExternalURL}
	p := &pxe.PXE{Assets: n, BaseURL: n.pxeURL(), Fixed: n.cfg.PXEURL != "", Machines: n.machines, Logger: n.log}
	machineAPI := &machinesapi.API{Table: n.machines, Logger: n.log}
	wizard := &ui.UI{Schematics: n, Catalog: n.catalog, Talosctl: n, Logger: n.log, ExternalURL: n.cfg.ExternalURL,
		PXEURL: n.pxeURL().String(), Cluster: n, Assets: n, Machines: n.machines}
	settingsAPI := &settingsapi.API{Store: n.settings, Who: auth.Who, Logger: n.log}
	mounts := []frontends.Mount{a.Mount, p.Mount, machineAPI.Mount, wizard.Mount, settingsAPI.Mount, n.mountSecureAPI}

	switch {
	case n.cfg.ipxeFromCluster():
		mounts = append(mounts, netboot.MountBinaries(os.DirFS(n.cfg.ipxeDir()), "iPXE binaries not imported yet: "+
			"import a bundle made with `edgefactory mirror --ipxe-dir`"))
	case n.cfg.IPXEDir != "":
		mounts = append(mounts, netboot.MountBinaries(os.DirFS(n.cfg.IPXEDir), ""))
	}
	peers := peer.NewServer(peer.ServerConfig{
		Secret: n.cfg.ClusterSecret, MutualTLS: n.secure != nil, Store: n.store, Membership: n.cluster, Blobs: n.cas, Assets: peerAssets{n},
		Builds:  peerBuilds{n},
		Silence: n.peers.Silence(), Registerer: n.reg, Logger: n.log,
	})
	registryAPI := &oci.OCI{Registry: n.registry, Schematics: n, Logger: n.log}
	importAPI := &imports.API{Importer: n.registry, Secret: n.cfg.ClusterSecret, Logger: n.log}

	public := []frontends.Mount{registryAPI.Mount, importAPI.Mount}
	if n.secure == nil {
		public = append(public, peers.Mount)
	} else {
		n.secure.server = &http.Server{
			Handler:           n.clusterRouter(peers.Mount),
			ReadHeaderTimeout: headerTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		}
	}

	return frontends.NewRouter(frontends.RouterOptions{
		Version:    n.cfg.Version,
		Logger:     n.log.With("component", "http"),
		Registerer: n.reg,
		Guard:      n.guard.Middleware,
		RateCap: ratecap.New(ratecap.Caps{Client: n.cfg.ClientRate, Member: n.cfg.MemberRate},
			func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, peer.Prefix+"/") }).Middleware,
	}, append(append(mounts, public...), func(r chi.Router) {
		r.Get("/cluster", n.clusterStatus)
		r.Get("/ui/api/asset-status", n.assetStatus)
		r.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	})...)
}

// pxeURL is where PXE scripts point: --pxe-url, else this node's advertised URL.
func (n *Node) pxeURL() *url.URL {
	raw := n.cfg.PXEURL
	if raw == "" {
		raw = n.cfg.ExternalURL
	}

	u, err := url.Parse(raw)
	if err != nil { // validate checked both URLs: unreachable
		return &url.URL{Scheme: "http", Host: advertisable(n.Addr())}
	}

	return u
}

// Addr is the HTTP listener's address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is the node's advertised base URL.
func (n *Node) URL() string { return n.cfg.ExternalURL }

// Run serves until ctx ends, then shuts down gracefully.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("edge factory node starting", "node", n.cfg.NodeName, "listen", n.Addr(), "url", n.cfg.ExternalURL,
		"data", n.cfg.DataDir, "upstream", n.cfg.Upstream.Registry+"/"+n.cfg.Upstream.Namespace)

	// A listener failing ends the run as SIGTERM would: the background work below must stop with it.
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	serveErr := make(chan error, 2) // the public server and, in a secure cluster, the cluster port's

	go func() {
		if n.cfg.TLSCert != "" {
			serveErr <- n.server.ServeTLS(n.ln, n.cfg.TLSCert, n.cfg.TLSKey)
		} else {
			serveErr <- n.server.Serve(n.ln)
		}
	}()

	if n.secure != nil {
		go func() { serveErr <- n.secure.server.Serve(n.secure.port.Peer()) }()
	}

	netbootErr := make(chan error, 1)

	switch {
	case n.cfg.tune != nil && n.cfg.tune.noNetbootServer:
	case n.netboot != nil:
		go func() { netbootErr <- n.netboot.Run(ctx) }()
	case n.netbootWaits:
		go n.runNetbootWhenReady(ctx, netbootErr)
	}

	syncDone := make(chan struct{})

	go func() {
		defer close(syncDone)

		var wg sync.WaitGroup

		wg.Go(func() { n.cluster.Run(ctx) })
		wg.Go(func() { n.settings.Run(ctx) })
		wg.Go(func() { n.recordProfile(ctx) })

		if n.secure != nil {
			wg.Go(func() { n.secure.follow(ctx, n) })
		}
		n.leaderDuties(ctx)
		wg.Wait()
	}()

	var err error

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	case err = <-netbootErr:
		err = fmt.Errorf("network boot: %w", err)
	}

	stop()

	if err != nil {
		n.log.Error("edge factory node stopping", "node", n.cfg.NodeName, "error", err)
	} else {
		n.log.Info("edge factory node stopping", "node", n.cfg.NodeName)
	}

	// Leave first, while still serving: others stop routing here as soon as the leave is announced, and requests
	// already here finish during the HTTP shutdown below.
	leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 10*time.Second)
	if crashed := n.crashed.Load(); !crashed {
		if lerr := n.cluster.Leave(leaveCtx); lerr != nil {
			n.log.Warn("leaving the cluster", "error", lerr)
		}
	}

	cancelLeave()

	n.drain()

	<-syncDone

	return errors.Join(err, n.Close())
}

// drainTimeout is how long a stopping node lets requests under way finish: enough for scripts and small files, and
// well inside systemd's stop timeout. A multi-GB download still running then is cut: its client resumes it from
// another member (or this one, restarted) with Range.
const drainTimeout = 10 * time.Second

// A client has headerTimeout to send a request's headers, and a kept-alive connection with no request is closed
// after idleTimeout. (A request body is read as fast as the handler wants it; a stalled response is cut by
// Config.StallTimeout.)
const (
	headerTimeout = 10 * time.Second
	idleTimeout   = 2 * time.Minute
)

// drain stops the HTTP server, letting requests under way finish for the drain time, then cutting what is left.
// Cutting downloads is part of a normal stop, not a failure.
func (n *Node) drain() {
	timeout := drainTimeout
	if n.cfg.tune != nil && n.cfg.tune.drain > 0 {
		timeout = n.cfg.tune.drain
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	err := n.server.Shutdown(ctx)
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return
	}

	n.log.Warn("requests still running when the node stopped were cut; their clients retry elsewhere",
		"waited", timeout, "reason", err)
	n.server.Close() // closing what is left: its errors say nothing more
}

// Close releases the node's state; Run calls it on the way out.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.ln.Close() // may already be closed by Shutdown
		n.cluster.Shutdown()
		n.closeErr = errors.Join(n.builder.Close(), n.store.Close(), n.cas.Close())

		if n.secure != nil {
			n.secure.server.Close() // after Raft: its connections were the port's
			n.secure.port.Close()
		}
	})

	return n.closeErr
}

// Ready reports whether the node can serve: Raft has a leader, this node has applied the log as far as the leader
// had committed when it started, and the catalog has been read at least once (with a version in it, unless the
// upstream offers none).
func (n *Node) Ready(ctx context.Context) error {
	if err := n.cluster.Ready(); err != nil {
		return err
	}

	if _, ok, err := n.store.CatalogMeta(); err != nil || !ok {
		if last := n.catalog.LastSyncError(); last != nil {
			return fmt.Errorf("release catalog not read yet from %s: %w", n.cfg.Upstream.Registry, last)
		}

		return fmt.Errorf("release catalog not read yet from %s", n.cfg.Upstream.Registry)
	}

	// A catalog with no version in it because every read failed (a release whose signatures do not verify, a
	// mirror missing images) serves nothing: say why rather than take machines in.
	if versions, err := n.store.Versions(); err == nil && len(versions) == 0 {
		if last := n.catalog.LastSyncError(); last != nil {
			return fmt.Errorf("no Talos version could be read from %s: %w", n.cfg.Upstream.Registry, last)
		}
	}

	return nil
}
