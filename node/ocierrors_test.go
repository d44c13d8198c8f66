package node_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOCIPing: /v2 and /v2/ answer 200 with an empty body and the distribution API version header, to GET and HEAD.
func TestOCIPing(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))

	for _, p := range []string{"/v2", "/v2/"} {
		for _, method := range []string{"GET", "HEAD"} {
			resp := n.do(t, method, p, "", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", method, p)
			assert.Empty(t, resp.Body, "%s %s", method, p)
			assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"), "%s %s", method, p)
		}
	}

	resp := n.do(t, "GET", "/oci/cosign/signing-key.pub", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	assert.True(t, strings.HasPrefix(resp.Body, "-----BEGIN PUBLIC KEY-----\n"), resp.Body)
}

// TestOCIErrors: every bad reference gets a 4xx status and the distribution spec's JSON error envelope with the
// right code, to GET and (status and headers only) to HEAD. None of them builds anything.
func TestOCIErrors(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))
	id := n.createSchematic(t, `customization: {}`)
	unknownID := strings.Repeat("e", 64)
	repo := "/v2/installer/" + id
	digest := "sha256:" + strings.Repeat("ab", 32)

	for _, tc := range []struct {
		name, path string
		status     int
		code       string
	}{
		// bad digests
		{"manifest digest not hex", repo + "/manifests/sha256:xyz", 400, "DIGEST_INVALID"},
		{"manifest digest upper case", repo + "/manifests/sha256:" + strings.Repeat("AB", 32), 400, "DIGEST_INVALID"},
		{"blob digest too short", repo + "/blobs/sha256:abc", 400, "DIGEST_INVALID"},
		{"blob digest algorithm", repo + "/blobs/md5:" + strings.Repeat("a", 32), 400, "DIGEST_INVALID"},
		{"referrers subject", repo + "/referrers/latest", 400, "DIGEST_INVALID"},
		{"source blob digest", "/v2/siderolabs/imager/blobs/sha256:0", 400, "DIGEST_INVALID"},

		// unknown schematic
		{"unknown schematic", "/v2/installer/" + unknownID + "/manifests/v1.13.0", 404, "NAME_UNKNOWN"},
		{"short unknown schematic", "/v2/installer/aaaaaaaaaaaa/manifests/v1.13.0", 404, "NAME_UNKNOWN"},
		{"unknown schematic blob", "/v2/installer/" + unknownID + "/blobs/" + digest, 404, "NAME_UNKNOWN"},
		{"unknown schematic bad image", "/v2/foo/" + unknownID + "/manifests/v1.13.0", 404, "NAME_UNKNOWN"},

		// repository shapes (docs/api.md §5.1)
		{"too short", "/v2/foo", 404, "NAME_UNKNOWN"},
		{"too short 2", "/v2/foo/bar", 404, "NAME_UNKNOWN"},
		{"one segment", "/v2/foo/manifests/v1", 404, "NAME_UNKNOWN"},
		{"three segments", "/v2/a/b/c/manifests/v1", 404, "NAME_UNKNOWN"},
		{"unknown resource", repo + "/uploads/x", 404, "NAME_UNKNOWN"},
		{"tags/list on an installer repo", repo + "/tags/list", 404, "NAME_UNKNOWN"},
		{"tags without list", repo + "/tags/v1", 404, "NAME_UNKNOWN"},
		{"source without a name", "/v2/siderolabs/manifests/v1", 404, "NAME_UNKNOWN"},
		{"source tags without list", "/v2/siderolabs/talosctl/tags/v1", 404, "NAME_UNKNOWN"},
		{"source not in the map", "/v2/siderolabs/nonexistent/manifests/v1.13.5", 404, "NAME_UNKNOWN"},

		// image names
		{"invalid image", "/v2/foo/" + id + "/manifests/v1.13.0", 400, "NAME_INVALID"},
		{"image without platform", "/v2/-installer/" + id + "/manifests/v1.13.0", 400, "NAME_INVALID"},
		{"invalid image blob", "/v2/foo/" + id + "/blobs/" + digest, 400, "NAME_INVALID"},
		{"unknown platform", "/v2/mars-installer/" + id + "/manifests/v1.13.0", 400, "NAME_INVALID"},

		// versions and tags
		{"unknown version", repo + "/manifests/v1.99.0", 404, "MANIFEST_UNKNOWN"},
		{"incomplete version", repo + "/manifests/v1.7", 404, "MANIFEST_UNKNOWN"},
		{"version without v", repo + "/manifests/1.13.0", 404, "MANIFEST_UNKNOWN"},
		{"not a version", repo + "/manifests/stable", 404, "MANIFEST_UNKNOWN"},
		{"unknown manifest digest", repo + "/manifests/" + digest, 404, "MANIFEST_UNKNOWN"},
		{"unknown signature tag", repo + "/manifests/sha256-" + strings.Repeat("ab", 32) + ".sig", 404,
			"MANIFEST_UNKNOWN"},

		// blobs
		{"unknown blob", repo + "/blobs/" + digest, 404, "BLOB_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := n.do(t, "GET", tc.path, "", nil)
			require.Equal(t, tc.status, resp.StatusCode, resp.Body)
			assert.Equal(t, tc.code, registryError(t, resp), resp.Body)
			assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))

			head := n.do(t, "HEAD", tc.path, "", nil)
			assert.Equal(t, tc.status, head.StatusCode)
			assert.Empty(t, head.Body)
		})
	}

	t.Run("the referrers of an unknown subject are an empty list", func(t *testing.T) {
		resp := n.do(t, "GET", repo+"/referrers/"+digest, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.JSONEq(t, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
			resp.Body)
	})

	t.Run("only reads", func(t *testing.T) {
		for _, method := range []string{"PUT", "POST", "PATCH", "DELETE"} {
			resp := n.do(t, method, repo+"/manifests/v1.13.0", "", nil)
			assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, method)
		}
	})

	assert.Zero(t, n.metric(t, "edgefactory_builds_total"), "no bad reference started a build")
}
