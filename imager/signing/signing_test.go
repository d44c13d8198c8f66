package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testKeys generates 2048-bit material once per test binary: RSA generation is the slow part.
var testKeys = sync.OnceValues(func() (*SecureBootKeys, error) {
	return Generate(Options{SigningBits: 2048, CommonName: "edgefactory test"})
})

func keys(t *testing.T) *SecureBootKeys {
	t.Helper()

	k, err := testKeys()
	require.NoError(t, err)

	c := *k

	return &c
}

func TestGenerate(t *testing.T) {
	k := keys(t)
	require.NoError(t, k.Validate())

	for _, key := range [][]byte{k.SigningKey, k.PCRKey} {
		block, _ := pem.Decode(key)
		require.NotNil(t, block)
		require.Equal(t, "RSA PRIVATE KEY", block.Type, "the Talos signer parses PKCS#1 only")
	}

	block, _ := pem.Decode(k.SigningCert)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)

	require.Equal(t, "edgefactory test", cert.Subject.CommonName)
	require.Equal(t, x509.KeyUsageDigitalSignature, cert.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, cert.ExtKeyUsage)
	require.NoError(t, cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature), "self-signed")
	require.Equal(t, 2048, cert.PublicKey.(*rsa.PublicKey).N.BitLen())
	require.True(t, cert.NotBefore.Before(time.Now()))
	require.True(t, cert.NotAfter.After(time.Now().Add(9*365*24*time.Hour)))

	pcr, err := x509.ParsePKCS1PrivateKey(mustBlock(t, k.PCRKey))
	require.NoError(t, err)
	require.Equal(t, PCRBits, pcr.N.BitLen())
}

func TestGenerateRejectsSmallKeys(t *testing.T) {
	_, err := Generate(Options{SigningBits: 1024})
	require.ErrorContains(t, err, "too small")
}

func mustBlock(t *testing.T, data []byte) []byte {
	t.Helper()

	block, _ := pem.Decode(data)
	require.NotNil(t, block)

	return block.Bytes
}

func TestValidate(t *testing.T) {
	good := keys(t)

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	pkcs8, err := x509.MarshalPKCS8PrivateKey(other)
	require.NoError(t, err)

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)

	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})

	tests := []struct {
		name   string
		mutate func(k *SecureBootKeys)
		errHas string
	}{
		{name: "valid", mutate: func(*SecureBootKeys) {}},
		{name: "cert of another key", mutate: func(k *SecureBootKeys) { k.SigningKey = otherPEM }, errHas: "does not match"},
		{name: "PKCS#8 signing key", mutate: func(k *SecureBootKeys) {
			k.SigningKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
		}, errHas: "PKCS#1"},
		{name: "PKCS#8 PCR key", mutate: func(k *SecureBootKeys) {
			k.PCRKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
		}, errHas: "PCR signing key"},
		{name: "small PCR key", mutate: func(k *SecureBootKeys) {
			k.PCRKey = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})
		}, errHas: "1024 bits"},
		{name: "no cert", mutate: func(k *SecureBootKeys) { k.SigningCert = nil }, errHas: "certificate"},
		{name: "garbage key", mutate: func(k *SecureBootKeys) { k.SigningKey = []byte("nope") }, errHas: "no PEM block"},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := *good
			tc.mutate(&k)

			err := k.Validate()
			if tc.errHas == "" {
				require.NoError(t, err)

				return
			}

			require.ErrorContains(t, err, tc.errHas)
		})
	}
}

func TestFingerprint(t *testing.T) {
	k := keys(t)

	pcr, err := x509.ParsePKCS1PrivateKey(mustBlock(t, k.PCRKey))
	require.NoError(t, err)

	pcrPub, err := x509.MarshalPKIXPublicKey(&pcr.PublicKey)
	require.NoError(t, err)

	want := sha256.Sum256(append(mustBlock(t, k.SigningCert), pcrPub...))
	require.Equal(t, hex.EncodeToString(want[:]), k.Fingerprint())

	// Only public material counts: the same keys re-encoded with extra PEM headers have the same fingerprint.
	withHeaders := *k
	withHeaders.SigningKey = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"X": "y"},
		Bytes: mustBlock(t, k.SigningKey)})
	require.Equal(t, k.Fingerprint(), withHeaders.Fingerprint())

	other, err := Generate(Options{SigningBits: 2048})
	require.NoError(t, err)
	require.NotEqual(t, k.Fingerprint(), other.Fingerprint())

	mixed := *k
	mixed.PCRKey = other.PCRKey
	require.NotEqual(t, k.Fingerprint(), mixed.Fingerprint(), "the PCR key is part of the fingerprint")

	require.Empty(t, (&SecureBootKeys{}).Fingerprint())
}

func TestNoPrivateKeyInOutput(t *testing.T) {
	k := keys(t)

	var logs bytes.Buffer

	slog.New(slog.NewTextHandler(&logs, nil)).Info("keys", "sb", k, "value", *k)

	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, *k, k, k), logs.String(),
	} {
		require.NotContains(t, s, "PRIVATE")
		require.NotContains(t, s, string(mustBlock(t, k.SigningKey)[:16]))
		require.Contains(t, s, k.Fingerprint())
	}
}

func TestWriteFilesAndLoad(t *testing.T) {
	k := keys(t)
	dir := filepath.Join(t.TempDir(), "keys")

	assets, err := k.WriteFiles(dir)
	require.NoError(t, err)

	for _, p := range []string{assets.SecureBootSigner.KeyPath, assets.SecureBootSigner.CertPath, assets.PCRSigner.KeyPath} {
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), p)
	}

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary files left")

	// The Talos imager's own file signers accept what was written.
	sb, err := assets.SecureBootSigner.GetSigner(context.Background())
	require.NoError(t, err)
	require.Equal(t, "edgefactory test", sb.Certificate().Subject.CommonName)

	pcr, err := assets.PCRSigner.GetSigner(context.Background())
	require.NoError(t, err)
	require.Equal(t, PCRBits, pcr.PublicRSAKey().N.BitLen())

	loaded, err := Load(assets.SecureBootSigner.KeyPath, assets.SecureBootSigner.CertPath, assets.PCRSigner.KeyPath)
	require.NoError(t, err)
	require.True(t, loaded.Equal(k))

	// Overwriting keeps one file per name.
	_, err = k.WriteFiles(dir)
	require.NoError(t, err)

	_, err = Load(assets.PCRSigner.KeyPath, assets.SecureBootSigner.CertPath, assets.PCRSigner.KeyPath)
	require.ErrorContains(t, err, "does not match")

	_, err = Load(filepath.Join(dir, "missing"), assets.SecureBootSigner.CertPath, assets.PCRSigner.KeyPath)
	require.Error(t, err)

	bad := *k
	bad.SigningCert = nil
	_, err = bad.WriteFiles(t.TempDir())
	require.Error(t, err)
}

func TestECDSA(t *testing.T) {
	k, err := GenerateECDSA()
	require.NoError(t, err)

	require.Equal(t, "PRIVATE KEY", pemType(k.PrivatePEM))
	require.Equal(t, "PUBLIC KEY", pemType(k.PublicPEM))

	priv, err := k.Signer()
	require.NoError(t, err)

	pub, err := k.Public()
	require.NoError(t, err)

	digest := sha256.Sum256([]byte("installer manifest"))
	sig, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	require.NoError(t, err)
	require.True(t, ecdsa.VerifyASN1(pub, digest[:], sig))

	// SEC 1 "EC PRIVATE KEY" is accepted too.
	sec1, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)

	alt := &ECDSAKey{PrivatePEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), PublicPEM: k.PublicPEM}
	_, err = alt.Signer()
	require.NoError(t, err)

	other, err := GenerateECDSA()
	require.NoError(t, err)

	mismatched := &ECDSAKey{PrivatePEM: k.PrivatePEM, PublicPEM: other.PublicPEM}
	_, err = mismatched.Signer()
	require.ErrorContains(t, err, "does not match")

	require.NotContains(t, fmt.Sprintf("%v %#v", k, *k), "PRIVATE")
}

func pemType(data []byte) string {
	block, _ := pem.Decode(data)
	if block == nil {
		return ""
	}

	return block.Type
}
