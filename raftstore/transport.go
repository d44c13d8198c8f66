package raftstore

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's TCP stream layer with its own listener, so a bind port of 0 works and the advertised address
// can take the port the kernel chose.
type streamLayer struct {
	net.Listener
	advertise net.Addr
}

func listenRaft(bind, advertise string) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind) //nolint:noctx // Open takes no context: a listen at startup, nothing to cancel
	if err != nil {
		return nil, fmt.Errorf("listen raft on %s: %w", bind, err)
	}
	bound, ok := ln.Addr().(*net.TCPAddr)
	if !ok { // a "tcp" listener's address always is
		ln.Close()
		return nil, fmt.Errorf("listen raft on %s: unexpected address %v", bind, ln.Addr())
	}
	adv, err := AdvertiseAddr(bound, advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &streamLayer{Listener: ln, advertise: adv}, nil
}

// AdvertiseAddr resolves the address peers dial: the configured one (its port defaulting to the bound port) or the
// bound address itself, which must then be a specific IP.
func AdvertiseAddr(bound *net.TCPAddr, advertise string) (*net.TCPAddr, error) {
	if advertise == "" {
		if bound.IP.IsUnspecified() {
			return nil, fmt.Errorf("raft bind address %s is not reachable by peers: set an advertise address", bound)
		}
		return bound, nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		host, port = advertise, ""
	}
	if port == "" || port == "0" {
		port = fmt.Sprint(bound.Port)
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("resolve raft advertise address %s: %w", advertise, err)
	}
	if addr.IP == nil || addr.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft advertise address %s is not a specific IP", advertise)
	}
	return addr, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	return conn, nil
}
