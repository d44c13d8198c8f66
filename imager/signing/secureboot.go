// Package signing makes and checks the signing material of the factory: the secure-boot UKI signing key and
// certificate, the TPM PCR signing key, and an ECDSA key for signing installer images, with the cosign signatures
// made and checked with such a key (CosignSignature, VerifyCosignPayload).
//
// Guarantee: every private key leaves this package as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY", what the Talos imager's
// file signer parses) or, for ECDSA, PKCS#8 PEM; Validate accepts a SecureBootKeys only when the certificate belongs
// to the signing key; Fingerprint and the String/LogValue forms are computed from public material only, so printing
// or logging keys never reveals a private key.
package signing

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // subject key identifier per RFC 5280 §4.2.1.2, not a security hash
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"time"
)

// PEM block types. Talos parses the private keys with x509.ParsePKCS1PrivateKey, so nothing else will do.
const (
	pemRSAPrivateKey = "RSA PRIVATE KEY"
	pemCertificate   = "CERTIFICATE"
)

// Sizes of the generated RSA keys.
const (
	DefaultSigningBits = 4096 // the UKI signing key, as `talosctl gen secureboot uki`
	PCRBits            = 2048 // the PCR signing key, as `talosctl gen secureboot pcr`
	minBits            = 2048
)

// CertValidity is how long a generated signing certificate is valid. UEFI firmware does not check certificate
// dates when verifying signatures, so this only needs to outlive the cluster.
const CertValidity = 10 * 365 * 24 * time.Hour

// SecureBootKeys is the secure-boot signing material, all PEM: the UKI signing key (PKCS#1) and its self-signed
// certificate, and the PCR signing key (PKCS#1).
type SecureBootKeys struct {
	SigningKey  []byte
	SigningCert []byte
	PCRKey      []byte
}

// Options tune Generate. The zero value generates a 4096-bit signing key for "Edge Factory UKI signing".
type Options struct {
	// SigningBits is the size of the UKI signing key; 0 means DefaultSigningBits. Tests use 2048 for speed.
	SigningBits int
	// CommonName is the certificate's subject CN (and O); "" means "Edge Factory UKI signing".
	CommonName string
	// Now is the certificate's NotBefore; zero means the current time.
	Now time.Time
}

// Generate makes new secure-boot material: an RSA UKI signing key with a self-signed code-signing certificate (key
// usage digitalSignature, extended key usage codeSigning) and a 2048-bit RSA PCR signing key.
func Generate(o Options) (*SecureBootKeys, error) {
	if o.SigningBits == 0 {
		o.SigningBits = DefaultSigningBits
	}

	if o.SigningBits < minBits {
		return nil, fmt.Errorf("generate secure-boot keys: signing key of %d bits is too small (minimum %d)", o.SigningBits, minBits)
	}

	if o.CommonName == "" {
		o.CommonName = "Edge Factory UKI signing"
	}

	if o.Now.IsZero() {
		o.Now = time.Now()
	}

	signing, err := rsa.GenerateKey(rand.Reader, o.SigningBits)
	if err != nil {
		return nil, fmt.Errorf("generate UKI signing key: %w", err)
	}

	certDER, err := selfSigned(signing, o.CommonName, o.Now)
	if err != nil {
		return nil, fmt.Errorf("generate UKI signing certificate: %w", err)
	}

	pcr, err := rsa.GenerateKey(rand.Reader, PCRBits)
	if err != nil {
		return nil, fmt.Errorf("generate PCR signing key: %w", err)
	}

	return &SecureBootKeys{
		SigningKey:  pem.EncodeToMemory(&pem.Block{Type: pemRSAPrivateKey, Bytes: x509.MarshalPKCS1PrivateKey(signing)}),
		SigningCert: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: certDER}),
		PCRKey:      pem.EncodeToMemory(&pem.Block{Type: pemRSAPrivateKey, Bytes: x509.MarshalPKCS1PrivateKey(pcr)}),
	}, nil
}

func selfSigned(key *rsa.PrivateKey, cn string, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}

	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}

	ski := sha1.Sum(pub) //nolint:gosec // identifier, see import

	name := pkix.Name{CommonName: cn, Organization: []string{cn}}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between nodes
		NotAfter:              now.Add(CertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski[:],
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}

	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
}

// Load reads secure-boot material from PEM files and validates it.
func Load(keyPath, certPath, pcrPath string) (*SecureBootKeys, error) {
	var k SecureBootKeys

	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{keyPath, &k.SigningKey}, {certPath, &k.SigningCert}, {pcrPath, &k.PCRKey}} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("load secure-boot keys: %w", err)
		}

		*f.dst = data
	}

	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("load secure-boot keys from %s, %s, %s: %w", keyPath, certPath, pcrPath, err)
	}

	return &k, nil
}

// Validate checks that both keys are PKCS#1 PEM RSA keys of at least 2048 bits and that the certificate holds the
// signing key's public key.
func (k *SecureBootKeys) Validate() error {
	signing, err := parseRSA("UKI signing key", k.SigningKey)
	if err != nil {
		return err
	}

	cert, err := parseCert(k.SigningCert)
	if err != nil {
		return err
	}

	if !signing.PublicKey.Equal(cert.PublicKey) {
		return errors.New("UKI signing certificate does not match the UKI signing key")
	}

	if _, err := parseRSA("PCR signing key", k.PCRKey); err != nil {
		return err
	}

	return nil
}

func parseRSA(what string, data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", what)
	}

	if block.Type != pemRSAPrivateKey {
		return nil, fmt.Errorf("%s: PEM type %q, want %q (PKCS#1; convert with `openssl rsa -traditional`)",
			what, block.Type, pemRSAPrivateKey)
	}

	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	if key.N.BitLen() < minBits {
		return nil, fmt.Errorf("%s: %d bits, want at least %d", what, key.N.BitLen(), minBits)
	}

	return key, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemCertificate {
		return nil, errors.New("UKI signing certificate: no CERTIFICATE PEM block")
	}

	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("UKI signing certificate: %w", err)
	}

	return cert, nil
}

// Fingerprint identifies the material by its public parts only: lowercase hex sha256 over the certificate's DER
// followed by the PKIX DER of the PCR public key. It goes into recipe keys, so a key change changes every
// secure-boot asset. Invalid material yields "".
func (k *SecureBootKeys) Fingerprint() string {
	fp, err := k.fingerprint()
	if err != nil {
		return ""
	}

	return fp
}

func (k *SecureBootKeys) fingerprint() (string, error) {
	cert, err := parseCert(k.SigningCert)
	if err != nil {
		return "", err
	}

	pcr, err := parseRSA("PCR signing key", k.PCRKey)
	if err != nil {
		return "", err
	}

	pcrPub, err := x509.MarshalPKIXPublicKey(&pcr.PublicKey)
	if err != nil {
		return "", fmt.Errorf("PCR public key: %w", err)
	}

	h := sha256.New()
	h.Write(cert.Raw)
	h.Write(pcrPub)

	return hex.EncodeToString(h.Sum(nil)), nil
}

// Equal reports whether two sets of material hold the same bytes.
func (k *SecureBootKeys) Equal(o *SecureBootKeys) bool {
	return bytes.Equal(k.SigningKey, o.SigningKey) && bytes.Equal(k.SigningCert, o.SigningCert) &&
		bytes.Equal(k.PCRKey, o.PCRKey)
}

// String never shows private keys (fmt's %v and %s of a *SecureBootKeys land here).
func (k SecureBootKeys) String() string { return "SecureBootKeys{fingerprint:" + k.Fingerprint() + "}" }

// GoString never shows private keys (%#v).
func (k SecureBootKeys) GoString() string { return k.String() }

// LogValue logs the fingerprint only.
func (k SecureBootKeys) LogValue() slog.Value {
	return slog.GroupValue(slog.String("fingerprint", k.Fingerprint()))
}
