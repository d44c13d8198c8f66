package tlsca_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node/internal/tlsca"
)

// proto is the ALPN protocol the handshake tests negotiate.
const proto = "edgefactory-raft"

// der returns the DER of a PEM certificate, as TLS hands certificates to Trust.Verify.
func der(t *testing.T, certPEM []byte) [][]byte {
	t.Helper()

	return [][]byte{parseCert(t, certPEM).Raw}
}

// trustOf returns a Trust of the given CAs and revoked serials.
func trustOf(t *testing.T, revoked []string, cas ...*tlsca.CA) *tlsca.Trust {
	t.Helper()

	trust := tlsca.NewTrust()
	require.NoError(t, trust.Set(caPEMs(cas...), revoked))

	return trust
}

// caPEMs returns the certificate PEMs of cas.
func caPEMs(cas ...*tlsca.CA) [][]byte {
	pems := make([][]byte, 0, len(cas))
	for _, ca := range cas {
		pems = append(pems, ca.CertPEM)
	}

	return pems
}

// identityOf returns an Identity holding a certificate of ca for member.
func identityOf(t *testing.T, ca *tlsca.CA, member string) *tlsca.Identity {
	t.Helper()

	id := tlsca.NewIdentity()
	certPEM, keyPEM := issue(t, ca, member, time.Hour)
	require.NoError(t, id.Set(certPEM, keyPEM, ca.CertPEM))

	return id
}

// craft signs a certificate for member's URI by hand, with the given extended key usages, to make certificates Sign
// never would.
func craft(t *testing.T, ca *tlsca.CA, uris []*url.URL, usages ...x509.ExtKeyUsage) []byte {
	t.Helper()

	key, _, err := tlsca.NewKey()
	require.NoError(t, err)

	template := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "crafted"},
		URIs:         uris,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}

	raw, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, key.Public(), ca.Key)
	require.NoError(t, err)

	return raw
}

func TestTrustVerify(t *testing.T) {
	oldCA, newCA2, otherCA := newCA(t, "lab"), newCA(t, "lab"), newCA(t, "other")
	n2, _ := issue(t, oldCA, "n2", time.Hour)
	n3, _ := issue(t, newCA2, "n3", time.Hour)
	stranger, _ := issue(t, otherCA, "n2", time.Hour)
	expired, _ := issue(t, oldCA, "n2", -time.Hour)

	trust := trustOf(t, nil, oldCA)

	member, err := trust.Verify(der(t, n2))
	require.NoError(t, err)
	require.Equal(t, "n2", member)

	// The chain as a member presents it (leaf, then CA) verifies the same; a foreign CA sent along does not help.
	member, err = trust.Verify([][]byte{parseCert(t, n2).Raw, oldCA.Cert.Raw})
	require.NoError(t, err)
	require.Equal(t, "n2", member)

	_, err = trust.Verify([][]byte{parseCert(t, stranger).Raw, otherCA.Cert.Raw})
	require.ErrorContains(t, err, "certificate of member n2 is not signed by the cluster CA")

	_, err = trust.Verify(der(t, expired))
	require.ErrorContains(t, err, "certificate of member n2 expired at ")

	_, err = trust.Verify(nil)
	require.ErrorContains(t, err, "no certificate presented")

	_, err = trust.Verify([][]byte{[]byte("garbage")})
	require.Error(t, err)

	// Only member certificates: for both server and client authentication, naming exactly one member.
	_, err = trust.Verify([][]byte{craft(t, oldCA, []*url.URL{tlsca.MemberURI("n9")}, x509.ExtKeyUsageServerAuth)})
	require.ErrorContains(t, err, "not for both server and client authentication")

	_, err = trust.Verify([][]byte{craft(t, oldCA, nil, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)})
	require.ErrorContains(t, err, "names no member")

	// Revoked, by serial in any case.
	for _, serial := range []string{tlsca.SerialHex(parseCert(t, n2)), strings.ToUpper(tlsca.SerialHex(parseCert(t, n2)))} {
		require.NoError(t, trust.Set(caPEMs(oldCA), []string{"1f", serial}))

		_, err = trust.Verify(der(t, n2))
		require.ErrorIs(t, err, tlsca.ErrRevoked)
		require.ErrorContains(t, err, "certificate of member n2 was revoked")
	}

	// Rotation: both CAs during it, only the new one after it.
	require.NoError(t, trust.Set(caPEMs(oldCA, newCA2), nil))

	for _, cert := range [][]byte{n2, n3} {
		_, err = trust.Verify(der(t, cert))
		require.NoError(t, err)
	}

	require.Len(t, trust.Roots(), 2)
	require.NoError(t, trust.Set(caPEMs(newCA2), nil))

	_, err = trust.Verify(der(t, n3))
	require.NoError(t, err)

	_, err = trust.Verify(der(t, n2))
	require.ErrorContains(t, err, "not signed by the cluster CA")

	// No CA: everything is refused.
	require.NoError(t, trust.Set(nil, nil))

	_, err = trust.Verify(der(t, n3))
	require.ErrorContains(t, err, "no cluster CA is trusted")

	_, err = tlsca.NewTrust().Verify(der(t, n3))
	require.ErrorContains(t, err, "no cluster CA is trusted")
}

func TestTrustSet(t *testing.T) {
	ca := newCA(t, "lab")
	leaf, _ := issue(t, ca, "n2", time.Hour)
	trust := trustOf(t, nil, ca)

	for name, tc := range map[string]struct {
		pems    [][]byte
		revoked []string
		want    string
	}{
		"not PEM":      {[][]byte{[]byte("not a certificate")}, nil, "no PEM CERTIFICATE block"},
		"not a CA":     {[][]byte{leaf}, nil, "is not a CA"},
		"serial x":     {caPEMs(ca), []string{"xyz"}, "is not a positive hex number"},
		"serial empty": {caPEMs(ca), []string{""}, "is not a positive hex number"},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, trust.Set(tc.pems, tc.revoked), tc.want)

			// Nothing changed.
			member, err := trust.Verify(der(t, leaf))
			require.NoError(t, err)
			require.Equal(t, "n2", member)
		})
	}

	// Roots are copies, and a CA given twice is held once.
	require.NoError(t, trust.Set(caPEMs(ca, ca), nil))

	roots := trust.Roots()
	require.Len(t, roots, 1)
	roots[0].Subject.CommonName = "changed"
	require.Equal(t, ca.Cert.Subject.CommonName, trust.Roots()[0].Subject.CommonName)
}

func TestIdentity(t *testing.T) {
	ca, other := newCA(t, "lab"), newCA(t, "other")
	id := tlsca.NewIdentity()
	require.Nil(t, id.Certificate())
	require.Nil(t, id.Leaf())
	require.True(t, id.NotAfter().IsZero())

	certPEM, keyPEM := issue(t, ca, "n1", time.Hour)
	_, otherKey := issue(t, ca, "n1", time.Hour)

	require.ErrorContains(t, id.Set(certPEM, otherKey, ca.CertPEM), "private key does not match")
	require.ErrorContains(t, id.Set(certPEM, keyPEM, other.CertPEM), "is not signed by the CA")
	require.ErrorContains(t, id.Set(certPEM, keyPEM, certPEM), "is not a CA")
	require.Nil(t, id.Certificate())

	require.NoError(t, id.Set(certPEM, keyPEM, ca.CertPEM))
	require.Equal(t, parseCert(t, certPEM).Raw, id.Leaf().Raw)
	require.Equal(t, id.Leaf().NotAfter, id.NotAfter())
	require.Equal(t, [][]byte{id.Leaf().Raw, ca.Cert.Raw}, id.Certificate().Certificate)
}

// server is a cluster port listening on loopback with one tls.Config for its life; each accepted connection's
// handshake result goes to results.
type server struct {
	addr    string
	results chan handshakeResult
}

type handshakeResult struct {
	state tls.ConnectionState
	err   error
}

func startServer(t *testing.T, cfg *tls.Config) *server {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	s := &server{addr: ln.Addr().String(), results: make(chan handshakeResult, 1)}

	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}

			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Server(conn, cfg)

			err = tc.Handshake()
			if err == nil {
				_, err = tc.Write([]byte{1}) // tells the client its certificate was accepted
			}

			s.results <- handshakeResult{tc.ConnectionState(), err}
			conn.Close()
		}
	}()

	return s
}

// dial connects to s with cfg and returns both ends' results. A client's handshake in TLS 1.3 ends before the server
// has checked the client's certificate, so the client reads the byte the server writes once it has.
func (s *server) dial(t *testing.T, cfg *tls.Config) (client, srv handshakeResult) {
	t.Helper()

	conn, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	require.NoError(t, err)

	defer conn.Close()

	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, cfg)

	err = tc.Handshake()
	if err == nil {
		_, err = tc.Read(make([]byte, 1))
	}

	return handshakeResult{tc.ConnectionState(), err}, <-s.results
}

func TestHandshake(t *testing.T) {
	ca, other := newCA(t, "lab"), newCA(t, "other")
	trust := trustOf(t, nil, ca)
	serverID := identityOf(t, ca, "n1")
	srv := startServer(t, tlsca.ServerConfig(serverID, trust, []string{proto, "http/1.1"}))

	t.Run("member", func(t *testing.T) {
		client, server := srv.dial(t, tlsca.ClientConfig(identityOf(t, ca, "n2"), trust, proto))
		require.NoError(t, client.err)
		require.NoError(t, server.err)
		require.Equal(t, proto, server.state.NegotiatedProtocol)
		require.Equal(t, uint16(tls.VersionTLS13), server.state.Version)

		member, ok := tlsca.PeerMember(&server.state)
		require.True(t, ok)
		require.Equal(t, "n2", member)

		member, ok = tlsca.PeerMember(&client.state)
		require.True(t, ok)
		require.Equal(t, "n1", member)
	})

	t.Run("another CA's member", func(t *testing.T) {
		client, server := srv.dial(t, tlsca.ClientConfig(identityOf(t, other, "n2"), trustOf(t, nil, ca, other),
			proto))
		require.ErrorContains(t, server.err, "certificate of member n2 is not signed by the cluster CA")
		require.Error(t, client.err)
	})

	t.Run("no certificate", func(t *testing.T) {
		client, server := srv.dial(t, tlsca.ClientConfig(tlsca.NewIdentity(), trust, proto))
		require.NoError(t, client.err)
		require.NoError(t, server.err)

		_, ok := tlsca.PeerMember(&server.state)
		require.False(t, ok)
	})

	t.Run("server of another CA", func(t *testing.T) {
		client, server := srv.dial(t, tlsca.ClientConfig(identityOf(t, other, "n2"), trustOf(t, nil, other), proto))
		require.ErrorContains(t, client.err, "server: certificate of member n1 is not signed by the cluster CA")
		require.Error(t, server.err)
	})

	t.Run("revoked then renewed", func(t *testing.T) {
		clientID := identityOf(t, ca, "n2")
		require.NoError(t, trust.Set(caPEMs(ca), []string{tlsca.SerialHex(clientID.Leaf())}))
		t.Cleanup(func() { require.NoError(t, trust.Set(caPEMs(ca), nil)) })

		_, server := srv.dial(t, tlsca.ClientConfig(clientID, trust, proto))
		require.ErrorIs(t, server.err, tlsca.ErrRevoked)

		// The client's renewed certificate is accepted, and the server's renewal is presented at once: same
		// listener, same tls.Configs.
		certPEM, keyPEM := issue(t, ca, "n2", time.Hour)
		require.NoError(t, clientID.Set(certPEM, keyPEM, ca.CertPEM))

		certPEM, keyPEM = issue(t, ca, "n1", time.Hour)
		require.NoError(t, serverID.Set(certPEM, keyPEM, ca.CertPEM))

		client, server := srv.dial(t, tlsca.ClientConfig(clientID, trust, proto))
		require.NoError(t, client.err)
		require.NoError(t, server.err)
		require.Equal(t, tlsca.SerialHex(parseCert(t, certPEM)), tlsca.SerialHex(client.state.PeerCertificates[0]))
		require.Equal(t, tlsca.SerialHex(clientID.Leaf()), tlsca.SerialHex(server.state.PeerCertificates[0]))
	})

	t.Run("rotated", func(t *testing.T) {
		// The server moves to a new CA; a client that trusts both (mid-rotation) still connects, and one that
		// trusts only the old CA does not.
		rotated := newCA(t, "lab")
		require.NoError(t, trust.Set(caPEMs(ca, rotated), nil))
		t.Cleanup(func() { require.NoError(t, trust.Set(caPEMs(ca), nil)) })

		certPEM, keyPEM := issue(t, rotated, "n1", time.Hour)
		require.NoError(t, serverID.Set(certPEM, keyPEM, rotated.CertPEM))

		client, server := srv.dial(t, tlsca.ClientConfig(identityOf(t, ca, "n2"), trust, proto))
		require.NoError(t, client.err)
		require.NoError(t, server.err)

		client, _ = srv.dial(t, tlsca.ClientConfig(identityOf(t, ca, "n2"), trustOf(t, nil, ca), proto))
		require.ErrorContains(t, client.err, "not signed by the cluster CA")
	})
}

func TestServerWithoutCertificate(t *testing.T) {
	ca := newCA(t, "lab")
	trust := trustOf(t, nil, ca)
	srv := startServer(t, tlsca.ServerConfig(tlsca.NewIdentity(), trust, []string{proto}))

	client, server := srv.dial(t, tlsca.ClientConfig(identityOf(t, ca, "n2"), trust, proto))
	require.ErrorContains(t, server.err, "this member has no certificate yet")
	require.Error(t, client.err)
}

func TestJoinClientConfig(t *testing.T) {
	ca, other := newCA(t, "lab"), newCA(t, "other")
	srv := startServer(t, tlsca.ServerConfig(identityOf(t, ca, "n1"), trustOf(t, nil, ca), []string{proto}))

	client, server := srv.dial(t, tlsca.JoinClientConfig(tlsca.Fingerprint(ca.Cert), proto))
	require.NoError(t, client.err)
	require.NoError(t, server.err)
	require.Equal(t, proto, client.state.NegotiatedProtocol)

	_, ok := tlsca.PeerMember(&server.state)
	require.False(t, ok, "a joining member presents no certificate")

	member, ok := tlsca.PeerMember(&client.state)
	require.True(t, ok)
	require.Equal(t, "n1", member)

	client, server = srv.dial(t, tlsca.JoinClientConfig(tlsca.Fingerprint(other.Cert), proto))
	require.ErrorContains(t, client.err, "the seed's CA is "+tlsca.Fingerprint(ca.Cert)+", the join token names "+
		tlsca.Fingerprint(other.Cert))
	require.Error(t, server.err)

	// A seed that shows the cluster CA (it is public) with a certificate of its own CA is refused.
	impostorCert, impostorKey := issue(t, other, "n1", time.Hour)
	pair, err := tls.X509KeyPair(impostorCert, impostorKey)
	require.NoError(t, err)

	pair.Certificate = append(pair.Certificate, ca.Cert.Raw)
	impostor := startServer(t, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}})

	client, _ = impostor.dial(t, tlsca.JoinClientConfig(tlsca.Fingerprint(ca.Cert), proto))
	require.ErrorContains(t, client.err, "the seed's certificate: certificate of member n1 is not signed by the "+
		"cluster CA")

	// A seed that shows no CA at all.
	pair.Certificate = pair.Certificate[:1]
	bare := startServer(t, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}})

	client, _ = bare.dial(t, tlsca.JoinClientConfig(tlsca.Fingerprint(ca.Cert), proto))
	require.ErrorContains(t, client.err, "the seed presented no CA certificate")
}
