package synthetic

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/signing"
)

func pushedOf(rel *release) []Pushed {
	out := make([]Pushed, 0, len(rel.items))
	for _, it := range rel.items {
		out = append(out, it.pushed)
	}

	return out
}

// TestBuildDeterministic builds the release twice from scratch (no release cache) and compares every digest.
func TestBuildDeterministic(t *testing.T) {
	opts, err := Options{Parts: StandInParts()}.complete()
	require.NoError(t, err)

	a, err := buildRelease(opts)
	require.NoError(t, err)

	b, err := buildRelease(opts)
	require.NoError(t, err)

	require.Equal(t, pushedOf(a), pushedOf(b))
	require.Equal(t, a.versions, b.versions)

	// different parts must give a different imager (the comparison above can fail)
	other := StandInParts()
	other.files["amd64/vmlinuz"] = []byte("MZ another kernel")

	c, err := buildRelease(Options{Namespace: opts.Namespace, Versions: opts.Versions, Parts: other})
	require.NoError(t, err)
	require.NotEqual(t, a.versions[0].Imager.Digest, c.versions[0].Imager.Digest)
	require.Equal(t, a.versions[0].Extensions, c.versions[0].Extensions)
}

func TestLowestMinor(t *testing.T) {
	cases := []struct {
		versions []string
		want     string
	}{
		{versions: []string{"v1.12.0", "v1.13.0"}, want: "v1.12.0"},
		{versions: []string{"v1.13.2", "v1.9.5"}, want: "v1.9.0"},
		{versions: []string{"v1.14.0-alpha.1"}, want: "v1.14.0"},
	}

	for _, tc := range cases {
		got, err := lowestMinor(tc.versions)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, tc.versions)
	}
}

// TestLabKey: the embedded private key is the pair of PublicKeyPEM, and what it signs verifies with that.
func TestLabKey(t *testing.T) {
	_, err := labSigner()
	require.NoError(t, err)

	block, _ := pem.Decode(PublicKeyPEM())
	require.NotNil(t, block)

	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)

	image := "sha256:" + strings.Repeat("0", 64)

	parts, err := sign("registry.k8s.io/pause", image)
	require.NoError(t, err)
	require.NoError(t, signing.VerifyCosignPayload(parts.Payload.Data, parts.Signature, pub, image))
	require.Contains(t, string(parts.Payload.Data), `"docker-reference":"registry.k8s.io/pause"`)

	again, err := sign("registry.k8s.io/pause", image)
	require.NoError(t, err)
	require.Equal(t, parts, again, "deterministic")
}
