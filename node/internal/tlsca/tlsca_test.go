package tlsca_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node/internal/tlsca"
)

// newCA makes a cluster CA valid for a day.
func newCA(t *testing.T, cluster string) *tlsca.CA {
	t.Helper()

	ca, err := tlsca.NewCA(cluster, 24*time.Hour)
	require.NoError(t, err)

	return ca
}

// issue makes a key and a certificate of ca for member, as a joining member and the CA would.
func issue(t *testing.T, ca *tlsca.CA, member string, validity time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()

	key, keyPEM, err := tlsca.NewKey()
	require.NoError(t, err)

	csr, err := tlsca.NewCSR(key, member)
	require.NoError(t, err)

	certPEM, err = ca.Sign(csr, member, []string{"127.0.0.1"}, validity)
	require.NoError(t, err)

	return certPEM, keyPEM
}

// parseCert parses a PEM certificate.
func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()

	cert, err := tlsca.ParseCertPEM(certPEM)
	require.NoError(t, err)

	return cert
}

func TestCARoundTrip(t *testing.T) {
	ca := newCA(t, "lab")
	require.True(t, ca.Cert.IsCA)
	require.Equal(t, "Edge Factory cluster CA lab", ca.Cert.Subject.CommonName)
	require.LessOrEqual(t, ca.Cert.SerialNumber.BitLen(), 128)
	require.Greater(t, ca.Cert.SerialNumber.BitLen(), 64) // random: fewer bits has a chance of 2^-64
	require.Contains(t, string(ca.KeyPEM), "-----BEGIN PRIVATE KEY-----")

	parsed, err := tlsca.ParseCA(ca.CertPEM, ca.KeyPEM)
	require.NoError(t, err)
	require.Equal(t, tlsca.Fingerprint(ca.Cert), tlsca.Fingerprint(parsed.Cert))
	require.Regexp(t, `^sha256:[0-9a-f]{64}$`, tlsca.Fingerprint(parsed.Cert))

	// The parsed CA signs certificates the original's trust accepts.
	certPEM, _ := issue(t, parsed, "n2", time.Hour)
	require.NoError(t, parseCert(t, certPEM).CheckSignatureFrom(ca.Cert))

	other := newCA(t, "other")
	_, err = tlsca.ParseCA(ca.CertPEM, other.KeyPEM)
	require.ErrorContains(t, err, "the key is not the key of the certificate")

	// A member certificate is not a CA.
	_, memberKey := issue(t, ca, "n2", time.Hour)
	_, err = tlsca.ParseCA(certPEM, memberKey)
	require.ErrorContains(t, err, "is not a CA")
}

func TestSign(t *testing.T) {
	ca := newCA(t, "lab")

	key, _, err := tlsca.NewKey()
	require.NoError(t, err)

	csr, err := tlsca.NewCSR(key, "n2")
	require.NoError(t, err)

	certPEM, err := ca.Sign(csr, "n2", []string{"10.0.0.2", "", "n2.lab.example", "fd00::2"}, time.Hour)
	require.NoError(t, err)

	cert := parseCert(t, certPEM)
	member, ok := tlsca.MemberName(cert)
	require.True(t, ok)
	require.Equal(t, "n2", member)
	require.Equal(t, "n2", cert.Subject.CommonName)
	require.Equal(t, []string{"n2.lab.example"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 2)
	require.True(t, cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.2")))
	require.True(t, cert.IPAddresses[1].Equal(net.ParseIP("fd00::2")))
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		cert.ExtKeyUsage)
	require.Equal(t, x509.KeyUsageDigitalSignature, cert.KeyUsage)
	require.False(t, cert.IsCA)
	require.Equal(t, ca.Cert.SubjectKeyId, cert.AuthorityKeyId)
	require.NoError(t, cert.CheckSignatureFrom(ca.Cert))
	require.WithinDuration(t, time.Now().Add(time.Hour), cert.NotAfter, time.Minute)
	require.WithinDuration(t, time.Now().Add(-5*time.Minute), cert.NotBefore, time.Minute)
	require.Equal(t, cert.SerialNumber.Text(16), tlsca.SerialHex(cert))
	require.Equal(t, strings.ToLower(tlsca.SerialHex(cert)), tlsca.SerialHex(cert))

	// Two certificates never share a serial.
	again, err := ca.Sign(csr, "n2", nil, time.Hour)
	require.NoError(t, err)
	require.NotEqual(t, tlsca.SerialHex(cert), tlsca.SerialHex(parseCert(t, again)))

	_, err = ca.Sign(csr, "n3", nil, time.Hour)
	require.ErrorContains(t, err, `the certificate request is for "n2"`)

	// A CSR whose bytes were changed after signing: its signature (the last byte) or its names (n2 → n4, signed as
	// n4 so that only the signature can tell).
	block, _ := pem.Decode(csr)
	require.NotNil(t, block)

	flipped := bytes.Clone(block.Bytes)
	flipped[len(flipped)-1] ^= 0x01
	renamed := bytes.ReplaceAll(block.Bytes, []byte("n2"), []byte("n4"))

	for name, tc := range map[string]struct {
		der    []byte
		member string
	}{
		"signature": {flipped, "n2"},
		"names":     {renamed, "n4"},
	} {
		t.Run(name, func(t *testing.T) {
			tampered := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: tc.der})

			_, err := ca.Sign(tampered, tc.member, nil, time.Hour)
			require.ErrorContains(t, err, "signature")
		})
	}
}

func TestMemberName(t *testing.T) {
	for _, member := range []string{"n2", "rack 1/node 2", "ü"} {
		u := tlsca.MemberURI(member)
		require.True(t, strings.HasPrefix(u.String(), "edgefactory://member/"), u.String())

		ca := newCA(t, "lab")
		cert := parseCert(t, first(issue(t, ca, member, time.Hour)))

		got, ok := tlsca.MemberName(cert)
		require.True(t, ok)
		require.Equal(t, member, got)
	}

	require.Equal(t, "edgefactory://member/rack%201%2Fnode%202", tlsca.MemberURI("rack 1/node 2").String())

	// None, or two: no member.
	_, ok := tlsca.MemberName(&x509.Certificate{})
	assert.False(t, ok)

	_, ok = tlsca.MemberName(&x509.Certificate{URIs: []*url.URL{tlsca.MemberURI("a"), tlsca.MemberURI("b")}})
	assert.False(t, ok)

	_, ok = tlsca.MemberName(nil)
	assert.False(t, ok)
}

// first returns the first of two values.
func first[A, B any](a A, _ B) A { return a }
