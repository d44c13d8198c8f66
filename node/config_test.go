package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestConfigVersions: a minimum or broken version that does not parse stops the node at start, naming it, rather
// than being ignored; a broken version written short (v1.12) means the same version everywhere it is used: hidden
// from the listing, listed as broken, and refused.
func TestConfigVersions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tweak   func(*node.Config)
		message string
	}{
		{"min", func(c *node.Config) { c.Upstream.MinVersion = "latest" }, `min Talos version "latest"`},
		{"broken", func(c *node.Config) { c.Upstream.Broken = []string{"v1.9.2x"} }, `broken version "v1.9.2x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), "registry.invalid")
			tc.tweak(&cfg)

			_, err := node.New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.message)
		})
	}

	t.Run("short broken version", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir(), upstream(t))
		cfg.Upstream.Broken = []string{"v1.12"}
		n := startReady(t, cfg)

		assert.Equal(t, `["v1.13.0"]`+"\n", n.do(t, "GET", "/versions", "", nil).Body)
		assert.Equal(t, `["v1.12.0"]`+"\n", n.do(t, "GET", "/versions?broken=true", "", nil).Body)

		id := n.createSchematic(t, `customization: {extraKernelArgs: [short-broken]}`)
		assert.Equal(t, http.StatusNotFound, n.do(t, "GET", "/pxe/"+id+"/v1.12.0/metal-amd64", "", nil).StatusCode)
	})
}

// TestConfigURLs: the URLs machines and members are given to reach a node must be absolute http(s) URLs naming a
// host they can reach; anything else stops the node at start, naming the flag, instead of giving PXE scripts that
// no machine can follow.
func TestConfigURLs(t *testing.T) {
	for _, tc := range []struct {
		external, pxe string
		message       string
	}{
		{"", "10.0.0.5:8080", `--pxe-url "10.0.0.5:8080"`},
		{"", "pxe.lan:8080", `--pxe-url "pxe.lan:8080": want an http:// or https:// URL`},
		{"", "pxe.lan", `--pxe-url "pxe.lan": want an http:// or https:// URL`},
		{"http://0.0.0.0:8080", "", `--external-url "http://0.0.0.0:8080": 0.0.0.0 is a listening address`},
		{"http://[::]:8080", "", `--external-url "http://[::]:8080": :: is a listening address`},
		{"ftp://10.0.0.5", "", `--external-url "ftp://10.0.0.5": want an http:// or https:// URL`},
		{"http://10.0.0.5:8080", "https://pxe.lan", ""},
	} {
		t.Run(tc.external+" "+tc.pxe, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir(), "registry.invalid")
			cfg.ExternalURL, cfg.PXEURL = tc.external, tc.pxe

			n, err := node.New(cfg)
			if tc.message == "" {
				require.NoError(t, err)
				require.NoError(t, n.Close())

				return
			}

			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.message)
		})
	}
}

// TestConfigInputKeys: a node must be told whose signatures its release inputs carry: with no key and verification
// on it does not start, saying how to give one; a key file that is not a PEM public key is named.
func TestConfigInputKeys(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), "registry.invalid")
	cfg.InputPublicKeys = nil

	_, err := node.New(cfg)
	require.ErrorContains(t, err, "--input-public-key FILE")
	require.ErrorContains(t, err, "--input-verify=off")

	cfg.InputPublicKeys = [][]byte{[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}
	_, err = node.New(cfg)
	require.ErrorContains(t, err, "--input-public-key: public key 1: no PEM public key")

	cfg.InputPublicKeys = nil
	cfg.InputVerifyOff = true
	require.NoError(t, cfg.Validate(), "verification off needs no key")
}
