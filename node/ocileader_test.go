package node_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOCISchematicWithoutLeader: a node that has lost its Raft quorum cannot confirm that a schematic it does not
// know is unknown: an installer request for it is 503 UNAVAILABLE (clients retry), in the registry's error
// envelope, not a 500 nor a false 404.
func TestOCISchematicWithoutLeader(t *testing.T) {
	c := startCluster(t, upstream(t), 2)
	a, b := c.live()[0], c.live()[1]
	known := a.createSchematic(t, `customization: {}`)
	unknown := strings.Repeat("e", 64)
	digest := "sha256:" + strings.Repeat("ab", 32)

	c.kill(b) // two voters, one left: no quorum, no leader

	var last response

	ok := waitFor(20*time.Second, func() bool {
		last = a.do(t, "GET", "/v2/installer/"+unknown+"/manifests/v1.13.0", "", nil)

		return last.StatusCode == http.StatusServiceUnavailable
	})
	require.True(t, ok, "503 without a leader: %d %s", last.StatusCode, last.Body)
	assert.Equal(t, "UNAVAILABLE", registryError(t, last))
	assert.Contains(t, last.Body, "Raft leader", "the message names the problem")

	for _, p := range []string{"/blobs/" + digest, "/referrers/" + digest} {
		resp := a.do(t, "GET", "/v2/installer/"+unknown+p, "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", p, resp.Body)
		assert.Equal(t, "UNAVAILABLE", registryError(t, resp), p)

		head := a.do(t, "HEAD", "/v2/installer/"+unknown+p, "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, head.StatusCode, "HEAD %s", p)
	}

	// A schematic the node has is still answered from its own state.
	resp := a.do(t, "GET", "/v2/installer/"+known+"/manifests/sha256-"+strings.Repeat("ab", 32)+".sig", "", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, resp.Body)
	assert.Equal(t, "MANIFEST_UNKNOWN", registryError(t, resp))
}
