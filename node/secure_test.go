package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
	"github.com/edgefactory/edgefactory/node/internal/tlsca"
)

// TestSecureCluster: three members formed with init and a join token talk over mutual TLS: writes forward to the
// leader, an asset is built once and copied between members, and a join without a valid token is refused.
func TestSecureCluster(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3)

	t.Run("forms", func(t *testing.T) { checkFormed(t, c, 3) })

	leader := c.steadyLeader(t)
	follower := c.other(t, leader.name)

	t.Run("writes forward to the leader over the cluster port", func(t *testing.T) {
		created := follower.do(t, "POST", "/schematics", `customization: {extraKernelArgs: [secure=1]}`, nil)
		require.Equal(t, http.StatusCreated, created.StatusCode, created.Body)
	})

	t.Run("an asset is built once and served by every member", func(t *testing.T) {
		id := leader.createSchematic(t, `customization: {extraKernelArgs: [secure=2]}`)
		path := "/image/" + id + "/v1.13.0/kernel-amd64"

		for _, m := range c.live() {
			got := fetchURL(http.DefaultClient, m.base+path)
			require.True(t, got.complete(), "%s: %d %v %s", m.name, got.status, got.err,
				m.do(t, "GET", path, "", nil).Body[:min(2000, int(got.size))])
		}

		assert.InDelta(t, 1.0, c.builds(t), 0, "built once")
	})

	port := c.ports[follower.index]

	t.Run("a join with a wrong secret or an unknown token is refused", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, NextProtos: []string{"http/1.1"},
		}}}
		id := strings.Split(c.token, ".")[1]

		for _, body := range []string{
			`{"token":"` + id + `","secret":"` + strings.Repeat("0", 32) + `","member":"evil","csr":"x"}`,
			`{"token":"zzzzzz","secret":"` + strings.Repeat("0", 32) + `","member":"evil","csr":"x"}`,
		} {
			resp, err := client.Post("https://"+port+"/join", "application/json", strings.NewReader(body))
			require.NoError(t, err)
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(msg))
		}

		assert.InDelta(t, 2.0, follower.metric(t, "edgefactory_join_refused_total"), 0)
	})

}

// checkPeerCertificate: a client without a member certificate finds no peer API on the public port, and on the
// cluster port gets no answer over plain HTTP, a 403 from the peer API and a closed connection from Raft; every
// refusal is counted.
func checkPeerCertificate(t *testing.T, c *cluster) {
	follower := c.other(t, c.steadyLeader(t).name)
	port := c.ports[follower.index]

	t.Run("the public port has no peer API", func(t *testing.T) {
		resp := follower.do(t, "GET", "/_peer/readindex", "", map[string]string{"Authorization": "Bearer x"})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("plain HTTP to the cluster port is refused", func(t *testing.T) {
		before := follower.metric(t, "edgefactory_cluster_port_refused_total")
		_, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + port + "/_peer/readindex")
		require.Error(t, err)
		require.Eventually(t, func() bool {
			return follower.metric(t, "edgefactory_cluster_port_refused_total") > before
		}, 5*time.Second, 20*time.Millisecond, "the refusal is counted")
	})

	t.Run("TLS without a member certificate reaches no peer API", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, NextProtos: []string{"http/1.1"},
		}}}
		before := follower.metric(t, "edgefactory_peer_auth_failures_total")

		for _, path := range []string{"/_peer/readindex", "/_peer/blobs/sha256:" + strings.Repeat("0", 64)} {
			resp, err := client.Get("https://" + port + path)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		}

		resp, err := client.Post("https://"+port+"/_peer/apply", "application/json",
			strings.NewReader(`{"v":1,"op":"PutSetting","key":"x","value":"eA=="}`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "no write through the peer API")
		assert.InDelta(t, before+3, follower.metric(t, "edgefactory_peer_auth_failures_total"), 0)
	})

	t.Run("Raft without a member certificate is refused", func(t *testing.T) {
		before := follower.metric(t, "edgefactory_cluster_port_refused_total")
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", port, &tls.Config{
			InsecureSkipVerify: true, NextProtos: []string{"edgefactory-raft/1"},
		})
		require.NoError(t, err, "the handshake itself completes: the member checks what the client presented")

		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		require.NoError(t, err, "the member closes the connection")
		assert.InDelta(t, before+1, follower.metric(t, "edgefactory_cluster_port_refused_total"), 0)
	})
}

// TestPublicTLS: --tls-cert and --tls-key serve the public API over HTTPS, and the advertised URL says so.
func TestPublicTLS(t *testing.T) {
	dir := t.TempDir()

	ca, err := tlsca.NewCA("public", time.Hour)
	require.NoError(t, err)

	key, keyPEM, err := tlsca.NewKey()
	require.NoError(t, err)

	csr, err := tlsca.NewCSR(key, "web")
	require.NoError(t, err)

	cert, err := ca.Sign(csr, "web", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)

	cfg := testConfig(t, filepath.Join(dir, "data"), upstream(t))
	cfg.TLSCert, cfg.TLSKey = filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	require.NoError(t, os.WriteFile(cfg.TLSCert, cert, 0o600))
	require.NoError(t, os.WriteFile(cfg.TLSKey, keyPEM, 0o600))

	n, err := node.New(cfg)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(n.URL(), "https://"), n.URL())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- n.Run(ctx) }()

	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, MinVersion: tls.VersionTLS12,
	}}}

	require.Eventually(t, func() bool {
		resp, err := client.Get("https://" + n.Addr() + "/healthz")
		if err != nil {
			return false
		}

		resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the public API answers over HTTPS, its certificate checked")

	resp, err := http.Get("http://" + n.Addr() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to the HTTPS port is answered 400 by net/http")
}

// TestCertificateRenewal: members renew their certificates before they expire, and keep talking over the cluster
// port with the new ones: writes forwarded to the leader succeed long past the first certificates' end.
func TestCertificateRenewal(t *testing.T) {
	const validity = 9 * time.Second

	c := startCluster(t, upstream(t), 2, func(_ int, cfg *node.Config) { *cfg = node.WithCertValidity(*cfg, validity) })
	leader := c.steadyLeader(t)
	follower := c.other(t, leader.name)

	certs := func() map[string]int {
		resp := leader.do(t, "GET", "/cluster/certificates", "", ops)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		var list []node.CertificateInfo
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &list))

		count := map[string]int{}
		for _, cert := range list {
			count[cert.Member]++
		}

		return count
	}

	require.Eventually(t, func() bool { return certs()[leader.name] >= 3 && certs()[follower.name] >= 3 },
		4*validity, 200*time.Millisecond, "every member renewed its certificate twice: %v", certs())

	for i := range 5 {
		created := follower.do(t, "POST", "/schematics", fmt.Sprintf(`customization: {extraKernelArgs: [renewed=%d]}`,
			i), nil)
		require.Equal(t, http.StatusCreated, created.StatusCode, "a write forwarded after the renewals: %s",
			created.Body)
	}
}
