package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/signing"
)

// TestUnsignedInputsRefused: a node checks every release input it reads from its upstream registry against the
// keys it trusts. An extension whose signature is gone is refused when a build would use it, naming it, and the
// build fails; a node that trusts another key lists no version and says why it is not ready.
func TestUnsignedInputsRefused(t *testing.T) {
	reg := realUpstream(t)
	n := startReady(t, testConfig(t, t.TempDir(), reg))

	var exts []release.Extension

	resp := n.do(t, "GET", "/version/v1.13.0/extensions/official", "", nil)
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &exts))

	var hello release.Extension

	for _, e := range exts {
		if e.Name == "siderolabs/hello-world-service" {
			hello = e
		}
	}

	require.NotEmpty(t, hello.Digest)

	sigTag, err := signing.CosignTag(hello.Digest)
	require.NoError(t, err)
	require.NoError(t, crane.Delete(reg+"/"+hello.Name+":"+sigTag))

	id := n.createSchematic(t, `customization: {systemExtensions: {officialExtensions: [siderolabs/hello-world-service]}}`)
	build := n.do(t, "GET", "/image/"+id+"/v1.13.0/initramfs-amd64.xz", "", nil)
	require.Equal(t, http.StatusInternalServerError, build.StatusCode, build.Body)
	assert.Contains(t, build.Body, "extension "+hello.Name)
	assert.Contains(t, build.Body, "no cosign signature by a trusted key")

	plain := n.do(t, "GET", "/image/"+n.createSchematic(t, `customization: {}`)+"/v1.13.0/initramfs-amd64.xz", "", nil)
	assert.Equal(t, http.StatusOK, plain.StatusCode, "what needs no unsigned input still builds")

	other, err := signing.GenerateECDSA()
	require.NoError(t, err)

	cfg := testConfig(t, t.TempDir(), reg)
	cfg.InputPublicKeys = [][]byte{other.PublicPEM}
	wrong := start(t, cfg)

	var ready response

	require.Eventually(t, func() bool {
		ready = wrong.do(t, "GET", "/readyz", "", nil)

		return strings.Contains(ready.Body, "no cosign signature")
	}, 20*time.Second, 100*time.Millisecond, "readyz says why there is no catalog")
	t.Log(ready.Body)
	assert.Equal(t, http.StatusServiceUnavailable, ready.StatusCode)

	versions := wrong.do(t, "GET", "/versions", "", nil)
	assert.NotContains(t, versions.Body, "v1.13.0", "an unverified release is not offered")
}
