// Package clusterport is the members' one mutual-TLS port (--cluster-listen): the Raft transport and the peer API
// share it, told apart by the protocol each connection negotiates in its TLS handshake (ALPN). A connection whose
// handshake fails (no certificate of the cluster CA, a revoked or expired one, no TLS at all) never reaches either,
// and is counted. Certificates and trust are the caller's (node/internal/tlsca), read at every handshake, so
// renewal and CA rotation need no restart.
package clusterport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/raftstore"
)

// The protocols a connection to the cluster port negotiates.
const (
	ProtoRaft = "edgefactory-raft/1"
	// ProtoPeer is HTTP/1.1: the peer API, and the join endpoint for members without a certificate. It is named as
	// HTTP/1.1 itself, since net/http closes a connection that negotiated a protocol it has no handler for.
	ProtoPeer = "http/1.1"
)

// handshakeTimeout bounds a TLS handshake on the port: a client that connects and says nothing is dropped.
const handshakeTimeout = 10 * time.Second

// Config is what the port needs.
type Config struct {
	// Listen is the address bound; Advertise the one members dial (see raftstore.AdvertiseAddr).
	Listen, Advertise string
	// Server is the TLS configuration of accepted connections (tlsca.ServerConfig); its NextProtos are set here.
	Server *tls.Config
	// Client returns the TLS configuration to dial a member with, for a protocol (tlsca.ClientConfig).
	Client     func(proto string) *tls.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Port is a bound cluster port.
type Port struct {
	cfg       Config
	ln        net.Listener
	advertise *net.TCPAddr
	raft      *connListener
	peer      *connListener
	refused   *prometheus.CounterVec
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Listen binds the port and starts accepting; Close stops it.
func Listen(cfg Config) (*Port, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	ln, err := net.Listen("tcp", cfg.Listen) //nolint:noctx // a listen at startup, nothing to cancel
	if err != nil {
		return nil, fmt.Errorf("listen on the cluster port %s: %w", cfg.Listen, err)
	}

	bound, _ := ln.Addr().(*net.TCPAddr) // a "tcp" listener's address always is one

	adv, err := raftstore.AdvertiseAddr(bound, cfg.Advertise)
	if err != nil {
		ln.Close()

		return nil, fmt.Errorf("cluster port: %w", err)
	}

	server := cfg.Server.Clone()
	server.NextProtos = []string{ProtoRaft, ProtoPeer}

	cfg.Server = server
	p := &Port{
		cfg: cfg, ln: ln, advertise: adv, raft: newConnListener(adv), peer: newConnListener(adv),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_cluster_port_refused_total",
			Help: "Connections to the cluster port refused: their TLS handshake failed (no or a wrong certificate, " +
				"not TLS) or named no protocol of the port.",
		}, []string{"reason"}),
	}

	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(p.refused)
	}

	p.wg.Go(p.accept)

	return p, nil
}

// Addr is the advertised address of the port.
func (p *Port) Addr() net.Addr { return p.advertise }

// Peer is the listener of peer API connections (serve HTTP on it).
func (p *Port) Peer() net.Listener { return p.peer }

// Raft is the stream layer Raft runs on (raftstore.Config.Stream).
func (p *Port) Raft() raft.StreamLayer { return &raftStream{p} }

// Close stops accepting and closes both listeners; connections already handed out are their owners' to close.
func (p *Port) Close() error {
	var err error

	p.closeOnce.Do(func() {
		err = p.ln.Close()
		p.wg.Wait()
		p.raft.Close()
		p.peer.Close()
	})

	return err
}

func (p *Port) accept() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.cfg.Logger.Error("cluster port: accept", "error", err)
			}

			return
		}

		go p.handshake(conn)
	}
}

// handshake completes the TLS handshake of an accepted connection and hands it to Raft or the peer API.
func (p *Port) handshake(conn net.Conn) {
	tc := tls.Server(conn, p.cfg.Server)

	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()

	if err := tc.HandshakeContext(ctx); err != nil {
		p.refused.WithLabelValues("handshake").Inc()
		p.cfg.Logger.Warn("cluster port: refused a connection", "remote", conn.RemoteAddr().String(), "error", err)
		conn.Close()

		return
	}

	switch tc.ConnectionState().NegotiatedProtocol {
	case ProtoRaft:
		if len(tc.ConnectionState().PeerCertificates) == 0 { // Raft is for members only; the join endpoint is HTTP
			p.refused.WithLabelValues("no_certificate").Inc()
			p.cfg.Logger.Warn("cluster port: refused a Raft connection without a member certificate",
				"remote", conn.RemoteAddr().String())
			tc.Close()

			return
		}

		p.raft.offer(tc)
	case ProtoPeer:
		p.peer.offer(tc)
	default:
		p.refused.WithLabelValues("protocol").Inc()
		tc.Close()
	}
}

// raftStream is raft's StreamLayer over the port.
type raftStream struct{ p *Port }

func (s *raftStream) Accept() (net.Conn, error) { return s.p.raft.Accept() }

// Close closes Raft's side only: the peer API goes on until the port closes.
func (s *raftStream) Close() error   { return s.p.raft.Close() }
func (s *raftStream) Addr() net.Addr { return s.p.advertise }

func (s *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.p.cfg.Client(ProtoRaft)}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	conn, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}

	return conn, nil
}

// connListener hands out connections accepted and sorted by the port.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) offer(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })

	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
