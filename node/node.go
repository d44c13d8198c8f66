// Package node composes a running Edge Factory member: replicated state (raftstore), the release catalog kept in
// sync with the upstream registry, and the frontends on one HTTP listener. Every member runs the same code; a
// single node is a cluster of one.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/api"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Node is one running member.
type Node struct {
	cfg     Config
	log     *slog.Logger
	store   *raftstore.Store
	metrics *metrics
	reg     *prometheus.Registry
	sync    *catalogSync

	ln     net.Listener
	server *http.Server

	closeOnce sync.Once
	closeErr  error
}

// New opens the member's state and binds its listener; Run starts serving.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}

	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "raft"), filepath.Join(cfg.DataDir, "tmp")} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}

	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry()}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newMetrics(n.reg)

	store, err := raftstore.Open(raftstore.Config{
		NodeID:    cfg.NodeName,
		RaftDir:   filepath.Join(cfg.DataDir, "raft"),
		StatePath: filepath.Join(cfg.DataDir, "state.db"),
		BindAddr:  cfg.RaftListen,
		Bootstrap: cfg.BootstrapExpect == 1,
		Logger:    n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open replicated state in %s: %w", cfg.DataDir, err)
	}

	n.store = store

	src := release.Source{
		Registry:   cfg.Upstream.Registry,
		Namespace:  cfg.Upstream.Namespace,
		Insecure:   cfg.Upstream.Insecure,
		MinVersion: cfg.Upstream.MinVersion,
		Broken:     cfg.Upstream.Broken,
	}
	n.sync = newCatalogSync(src, store, cfg.CatalogRefresh, cfg.CatalogRecheck, n.metrics, n.log.With("component", "catalog"))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		store.Close() //nolint:errcheck // already failing

		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}

	n.ln = ln
	if n.cfg.ExternalURL == "" {
		n.cfg.ExternalURL = "http://" + advertisable(ln.Addr().String())
	}

	n.server = &http.Server{
		Handler:           n.router(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}

	return n, nil
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
	a := &api.API{Schematics: n, Catalog: n, Health: n, Logger: n.log}

	return frontends.NewRouter(frontends.RouterOptions{
		Version:    n.cfg.Version,
		Logger:     n.log.With("component", "http"),
		Registerer: n.reg,
	}, a.Mount, func(r chi.Router) {
		r.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	})
}

// Addr is the HTTP listener's address.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is the node's advertised base URL.
func (n *Node) URL() string { return n.cfg.ExternalURL }

// Run serves until ctx ends, then shuts down gracefully.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("edge factory node starting", "node", n.cfg.NodeName, "listen", n.Addr(), "url", n.cfg.ExternalURL,
		"data", n.cfg.DataDir, "upstream", n.cfg.Upstream.Registry+"/"+n.cfg.Upstream.Namespace)

	serveErr := make(chan error, 1)

	go func() { serveErr <- n.server.Serve(n.ln) }()

	syncDone := make(chan struct{})

	go func() {
		defer close(syncDone)

		n.sync.run(ctx)
	}()

	var err error

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}

	n.log.Info("edge factory node stopping", "node", n.cfg.NodeName)

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if serr := n.server.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}

	<-syncDone

	return errors.Join(err, n.Close())
}

// Close releases the node's state; Run calls it on the way out.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.ln.Close() //nolint:errcheck // may already be closed by Shutdown
		n.closeErr = n.store.Close()
	})

	return n.closeErr
}

// Ready reports whether the node can serve: Raft has a leader and the catalog has been read at least once.
func (n *Node) Ready(ctx context.Context) error {
	if id, _ := n.store.Leader(); id == "" {
		return errors.New("no raft leader yet")
	}

	if _, ok, err := n.store.CatalogMeta(); err != nil || !ok {
		if last := n.sync.lastError(); last != nil {
			return fmt.Errorf("release catalog not read yet from %s: %w", n.cfg.Upstream.Registry, last)
		}

		return fmt.Errorf("release catalog not read yet from %s", n.cfg.Upstream.Registry)
	}

	return nil
}
