package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	testImage = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testRepo  = "ghcr.io/siderolabs/imager"
)

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()

	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	return k
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)

	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestCosignSignatureLayout: the payload, config and manifest are the bytes cosign's legacy tag scheme has (the
// payload byte for byte), each digest is of its bytes, and the signature in the layer annotation verifies.
func TestCosignSignatureLayout(t *testing.T) {
	key := ecKey(t)

	parts, err := CosignSignature(testImage, testRepo, key)
	require.NoError(t, err)

	require.Equal(t, `{"critical":{"identity":{"docker-reference":"ghcr.io/siderolabs/imager"},"image":{"docker-manifest-digest":"`+
		testImage+`"},"type":"cosign container image signature"},"optional":null}`, string(parts.Payload.Data))
	require.Equal(t, "sha256-"+strings.TrimPrefix(testImage, "sha256:")+".sig", parts.Tag)

	for _, b := range []CosignBlob{parts.Payload, parts.Config, parts.Manifest} {
		require.Equal(t, sha(b.Data), b.Digest, b.MediaType)
	}

	require.Equal(t, MediaTypeCosignSimpleSigning, parts.Payload.MediaType)
	require.Equal(t, MediaTypeOCIConfig, parts.Config.MediaType)
	require.Equal(t, MediaTypeOCIManifest, parts.Manifest.MediaType)

	require.JSONEq(t, `{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":["`+
		parts.Payload.Digest+`"]}}`, string(parts.Config.Data))

	var m struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        struct {
			MediaType, Digest string
			Size              int
		} `json:"config"`
		Layers []struct {
			MediaType, Digest string
			Size              int
			Annotations       map[string]string
		} `json:"layers"`
	}

	require.NoError(t, json.Unmarshal(parts.Manifest.Data, &m))
	require.Equal(t, 2, m.SchemaVersion)
	require.Equal(t, MediaTypeOCIManifest, m.MediaType)
	require.Equal(t, parts.Config.Digest, m.Config.Digest)
	require.Equal(t, len(parts.Config.Data), m.Config.Size)
	require.Equal(t, MediaTypeOCIConfig, m.Config.MediaType)
	require.Len(t, m.Layers, 1)
	require.Equal(t, parts.Payload.Digest, m.Layers[0].Digest)
	require.Equal(t, len(parts.Payload.Data), m.Layers[0].Size)
	require.Equal(t, MediaTypeCosignSimpleSigning, m.Layers[0].MediaType)
	require.Equal(t, map[string]string{AnnotationCosignSignature: parts.Signature}, m.Layers[0].Annotations)

	require.NoError(t, VerifyCosignPayload(parts.Payload.Data, parts.Signature, &key.PublicKey, testImage))
}

// TestCosignSignatureDeterminism: randomised signatures differ (and so do their manifests) but share payload and
// config; RFC 6979 signatures are the same bytes every time. Both verify.
func TestCosignSignatureDeterminism(t *testing.T) {
	key := ecKey(t)

	a, err := CosignSignature(testImage, testRepo, key)
	require.NoError(t, err)
	b, err := CosignSignature(testImage, testRepo, key)
	require.NoError(t, err)

	require.Equal(t, a.Payload, b.Payload)
	require.Equal(t, a.Config, b.Config)
	require.NotEqual(t, a.Signature, b.Signature, "randomised")
	require.NotEqual(t, a.Manifest.Digest, b.Manifest.Digest)

	c, err := DeterministicCosignSignature(testImage, testRepo, key)
	require.NoError(t, err)
	d, err := DeterministicCosignSignature(testImage, testRepo, key)
	require.NoError(t, err)

	require.Equal(t, c, d, "RFC 6979")
	require.Equal(t, a.Payload, c.Payload)

	for _, p := range []CosignParts{a, b, c} {
		require.NoError(t, VerifyCosignPayload(p.Payload.Data, p.Signature, &key.PublicKey, testImage))
	}

	other, err := DeterministicCosignSignature(testImage, testRepo, ecKey(t))
	require.NoError(t, err)
	require.NotEqual(t, c.Signature, other.Signature, "another key, another signature")
}

func TestCosignSignatureErrors(t *testing.T) {
	key := ecKey(t)

	for _, d := range []string{"", "sha256:abc", "sha512:" + strings.Repeat("a", 64), strings.ToUpper(testImage)} {
		_, err := CosignSignature(d, testRepo, key)
		require.Error(t, err, "%q", d)

		_, err = CosignTag(d)
		require.Error(t, err, "%q", d)
	}

	_, err := CosignSignature(testImage, testRepo, nil)
	require.ErrorContains(t, err, "no key")
}

// TestVerifyCosignPayload: only the signature of this payload by this key, naming this digest, verifies.
func TestVerifyCosignPayload(t *testing.T) {
	key := ecKey(t)

	parts, err := CosignSignature(testImage, testRepo, key)
	require.NoError(t, err)

	pub := &key.PublicKey
	payload := parts.Payload.Data
	otherImage := "sha256:" + strings.Repeat("f", 64)

	require.NoError(t, VerifyCosignPayload(payload, parts.Signature, pub, testImage))

	// signs a payload properly with key, so that only its content can fail it
	signed := func(p string) ([]byte, string) {
		sum := sha256.Sum256([]byte(p))
		sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
		require.NoError(t, err)

		return []byte(p), base64.StdEncoding.EncodeToString(sig)
	}

	tampered := []byte(strings.Replace(string(payload), testImage, otherImage, 1))
	require.NotEqual(t, payload, tampered)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	sigBytes, err := base64.StdEncoding.DecodeString(parts.Signature)
	require.NoError(t, err)

	flipped := append([]byte(nil), sigBytes...)
	flipped[len(flipped)-1] ^= 1

	for _, tc := range []struct {
		name    string
		payload []byte
		sig     string
		pub     any
		image   string
		verify  bool // a failed check, rather than an unusable input
	}{
		{"tampered payload", tampered, parts.Signature, pub, otherImage, true},
		{"payload with a byte added", append(append([]byte(nil), payload...), ' '), parts.Signature, pub, testImage, true},
		{"wrong key", payload, parts.Signature, &ecKey(t).PublicKey, testImage, true},
		{"wrong digest", payload, parts.Signature, pub, otherImage, true},
		{"flipped signature bit", payload, base64.StdEncoding.EncodeToString(flipped), pub, testImage, true},
		{"empty signature", payload, "", pub, testImage, true},
		{"signature not base64", payload, "not base64!", pub, testImage, true},
		{"RSA key", payload, parts.Signature, &rsaKey.PublicKey, testImage, false},
		{"no key", payload, parts.Signature, nil, testImage, false},
		{"nil ECDSA key", payload, parts.Signature, (*ecdsa.PublicKey)(nil), testImage, false},
		{"invalid digest", payload, parts.Signature, pub, "sha256:abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyCosignPayload(tc.payload, tc.sig, tc.pub, tc.image)
			require.Error(t, err)
			require.Equal(t, tc.verify, errors.Is(err, ErrCosignVerify), "%v", err)
		})
	}

	t.Run("signed, but not a cosign payload", func(t *testing.T) {
		for _, p := range []string{
			`not json`,
			`{"critical":{"image":{"docker-manifest-digest":"` + testImage + `"},"type":"something else"}}`,
			`{"critical":{"image":{"docker-manifest-digest":"` + otherImage + `"},"type":"cosign container image signature"}}`,
			`{"critical":{"type":"cosign container image signature"}}`,
			`{"critical":{"image":{"docker-manifest-digest":"` + testImage + `"},"type":"cosign container image signature"}} {}`,
		} {
			data, sig := signed(p)
			err := VerifyCosignPayload(data, sig, pub, testImage)
			require.ErrorIs(t, err, ErrCosignVerify, p)
		}

		// and a well-formed payload of another signer verifies: only the digest and type are claims
		data, sig := signed(`{"critical":{"identity":{"docker-reference":"elsewhere.example/x"},"image":{"docker-manifest-digest":"` +
			testImage + `"},"type":"cosign container image signature"},"optional":{"creator":"someone"}}`)
		require.NoError(t, VerifyCosignPayload(data, sig, pub, testImage))
	})
}
