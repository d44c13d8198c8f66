package synthetic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Server is an in-process OCI registry (go-containerregistry's, blobs in memory or under Options.BlobDir) holding
// the synthetic release.
type Server struct {
	// Addr is the "host:port" to reach the registry at (loopback when it listens on all addresses).
	Addr     string
	Manifest *Manifest

	srv  *http.Server
	done chan error
}

// Start serves a registry on ln, pushes the release into it and returns once it is pushed; the registry serves
// until Close. Pushes go over plain HTTP.
func Start(ctx context.Context, ln net.Listener, opts Options) (*Server, error) {
	opts, err := opts.complete()
	if err != nil {
		ln.Close() // nothing to report beyond err

		return nil, err
	}

	regOpts := []registry.Option{
		registry.Logger(slog.NewLogLogger(opts.Logger.With("component", "registry").Handler(), slog.LevelDebug)),
	}

	if opts.BlobDir != "" {
		if err := os.MkdirAll(opts.BlobDir, 0o755); err != nil {
			ln.Close() // nothing to report beyond err

			return nil, fmt.Errorf("synthetic registry blobs: %w", err)
		}

		regOpts = append(regOpts, registry.WithBlobHandler(registry.NewDiskBlobHandler(opts.BlobDir)))
	}

	var pushed atomic.Bool

	reg := registry.New(regOpts...)
	s := &Server{
		Addr: dialAddr(ln.Addr()),
		srv: &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !pushed.Load() && r.Header.Get(pushHeader) == "" {
					http.Error(w, "the synthetic release is still being pushed", http.StatusServiceUnavailable)

					return
				}

				reg.ServeHTTP(w, r)
			}),
			ReadHeaderTimeout: 30 * time.Second,
		},
		done: make(chan error, 1),
	}

	go func() { s.done <- s.srv.Serve(ln) }()

	opts.Insecure = true
	opts.transport = markedTransport{next: remote.DefaultTransport}

	if s.Manifest, err = Push(ctx, s.Addr, opts); err != nil {
		s.Close() // the push error is the one to report

		return nil, fmt.Errorf("push synthetic release to %s: %w", s.Addr, err)
	}

	pushed.Store(true)

	return s, nil
}

// pushHeader marks the release's own push: until it is complete the registry answers everyone else 503, so that a
// client waiting for it (`until curl -fs …/v2/`) sees the whole release or nothing.
const pushHeader = "X-Edgefactory-Synthetic-Push"

// markedTransport adds pushHeader to every request.
type markedTransport struct{ next http.RoundTripper }

func (m markedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(pushHeader, "1")

	return m.next.RoundTrip(r)
}

// Close stops the registry at once, dropping open connections. (A graceful Shutdown gains nothing for a test
// registry and waits 5 s for every spare connection Go's HTTP clients opened but never used.)
func (s *Server) Close() error {
	err := s.srv.Close()
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}

	return err
}

// Serve runs a registry holding the synthetic release on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, opts Options) error {
	s, err := Start(ctx, ln, opts)
	if err != nil {
		return err
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	logger.Info("synthetic Talos release served", "registry", s.Addr, "namespace", s.Manifest.Namespace,
		"versions", versionsOf(s.Manifest.Versions), "example", s.Manifest.Versions[0].Imager.Ref(s.Addr))

	select {
	case <-ctx.Done():
		logger.Info("synthetic Talos release registry stopping", "registry", s.Addr)

		return s.Close()
	case err := <-s.done:
		s.done <- err // for Close

		return fmt.Errorf("registry on %s: %w", s.Addr, err)
	}
}

// dialAddr turns a listening address into one clients can dial: an unspecified host (0.0.0.0, ::) becomes loopback.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}

	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}

	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
