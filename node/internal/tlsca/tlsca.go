// Package tlsca is the cluster's certificate authority and the mutual TLS its members speak on the cluster port. A
// cluster CA (kept in Raft by the caller) signs one certificate per member, naming the member in a URI SAN
// (edgefactory://member/<name>); a Trust holds the CAs member certificates must chain to and the revoked serials; an
// Identity holds this member's certificate; ServerConfig, ClientConfig and JoinClientConfig build tls.Configs that
// read both at every handshake, so renewal, revocation and CA rotation take effect without restarting a listener.
// Join tokens (Token) let a new member check a seed's CA by fingerprint before it holds any certificate.
//
// Guarantee: a peer is accepted as a member only if its certificate chains to a CA the Trust holds at handshake time,
// is valid now, is not revoked, is for both server and client authentication and names exactly one member. Host
// names are never checked: members are dialled by IP and identified by the member URI. Private keys and token
// secrets never appear in an error message.
package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

const (
	// memberScheme and memberHost make the URI SAN that names a member: edgefactory://member/<name>.
	memberScheme = "edgefactory"
	memberHost   = "member"

	// pemCertificate, pemPrivateKey and pemCSR are the PEM block types this package writes.
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"

	// clockSkew is how far back a member certificate's validity starts, so a peer whose clock is a little behind
	// accepts it at once.
	clockSkew = 5 * time.Minute
)

// CA is a cluster certificate authority: its certificate and key, parsed and as PEM.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS#8 "PRIVATE KEY" PEM
}

// NewCA makes a self-signed ECDSA P-256 CA for the cluster, valid from an hour ago for validity. It can sign member
// certificates only (no intermediate CAs).
func NewCA(cluster string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("new cluster CA: validity %s is not positive", validity)
	}

	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new cluster CA: %w", err)
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new cluster CA: %w", err)
	}

	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Edge Factory cluster CA " + cluster},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}

	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new cluster CA: %w", err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new cluster CA: %w", err)
	}

	return &CA{Cert: cert, Key: key, CertPEM: EncodeCert(cert), KeyPEM: keyPEM}, nil
}

// ParseCA reads a CA from PEM, as stored by the caller: the certificate must be a CA and the key its own. The key may
// be PKCS#8, SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"); KeyPEM is always PKCS#8.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}

	if !isCA(cert) {
		return nil, fmt.Errorf("cluster CA: the certificate %q is not a CA", cert.Subject.CommonName)
	}

	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}

	if !samePublicKey(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("cluster CA: the key is not the key of the certificate %q", cert.Subject.CommonName)
	}

	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: encode the key: %w", err)
	}

	return &CA{
		Cert: cert, Key: key, CertPEM: EncodeCert(cert),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: pkcs8}),
	}, nil
}

// Fingerprint names a certificate by the SHA-256 of its DER: "sha256:" and 64 lowercase hex digits. Join tokens name
// the cluster CA this way.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)

	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseCertPEM parses the first CERTIFICATE block of certPEM, skipping blocks of other types before it.
func ParseCertPEM(certPEM []byte) (*x509.Certificate, error) {
	rest := certPEM

	for {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}

		if block.Type != pemCertificate {
			continue
		}

		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}

		return cert, nil
	}
}

// NewKey makes an ECDSA P-256 key, returned parsed and as PKCS#8 PEM.
func NewKey() (key *ecdsa.PrivateKey, keyPEM []byte, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}

	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}

	return key, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// NewCSR makes a certificate request for member, signed with key: subject common name member and URI SAN
// MemberURI(member).
func NewCSR(key crypto.Signer, member string) (csrPEM []byte, err error) {
	if member == "" {
		return nil, errors.New("certificate request: no member name")
	}

	template := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: member},
		URIs:    []*url.URL{MemberURI(member)},
	}

	der, err := x509.CreateCertificateRequest(rand.Reader, template, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request for member %s: %w", member, err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// MemberURI is the URI SAN that names a member in its certificate: edgefactory://member/<name, path-escaped>.
func MemberURI(member string) *url.URL {
	return &url.URL{
		Scheme:  memberScheme,
		Host:    memberHost,
		Path:    "/" + member,
		RawPath: "/" + url.PathEscape(member),
	}
}

// MemberName returns the member a certificate names, if it has exactly one edgefactory://member/ URI SAN. It does not
// verify the certificate: Trust.Verify does.
func MemberName(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}

	return memberFromURIs(cert.URIs)
}

// memberFromURIs returns the member named by the only member URI among uris; false if there is none, more than one,
// or one that is not of the form MemberURI makes.
func memberFromURIs(uris []*url.URL) (string, bool) {
	var (
		name  string
		found int
	)

	for _, u := range uris {
		if u.Scheme != memberScheme || u.Host != memberHost {
			continue
		}

		found++
		name = strings.TrimPrefix(u.Path, "/")

		if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || !strings.HasPrefix(u.Path, "/") {
			name = ""
		}
	}

	if found != 1 || name == "" {
		return "", false
	}

	return name, true
}

// Sign issues a member certificate for a CSR made by NewCSR (or its like). The CSR must be signed by its own key and
// name member (common name, and member URI if it has one), else it is refused. The certificate takes nothing else from
// the CSR: the CA sets the subject, the member URI and the host names and IPs (hosts: each an IP address or a DNS
// name; empty entries are skipped). It is valid from five minutes ago (clock skew) for validity (a validity that is
// not positive gives a certificate that has already expired), for server and client authentication.
func (ca *CA) Sign(csrPEM []byte, member string, hosts []string, validity time.Duration) (certPEM []byte, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("sign member certificate: no CA")
	}

	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign certificate of member %s: %w", member, err)
	}

	if err := checkCSRNames(csr, member); err != nil {
		return nil, fmt.Errorf("sign certificate of member %s: %w", member, err)
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("sign certificate of member %s: %w", member, err)
	}

	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: member},
		URIs:           []*url.URL{MemberURI(member)},
		NotBefore:      now.Add(-clockSkew),
		NotAfter:       now.Add(validity),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}

	for _, host := range hosts {
		host = strings.TrimSpace(host)

		switch ip := net.ParseIP(host); {
		case host == "":
		case ip != nil:
			template.IPAddresses = append(template.IPAddresses, ip)
		default:
			template.DNSNames = append(template.DNSNames, host)
		}
	}

	der, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate of member %s: %w", member, err)
	}

	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), nil
}

// SerialHex is a certificate's serial number in lowercase hex, the form revocation lists use.
func SerialHex(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}

// parseCSR parses a PEM certificate request and checks it is signed by the key it carries.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != pemCSR && block.Type != "NEW "+pemCSR {
		return nil, errors.New("no PEM CERTIFICATE REQUEST block")
	}

	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}

	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}

	return csr, nil
}

// checkCSRNames checks that a certificate request is for member: its common name, and its member URI if it has any.
func checkCSRNames(csr *x509.CertificateRequest, member string) error {
	if member == "" {
		return errors.New("no member name")
	}

	if csr.Subject.CommonName != member {
		return fmt.Errorf("the certificate request is for %q", csr.Subject.CommonName)
	}

	if len(csr.URIs) == 0 {
		return nil
	}

	if name, ok := memberFromURIs(csr.URIs); !ok || name != member {
		return fmt.Errorf("the certificate request's URIs %v do not name member %s alone", csr.URIs, member)
	}

	return nil
}

// randomSerial is a random serial number of 128 bits, never zero.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	limit.Sub(limit, big.NewInt(1))

	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}

	return n.Add(n, big.NewInt(1)), nil
}

// parsePrivateKey reads the first private key block of keyPEM: PKCS#8, SEC 1 or PKCS#1.
func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	rest := keyPEM

	for {
		var block *pem.Block

		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key block")
		}

		var (
			key any
			err error
		)

		switch block.Type {
		case pemPrivateKey:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}

		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(block.Type), err)
		}

		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", key)
		}

		return signer, nil
	}
}

// samePublicKey reports whether two public keys are equal (all the standard library's key types can tell).
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(x crypto.PublicKey) bool })

	return ok && eq.Equal(b)
}

// isCA reports whether a certificate may sign certificates.
func isCA(cert *x509.Certificate) bool {
	return cert.IsCA && cert.BasicConstraintsValid
}

// encodeCert encodes a certificate as PEM.
// EncodeCert is a certificate as PEM.
func EncodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}
