package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
)

// ECDSAKey is a P-256 key pair for signing installer images (cosign-style): the private key as PKCS#8 PEM
// ("PRIVATE KEY") and the public key as PKIX PEM ("PUBLIC KEY", what `cosign verify --key` reads).
type ECDSAKey struct {
	PrivatePEM []byte
	PublicPEM  []byte
}

// GenerateECDSA makes a new P-256 key pair.
func GenerateECDSA() (*ECDSAKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA key: %w", err)
	}

	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode ECDSA private key: %w", err)
	}

	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encode ECDSA public key: %w", err)
	}

	return &ECDSAKey{
		PrivatePEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		PublicPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}, nil
}

// Signer parses the private key (PKCS#8 or SEC 1 "EC PRIVATE KEY") and checks it matches PublicPEM.
func (k *ECDSAKey) Signer() (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(k.PrivatePEM)
	if block == nil {
		return nil, errors.New("ECDSA private key: no PEM block")
	}

	var (
		key *ecdsa.PrivateKey
		err error
	)

	switch block.Type {
	case "PRIVATE KEY":
		var parsed any

		if parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			var ok bool
			if key, ok = parsed.(*ecdsa.PrivateKey); !ok {
				err = fmt.Errorf("PKCS#8 key is %T, not ECDSA", parsed)
			}
		}
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		err = fmt.Errorf("PEM type %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}

	if err != nil {
		return nil, fmt.Errorf("ECDSA private key: %w", err)
	}

	if pub, err := k.Public(); err != nil || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("ECDSA public key does not match the private key")
	}

	return key, nil
}

// Public parses PublicPEM.
func (k *ECDSAKey) Public() (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(k.PublicPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("ECDSA public key: no PUBLIC KEY PEM block")
	}

	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ECDSA public key: %w", err)
	}

	pub, ok := parsed.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("ECDSA public key: key is %T", parsed)
	}

	return pub, nil
}

// String never shows the private key.
func (k ECDSAKey) String() string { return "ECDSAKey{public}" }

// GoString never shows the private key.
func (k ECDSAKey) GoString() string { return k.String() }

// LogValue logs nothing secret.
func (k ECDSAKey) LogValue() slog.Value { return slog.StringValue("ECDSAKey{public}") }
