package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRevoked is wrapped by the error of Trust.Verify for a certificate whose serial is revoked.
var ErrRevoked = errors.New("certificate revoked")

// Trust is what member certificates are checked against: the cluster CAs they must chain to (two during a CA
// rotation) and the revoked serials. The caller replaces both with Set whenever the cluster's state changes; every
// handshake reads the current ones. It is safe for concurrent use.
type Trust struct {
	mu      sync.RWMutex
	roots   []*x509.Certificate
	pool    *x509.CertPool
	revoked map[string]bool // SerialHex form
}

// NewTrust returns a Trust that holds no CA yet, and so refuses every certificate.
func NewTrust() *Trust {
	return &Trust{pool: x509.NewCertPool()}
}

// Set replaces the trusted CAs (PEM, one certificate each) and the revoked serials (hex, as SerialHex gives them; case
// and leading zeros do not matter). Nothing changes if a PEM does not parse, is not a CA, or a serial is not hex. An
// empty caPEMs is allowed: then every certificate is refused.
func (t *Trust) Set(caPEMs [][]byte, revokedSerials []string) error {
	roots := make([]*x509.Certificate, 0, len(caPEMs))
	pool := x509.NewCertPool()
	seen := map[string]bool{}

	for i, raw := range caPEMs {
		cert, err := ParseCertPEM(raw)
		if err != nil {
			return fmt.Errorf("trusted CA %d: %w", i+1, err)
		}

		if !isCA(cert) {
			return fmt.Errorf("trusted CA %d: the certificate %q is not a CA", i+1, cert.Subject.CommonName)
		}

		if fp := Fingerprint(cert); !seen[fp] {
			seen[fp] = true
			roots = append(roots, cert)
			pool.AddCert(cert)
		}
	}

	revoked := make(map[string]bool, len(revokedSerials))

	for _, s := range revokedSerials {
		serial, ok := new(big.Int).SetString(strings.TrimSpace(s), 16)
		if !ok || serial.Sign() <= 0 {
			return fmt.Errorf("revoked serial %q is not a positive hex number", s)
		}

		revoked[serial.Text(16)] = true
	}

	t.mu.Lock()
	defer t.mu.Unlock()

	t.roots, t.pool, t.revoked = roots, pool, revoked

	return nil
}

// Roots returns copies of the trusted CA certificates.
func (t *Trust) Roots() []*x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()

	roots := make([]*x509.Certificate, 0, len(t.roots))

	for _, root := range t.roots {
		if cert, err := x509.ParseCertificate(root.Raw); err == nil { // it parsed when it was set
			roots = append(roots, cert)
		}
	}

	return roots
}

// Verify checks a certificate chain as TLS hands it (leaf first) and returns the member the leaf names. The leaf must
// chain to a trusted CA (member certificates are signed by a cluster CA directly, so the rest of the chain is not
// used), be valid now, be for both server and client authentication, name exactly one member and not be revoked
// (the error then wraps ErrRevoked).
func (t *Trust) Verify(rawCerts [][]byte) (member string, err error) {
	if len(rawCerts) == 0 {
		return "", errors.New("no certificate presented")
	}

	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return "", fmt.Errorf("parse the peer's certificate: %w", err)
	}

	t.mu.RLock()
	empty, pool, revoked := len(t.roots) == 0, t.pool, t.revoked
	t.mu.RUnlock()

	if empty {
		return "", fmt.Errorf("certificate of %s is refused: no cluster CA is trusted yet", describe(leaf))
	}

	member, err = verifyMember(leaf, pool, time.Now())
	if err != nil {
		return "", err
	}

	if serial := SerialHex(leaf); revoked[serial] {
		return "", fmt.Errorf("certificate of member %s was revoked (serial %s): %w", member, serial, ErrRevoked)
	}

	return member, nil
}

// verifyMember checks that leaf is a member certificate signed by a CA in roots and valid at now, and returns the
// member it names.
func verifyMember(leaf *x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	// Any extended key usage lets the chain verify; the leaf's own usages are required explicitly below, since a
	// member certificate serves both ends of a connection.
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}

	if _, err := leaf.Verify(opts); err != nil {
		var (
			invalid x509.CertificateInvalidError
			unknown x509.UnknownAuthorityError
		)

		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired && now.After(leaf.NotAfter):
			return "", fmt.Errorf("certificate of %s expired at %s: %w", describe(leaf),
				leaf.NotAfter.UTC().Format(time.RFC3339), err)
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired && now.Before(leaf.NotBefore):
			return "", fmt.Errorf("certificate of %s is not valid before %s: %w", describe(leaf),
				leaf.NotBefore.UTC().Format(time.RFC3339), err)
		case errors.As(err, &unknown):
			return "", fmt.Errorf("certificate of %s is not signed by the cluster CA (its issuer is %q): %w",
				describe(leaf), leaf.Issuer.CommonName, err)
		default:
			return "", fmt.Errorf("certificate of %s does not verify: %w", describe(leaf), err)
		}
	}

	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", fmt.Errorf("certificate of %s is not a member certificate: it is not for both server and "+
			"client authentication", describe(leaf))
	}

	member, ok := MemberName(leaf)
	if !ok {
		return "", fmt.Errorf("certificate of %s names no member (it needs exactly one %s://%s/ URI)",
			describe(leaf), memberScheme, memberHost)
	}

	return member, nil
}

// describe names the subject of a certificate for an error message: "member n2", or its common name.
func describe(cert *x509.Certificate) string {
	if member, ok := MemberName(cert); ok {
		return "member " + member
	}

	return fmt.Sprintf("%q", cert.Subject.CommonName)
}

// Identity is this member's certificate, with its key and the CA that signed it. The caller replaces it with Set on
// renewal or CA rotation; every handshake reads the current one. It is safe for concurrent use.
type Identity struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewIdentity returns an Identity with no certificate yet.
func NewIdentity() *Identity {
	return &Identity{}
}

// Set replaces the certificate: the member certificate (PEM; only its first certificate is used), its key (PEM) and
// the CA certificate that signed it (PEM), which is presented after the leaf so peers (a joining member) can see the
// CA. Nothing changes if the key is not the certificate's, the CA did not sign it, or it names no member.
func (i *Identity) Set(certPEM, keyPEM, caPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("member certificate: %w", err)
	}

	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("member certificate: %w", err)
	}

	ca, err := ParseCertPEM(caPEM)
	if err != nil {
		return fmt.Errorf("member certificate's CA: %w", err)
	}

	if !isCA(ca) {
		return fmt.Errorf("member certificate's CA: the certificate %q is not a CA", ca.Subject.CommonName)
	}

	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("certificate of %s is not signed by the CA %q: %w", describe(leaf), ca.Subject.CommonName,
			err)
	}

	if _, ok := MemberName(leaf); !ok {
		return fmt.Errorf("certificate %q names no member", leaf.Subject.CommonName)
	}

	i.cert.Store(&tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.Raw},
		PrivateKey:  pair.PrivateKey,
		Leaf:        leaf,
	})

	return nil
}

// Certificate returns the current certificate for TLS, nil until Set.
func (i *Identity) Certificate() *tls.Certificate {
	return i.cert.Load()
}

// Leaf returns the current member certificate, nil until Set.
func (i *Identity) Leaf() *x509.Certificate {
	if cert := i.cert.Load(); cert != nil {
		return cert.Leaf
	}

	return nil
}

// NotAfter is when the current certificate expires, the zero time until Set.
func (i *Identity) NotAfter() time.Time {
	if leaf := i.Leaf(); leaf != nil {
		return leaf.NotAfter
	}

	return time.Time{}
}

// ServerConfig is the cluster port's TLS configuration: it presents id's current certificate, offers nextProtos
// (ALPN) and requests a client certificate without requiring one (the join endpoint is reached without one). A client
// certificate that is presented must pass trust.Verify, else the handshake fails; a connection without one is
// accepted, and the caller decides per request with PeerMember.
//
// Verification runs in VerifyConnection, which runs on resumed sessions too, so a revoked certificate or a retired CA
// cannot come back through a session ticket.
func ServerConfig(id *Identity, trust *Trust, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: slices.Clone(nextProtos),
		ClientAuth: tls.RequestClientCert,
		// Members stream assets to each other: full-size records from the first byte (the small records that help
		// a browser's first paint only cost throughput here).
		DynamicRecordSizingDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := id.Certificate()
			if cert == nil {
				return nil, errors.New("this member has no certificate yet")
			}

			return cert, nil
		},
		VerifyConnection: func(state tls.ConnectionState) error {
			if len(state.PeerCertificates) == 0 {
				return nil
			}

			if _, err := trust.Verify(rawCerts(state.PeerCertificates)); err != nil {
				return fmt.Errorf("client: %w", err)
			}

			return nil
		},
	}
}

// ClientConfig is the TLS configuration a member dials another member's cluster port with: it presents id's current
// certificate (none while id has none) and requires that the server's passes trust.Verify. Members are dialled by IP
// and identified by their member URI, so the host name is not checked (the standard verification is off, and
// VerifyConnection does the member checks instead).
func ClientConfig(id *Identity, trust *Trust, nextProto string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         protos(nextProto),
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies the chain and member URI, not the host name
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert := id.Certificate(); cert != nil {
				return cert, nil
			}

			return &tls.Certificate{}, nil // none to send: the server decides what an anonymous client may do
		},
		VerifyConnection: func(state tls.ConnectionState) error {
			if _, err := trust.Verify(rawCerts(state.PeerCertificates)); err != nil {
				return fmt.Errorf("server: %w", err)
			}

			return nil
		},
	}
}

// JoinClientConfig is the TLS configuration of a member that holds no certificate yet and dials a seed to join: the
// seed must present the CA whose Fingerprint the join token names (caFingerprint), and a member certificate that CA
// signed. Host names are not checked, as with ClientConfig.
func JoinClientConfig(caFingerprint string, nextProto string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         protos(nextProto),
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies the chain against the token's CA fingerprint
		VerifyConnection: func(state tls.ConnectionState) error {
			return verifySeed(state.PeerCertificates, caFingerprint)
		},
	}
}

// verifySeed checks that a seed's chain holds the CA with the fingerprint a join token names and that the leaf is a
// member certificate that CA signed.
func verifySeed(certs []*x509.Certificate, caFingerprint string) error {
	if len(certs) == 0 {
		return errors.New("the seed presented no certificate")
	}

	var presented []string

	for _, cert := range certs[1:] {
		if !isCA(cert) {
			continue
		}

		fp := Fingerprint(cert)
		if fp != caFingerprint {
			presented = append(presented, fp)

			continue
		}

		pool := x509.NewCertPool()
		pool.AddCert(cert)

		if _, err := verifyMember(certs[0], pool, time.Now()); err != nil {
			return fmt.Errorf("the seed's certificate: %w", err)
		}

		return nil
	}

	if len(presented) == 0 {
		return fmt.Errorf("the seed presented no CA certificate; the join token names %s", caFingerprint)
	}

	return fmt.Errorf("the seed's CA is %s, the join token names %s", strings.Join(presented, " and "), caFingerprint)
}

// PeerMember returns the member named by the certificate the peer presented, false if it presented none. It is meant
// for connections accepted with ServerConfig (or dialled with ClientConfig), whose handshake fails for a certificate
// the Trust does not accept: it does not verify the certificate again. A connection keeps the member it was
// accepted with for its life, even if its certificate is revoked later.
func PeerMember(state *tls.ConnectionState) (string, bool) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return "", false
	}

	return MemberName(state.PeerCertificates[0])
}

// rawCerts returns the DER of each certificate, as Trust.Verify takes them.
func rawCerts(certs []*x509.Certificate) [][]byte {
	raw := make([][]byte, len(certs))
	for i, cert := range certs {
		raw[i] = cert.Raw
	}

	return raw
}

// protos is the ALPN list of one protocol, none if it is empty.
func protos(proto string) []string {
	if proto == "" {
		return nil
	}

	return []string{proto}
}
