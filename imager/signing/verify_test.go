package signing

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/internal/digest"
)

func TestParsePublicKeys(t *testing.T) {
	a, err := GenerateECDSA()
	require.NoError(t, err)
	b, err := GenerateECDSA()
	require.NoError(t, err)

	keys, err := ParsePublicKeys(append(bytes.Clone(a.PublicPEM), b.PublicPEM...), a.PublicPEM)
	require.NoError(t, err)
	require.Len(t, keys, 3, "two keys in the first input, one in the second")
	assert.Equal(t, keys[0].Fingerprint, keys[2].Fingerprint, "the same key, the same fingerprint")
	assert.NotEqual(t, keys[0].Fingerprint, keys[1].Fingerprint)
	assert.True(t, strings.HasPrefix(keys[0].Fingerprint, "sha256:"))
	assert.Equal(t, string(a.PublicPEM), keys[0].PEM)

	_, err = ParsePublicKeys(a.PublicPEM, []byte("not a key"))
	require.ErrorContains(t, err, "public key 2")

	_, err = ParsePublicKeys(a.PrivatePEM)
	require.Error(t, err, "a private key is not a public key")
}

func TestVerifyCosignManifest(t *testing.T) {
	signer, other := newSigner(t), newSigner(t)
	image := digest.Of([]byte("an image"))

	parts, err := CosignSignature(image, "ghcr.io/siderolabs/imager", signer.priv)
	require.NoError(t, err)

	blobs := map[string][]byte{parts.Payload.Digest: parts.Payload.Data}
	read := func(d string, _ int64) ([]byte, error) {
		if b, ok := blobs[d]; ok {
			return b, nil
		}

		return nil, fmt.Errorf("no blob %s", d)
	}

	by, err := VerifyCosignManifest(parts.Manifest.Data, read, []PublicKey{other.pub, signer.pub}, image)
	require.NoError(t, err)
	assert.Equal(t, []string{signer.pub.Fingerprint}, by, "the key that verified")

	for _, tc := range []struct {
		name     string
		manifest []byte
		keys     []PublicKey
		image    string
	}{
		{"another key", parts.Manifest.Data, []PublicKey{other.pub}, image},
		{"another image", parts.Manifest.Data, []PublicKey{signer.pub}, digest.Of([]byte("another image"))},
		{"no signed layer", []byte(`{"layers":[{"digest":"` + parts.Payload.Digest + `","size":1}]}`),
			[]PublicKey{signer.pub}, image},
		{"not a manifest", []byte("{"), []PublicKey{signer.pub}, image},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyCosignManifest(tc.manifest, read, tc.keys, tc.image)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrCosignVerify), "%v", err)
		})
	}

	_, err = VerifyCosignManifest(parts.Manifest.Data, read, nil, image)
	require.ErrorContains(t, err, "no public key")

	delete(blobs, parts.Payload.Digest)
	_, err = VerifyCosignManifest(parts.Manifest.Data, read, []PublicKey{signer.pub}, image)
	require.ErrorContains(t, err, "no blob", "a payload that cannot be read is said so")
}

type testSigner struct {
	priv *ecdsa.PrivateKey
	pub  PublicKey
}

func newSigner(t *testing.T) testSigner {
	t.Helper()

	k, err := GenerateECDSA()
	require.NoError(t, err)

	priv, err := k.Signer()
	require.NoError(t, err)

	pubs, err := ParsePublicKeys(k.PublicPEM)
	require.NoError(t, err)

	return testSigner{priv: priv, pub: pubs[0]}
}
