package node_test

import (
	"crypto/tls"
	"encoding/json"
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
	"github.com/edgefactory/edgefactory/node/internal/clusterport"
	"github.com/edgefactory/edgefactory/node/internal/tlsca"
)

// ops presents the API token the test clusters are given (clusterharness_test.go).
var ops = map[string]string{"Authorization": "Bearer " + clusterSecret}

// askJoin posts a join request for token to a cluster port, as a member without a certificate does, and returns the
// status and message.
func askJoin(t *testing.T, port, token string) (int, string) {
	t.Helper()

	status, msg, err := postJoin(t, port, token)
	require.NoError(t, err)

	return status, msg
}

// postJoin is askJoin returning the error of the request itself (a seed whose CA the token does not name).
func postJoin(t *testing.T, port, token string) (int, string, error) {
	t.Helper()

	tok, err := tlsca.ParseToken(token)
	require.NoError(t, err)

	key, _, err := tlsca.NewKey()
	require.NoError(t, err)

	csr, err := tlsca.NewCSR(key, "newcomer")
	require.NoError(t, err)

	body, err := json.Marshal(map[string]any{"token": tok.ID, "secret": tok.Secret, "member": "newcomer",
		"csr": string(csr)})
	require.NoError(t, err)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsca.JoinClientConfig(tok.CAFingerprint, clusterport.ProtoPeer),
	}}

	resp, err := client.Post("https://"+port+"/join", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, "", err
	}

	defer resp.Body.Close()

	msg, err := io.ReadAll(resp.Body)

	return resp.StatusCode, string(msg), err
}

// memberTLS is the TLS configuration of a client presenting the certificate in a member's data directory.
func memberTLS(t *testing.T, c *cluster, m *member) *tls.Config {
	t.Helper()

	dir := filepath.Join(c.dir, m.name, "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "member.crt"), filepath.Join(dir, "member.key"))
	require.NoError(t, err)

	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13}
}

// handshake dials a cluster port and reports whether the member accepted the client's certificate: TLS 1.3 reports
// a refused client certificate on the first read.
func handshake(port string, conf *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", port, conf)
	if err != nil {
		return err
	}
	defer conn.Close()

	if _, err := conn.Write([]byte("GET /gossip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}

	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn)

	return err
}

// TestSecureRefusals: join tokens are made, listed and revoked through the API; a revoked or expired token admits
// nobody; a revoked member certificate and an expired one are refused at the handshake; each refusal is counted.
func TestSecureRefusals(t *testing.T) {
	c := startCluster(t, upstream(t), 3)
	leader := c.steadyLeader(t)
	via := c.other(t, leader.name)
	port := c.ports[leader.index]

	t.Run("tokens need credentials", func(t *testing.T) {
		assert.Equal(t, http.StatusUnauthorized, via.do(t, "GET", "/cluster/tokens", "", nil).StatusCode)
		assert.Equal(t, http.StatusUnauthorized, via.do(t, "POST", "/cluster/tokens", "", nil).StatusCode)
	})

	var made node.TokenInfo

	t.Run("a token is made, listed without its secret, and admits a member", func(t *testing.T) {
		resp := via.do(t, "POST", "/cluster/tokens", `{"ttl":"10m"}`, ops)
		require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &made))
		assert.WithinDuration(t, time.Now().Add(10*time.Minute), made.Expires, time.Minute)
		assert.Equal(t, "tests", made.CreatedBy)

		list := leader.do(t, "GET", "/cluster/tokens", "", ops)
		require.Equal(t, http.StatusOK, list.StatusCode)
		assert.Contains(t, list.Body, made.ID)
		assert.NotContains(t, list.Body, strings.Split(made.Token, ".")[2], "a list never shows a secret")

		// The leader need not be the member init made: it signs once that member has recorded the CA in Raft
		// (within a second of forming); until then it answers 503, which a joining member retries.
		require.Eventually(t, func() bool {
			status, _ := askJoin(t, port, made.Token)

			return status == http.StatusOK
		}, 10*time.Second, 100*time.Millisecond, "the token admits a member")

		assert.Equal(t, http.StatusBadRequest, via.do(t, "POST", "/cluster/tokens", `{"ttl":"1s"}`, ops).StatusCode)
	})

	t.Run("a revoked token admits nobody", func(t *testing.T) {
		resp := via.do(t, "DELETE", "/cluster/tokens/"+made.ID, "", ops)
		require.Equal(t, http.StatusNoContent, resp.StatusCode, resp.Body)
		assert.Equal(t, http.StatusNotFound, via.do(t, "DELETE", "/cluster/tokens/"+made.ID, "", ops).StatusCode)

		require.Eventually(t, func() bool {
			status, _ := askJoin(t, port, made.Token)

			return status == http.StatusForbidden
		}, 5*time.Second, 50*time.Millisecond)
	})

	t.Run("an expired token admits nobody", func(t *testing.T) {
		expired, err := leader.ExpiredJoinToken(t.Context())
		require.NoError(t, err)

		status, msg := askJoin(t, port, expired)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Contains(t, msg, "expired")
	})

	victim := c.other(t, leader.name, via.name)
	victimTLS := memberTLS(t, c, victim)

	t.Run("a revoked member certificate is refused", func(t *testing.T) {
		require.NoError(t, handshake(port, victimTLS), "the member's certificate is accepted before")

		before := leader.metric(t, "edgefactory_cluster_port_refused_total")
		resp := via.do(t, "POST", "/cluster/certificates/"+victim.name+"/revoke", "", ops)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		require.Eventually(t, func() bool { return handshake(port, victimTLS) != nil }, 5*time.Second,
			50*time.Millisecond, "every member refuses it once the revocation is applied")
		assert.Greater(t, leader.metric(t, "edgefactory_cluster_port_refused_total"), before)

		var certs []node.CertificateInfo
		require.NoError(t, json.Unmarshal([]byte(via.do(t, "GET", "/cluster/certificates", "", ops).Body), &certs))
		revoked, valid := 0, 0

		for _, c := range certs {
			switch {
			case c.Member != victim.name:
			case c.Revoked:
				revoked++
			default:
				valid++
			}
		}

		assert.Positive(t, revoked, "%s's certificates are listed as revoked: %v", victim.name, certs)
		assert.Zero(t, valid, "none of %s's stays valid", victim.name)
	})

	t.Run("an expired member certificate is refused", func(t *testing.T) {
		dir := filepath.Join(c.dir, "node1", "tls") // node1 was made by init: it keeps the CA it started with
		certPEM, err := os.ReadFile(filepath.Join(dir, "signing.crt"))
		require.NoError(t, err)
		keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
		require.NoError(t, err)
		ca, err := tlsca.ParseCA(certPEM, keyPEM)
		require.NoError(t, err)

		key, memberKey, err := tlsca.NewKey()
		require.NoError(t, err)
		csr, err := tlsca.NewCSR(key, "node9")
		require.NoError(t, err)
		cert, err := ca.Sign(csr, "node9", nil, -time.Hour)
		require.NoError(t, err)

		pair, err := tls.X509KeyPair(cert, memberKey)
		require.NoError(t, err)

		err = handshake(port, &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true,
			NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13})
		assert.Error(t, err, "an expired certificate of the cluster CA is refused")
	})
}
