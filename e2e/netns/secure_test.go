//go:build netns

package netns

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgefactory/edgefactory/internal/netnstest"
)

// TestNetnsSecureCluster: two members of a secure cluster and an attacker host on their network (namespace 3). The
// asset one member copies from the other cannot be read off the wire (a capture on the member's switch port finds
// none of its bytes, where it finds those of a plain download); the attacker cannot join gossip, call the peer API,
// reach Raft or obtain a certificate without a valid join token; every attempt is refused and counted.
func TestNetnsSecureCluster(t *testing.T) {
	RequireLab(t)
	partsDir := requireRealParts(t)

	lab := NewLab(t, 3)
	c := startClusterOf(t, lab, partsDir, 2, true)

	require.Eventually(t, func() bool {
		st, ok := c.status(1)

		return ok && st.Leader != "" && len(st.alive()) == 2
	}, 60*time.Second, 200*time.Millisecond, "the two members form a cluster over mutual TLS")

	id := c.createSchematic(t, 1, "secure")
	path := "/image/" + id + asset

	var body []byte

	t.Run("a copy between members cannot be read off the wire", func(t *testing.T) {
		capture := sniff(t, "port1", NodeIP(1), NodeIP(2)) // the members' traffic, not their pulls from upstream
		first, second := c.get(t, 1, path), c.get(t, 2, path)
		frames := capture()

		require.Equal(t, http.StatusOK, first.status, "%s", first)
		require.Equal(t, http.StatusOK, second.status, "%s", second)
		require.True(t, bytes.Equal(first.body, second.body))
		require.InDelta(t, 1, c.metric(t, 1, "edgefactory_builds_total")+c.metric(t, 2, "edgefactory_builds_total"), 0,
			"built once: the other member copied it over the cluster port")

		body = first.body
		found := needlesIn(body, frames)
		assert.Zero(t, found, "none of the asset's bytes cross the members' link in the clear (%d bytes captured)",
			len(frames))
	})

	t.Run("a plain download on the same link is readable (the capture works)", func(t *testing.T) {
		capture := sniff(t, "port1", NodeIP(1), NodeIP(3))

		err := netnstest.Do(NodeNS(3), func() error {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", NodeIP(1), httpPort), 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()

			if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path); err != nil {
				return err
			}

			_, err = io.Copy(io.Discard, conn)

			return err
		})
		require.NoError(t, err)

		assert.Positive(t, needlesIn(body, capture()), "the public API is plain HTTP by design")
	})

	before := map[string]float64{}
	for _, m := range []string{"edgefactory_gossip_refused_total", "edgefactory_peer_auth_failures_total",
		"edgefactory_cluster_port_refused_total", "edgefactory_join_refused_total"} {
		before[m] = c.metric(t, 1, m)
	}

	t.Run("the attacker is refused everywhere", func(t *testing.T) {
		port := net.JoinHostPort(NodeIP(1), strconv.Itoa(clusterPort))

		err := netnstest.Do(NodeNS(3), func() error {
			var errs []error

			if err := joinGossip(fmt.Sprintf("%s:7946", NodeIP(1))); err == nil {
				errs = append(errs, errors.New("gossip: an unencrypted member joined"))
			}

			if status, err := tlsRequest(port, "http/1.1", "GET /_peer/readindex HTTP/1.0\r\n\r\n"); err != nil ||
				status != http.StatusForbidden {
				errs = append(errs, fmt.Errorf("peer API without a certificate: %d %w", status, err))
			}

			if status, err := tlsRequest(port, "edgefactory-raft/1", "raft"); err == nil && status != 0 {
				errs = append(errs, fmt.Errorf("raft without a certificate answered %d", status))
			}

			if conn, err := net.DialTimeout("tcp", port, 5*time.Second); err == nil {
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprint(conn, "GET /_peer/readindex HTTP/1.0\r\n\r\n")
				reply, _ := io.ReadAll(conn)
				conn.Close()

				if bytes.Contains(reply, []byte("HTTP/1")) {
					errs = append(errs, fmt.Errorf("plain HTTP to the cluster port answered: %q", reply))
				}
			}

			join := `{"token":"abcdef","secret":"` + strings.Repeat("0", 32) + `","member":"evil","csr":"x"}`
			req := fmt.Sprintf("POST /join HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				len(join), join)
			if status, err := tlsRequest(port, "http/1.1", req); err != nil || status != http.StatusForbidden {
				errs = append(errs, fmt.Errorf("join with an unknown token: %d %w", status, err))
			}

			return errors.Join(errs...)
		})
		require.NoError(t, err)

		require.Eventually(t, func() bool {
			return c.metric(t, 1, "edgefactory_gossip_refused_total") > before["edgefactory_gossip_refused_total"]
		}, 10*time.Second, 100*time.Millisecond, "the gossip refusal is counted")
		assert.Greater(t, c.metric(t, 1, "edgefactory_peer_auth_failures_total"),
			before["edgefactory_peer_auth_failures_total"])
		assert.GreaterOrEqual(t, c.metric(t, 1, "edgefactory_cluster_port_refused_total"),
			before["edgefactory_cluster_port_refused_total"]+2, "plain HTTP and Raft without a certificate")
		assert.Greater(t, c.metric(t, 1, "edgefactory_join_refused_total"), before["edgefactory_join_refused_total"])

		st, ok := c.status(1)
		require.True(t, ok)
		assert.ElementsMatch(t, []string{NodeNS(1), NodeNS(2)}, st.alive(), "the attacker is no member")
	})
}

// joinGossip tries to join the members' gossip as an unencrypted memberlist would.
func joinGossip(seed string) error {
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "attacker", NodeIP(3), 7946
	mc.LogOutput = io.Discard

	ml, err := memberlist.Create(mc)
	if err != nil {
		return err
	}

	defer ml.Shutdown() //nolint:errcheck // the attacker goes

	_, err = ml.Join([]string{seed})

	return err
}

// tlsRequest sends raw over TLS (no client certificate, the server's not checked, ALPN proto) and returns the
// HTTP status of the answer, 0 when there is none.
func tlsRequest(addr, proto, raw string) (int, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{proto}, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()

	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	if _, err := io.WriteString(conn, raw); err != nil {
		return 0, nil //nolint:nilerr // a closed connection is the answer
	}

	reply, _ := io.ReadAll(conn)

	var status int

	if _, err := fmt.Sscanf(string(reply), "HTTP/1.%d %d", new(int), &status); err != nil {
		return 0, nil //nolint:nilerr // no HTTP answer
	}

	return status, nil
}

// sniff captures the IPv4 frames between two hosts crossing a switch port of the lab's bridge (a packet socket in
// the bridge namespace); the function returned stops it and returns the bytes seen.
func sniff(t *testing.T, port, hostA, hostB string) func() []byte {
	t.Helper()

	a, b := net.ParseIP(hostA).To4(), net.ParseIP(hostB).To4()
	between := func(frame []byte) bool {
		if len(frame) < 34 || frame[12] != 0x08 || frame[13] != 0x00 { // Ethernet, IPv4
			return false
		}

		src, dst := net.IP(frame[26:30]), net.IP(frame[30:34])

		return src.Equal(a) && dst.Equal(b) || src.Equal(b) && dst.Equal(a)
	}

	var (
		mu     sync.Mutex
		seen   bytes.Buffer
		stop   = make(chan struct{})
		ready  = make(chan error, 1)
		done   = make(chan struct{})
		proto  = uint16(unix.ETH_P_ALL<<8&0xff00 | unix.ETH_P_ALL>>8)
		buffer = make([]byte, 1<<17)
	)

	go func() {
		defer close(done)

		err := netnstest.Do(bridgeNS, func() error {
			ifc, err := net.InterfaceByName(port)
			if err != nil {
				return err
			}

			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
			if err != nil {
				return err
			}
			defer unix.Close(fd)

			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index}); err != nil {
				return err
			}

			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO,
				&unix.Timeval{Usec: 100_000}); err != nil {
				return err
			}

			ready <- nil

			for {
				select {
				case <-stop:
					return nil
				default:
				}

				n, _, err := unix.Recvfrom(fd, buffer, 0)
				if err != nil || !between(buffer[:n]) {
					continue // the timeout, to look at stop; or other hosts' traffic
				}

				mu.Lock()
				seen.Write(buffer[:n])
				mu.Unlock()
			}
		})
		if err != nil {
			ready <- err
		}
	}()

	require.NoError(t, <-ready, "capture on %s", port)

	return func() []byte {
		time.Sleep(200 * time.Millisecond) // the last frames
		close(stop)
		<-done

		mu.Lock()
		defer mu.Unlock()

		return bytes.Clone(seen.Bytes())
	}
}

// needlesIn counts how many of 16 distinctive 24-byte pieces of body, spread over it, occur in captured.
func needlesIn(body, captured []byte) int {
	found := 0

	for i := range 16 {
		off := (len(body) - 64) * (i + 1) / 17
		for off+24 < len(body) && !distinctive(body[off:off+24]) {
			off += 24
		}

		if off+24 < len(body) && bytes.Contains(captured, body[off:off+24]) {
			found++
		}
	}

	return found
}

// distinctive reports whether a piece of a file has enough different bytes not to occur by chance (no padding).
func distinctive(b []byte) bool {
	var kinds [256]bool

	n := 0

	for _, c := range b {
		if !kinds[c] {
			kinds[c], n = true, n+1
		}
	}

	return n >= 12
}
