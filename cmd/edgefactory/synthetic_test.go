package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// TestSyntheticPublicKey: `edgefactory synthetic public-key` prints the lab key the synthetic release is signed with,
// as the one PEM block `cosign verify --key` reads, and nothing else.
func TestSyntheticPublicKey(t *testing.T) {
	cmd := newSyntheticCmd()

	var stdout, stderr bytes.Buffer

	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"public-key"})
	require.NoError(t, cmd.ExecuteContext(t.Context()))

	require.Equal(t, synthetic.PublicKeyPEM(), stdout.Bytes())
	require.Empty(t, stderr.String())

	block, rest := pem.Decode(stdout.Bytes())
	require.NotNil(t, block)
	require.Equal(t, "PUBLIC KEY", block.Type)
	require.Empty(t, rest)

	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)

	key, ok := pub.(*ecdsa.PublicKey)
	require.True(t, ok, "an ECDSA key, not %T", pub)
	require.Equal(t, elliptic.P256(), key.Curve)

	cmd = newSyntheticCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"public-key", "extra"})
	require.Error(t, cmd.ExecuteContext(t.Context()), "no arguments")
}
