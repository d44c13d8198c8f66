package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOCIInstallerLostBytes: an installer image's record outlives its bytes (the CAS that held them evicted them,
// or the member is gone). Pulling its tag again gives the same index digest (assembled again from reproducible
// tarballs), and its signature, which cannot be made again with the same digest, is replaced by a new one that
// cosign verifies with the cluster's key.
func TestOCIInstallerLostBytes(t *testing.T) {
	c := startCluster(t, ociUpstream(t), 2)
	a, b := c.live()[0], c.live()[1]
	id := a.createSchematic(t, `customization: {extraKernelArgs: [oci-lost-bytes]}`)
	repo := "/v2/" + installerRepoForTest + "/" + id

	img := pullInstaller(t, ref(t, a.running, installerRepoForTest, id, "v1.13.0"))
	sig := signatureOf(t, a.running, repo, img.index)
	publicKey := a.do(t, "GET", "/oci/cosign/signing-key.pub", "", nil).Body

	dropEverywhere := func(t *testing.T, digests ...string) {
		for _, m := range c.live() {
			for _, d := range digests {
				if m.HasBlob(d) {
					require.NoError(t, m.DropBlob(d))
				}

				require.False(t, m.HasBlob(d))
			}
		}
	}

	t.Run("index and signature", func(t *testing.T) {
		dropEverywhere(t, img.index, sig.manifest, sig.payload, sig.config)

		again := pullInstaller(t, ref(t, b.running, installerRepoForTest, id, "v1.13.0"))
		assert.Equal(t, img.index, again.index, "the tag names the same index")
		assert.Equal(t, img.blobs, again.blobs)

		replaced := signatureOf(t, b.running, repo, img.index)
		assert.NotEqual(t, sig.manifest, replaced.manifest, "a new signature replaced the lost one")

		checkSignature(t, c, b.running, repo, img.index, replaced)
		checkReferrers(t, a.running, id, repo, img.index, replaced)
		t.Run("cosign CLI", func(t *testing.T) {
			checkCosignCLI(t, ref(t, a.running, installerRepoForTest, id, img.index).String(), publicKey)
		})
	})

	t.Run("every blob of the image", func(t *testing.T) {
		resp := a.do(t, "GET", repo+"/manifests/sha256-"+img.index[len("sha256:"):]+".sig", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		current := resp.Header.Get("Docker-Content-Digest")

		dropEverywhere(t, img.blobs...)

		again := pullInstaller(t, ref(t, a.running, installerRepoForTest, id, "v1.13.0"))
		assert.Equal(t, img.index, again.index, "the tag names the same index")

		resp = a.do(t, "GET", repo+"/manifests/sha256-"+img.index[len("sha256:"):]+".sig", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, current, resp.Header.Get("Docker-Content-Digest"), "a signature whose bytes remain stays")
	})
}

// TestOCIInstallerLostBytesAlone: on a node of its own (nobody else could hold the bytes) a lost index, signature
// or layer is known to be lost at once: the next pull of the tag gets the same index and a new signature.
func TestOCIInstallerLostBytesAlone(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), ociUpstream(t)))
	id := n.createSchematic(t, `customization: {extraKernelArgs: [oci-lost-alone]}`)
	repo := "/v2/" + installerRepoForTest + "/" + id

	img := pullInstaller(t, ref(t, n, installerRepoForTest, id, "v1.13.0"))
	sig := signatureOf(t, n, repo, img.index)

	for _, d := range []string{img.index, img.layer2["arm64"].String(), sig.manifest, sig.payload, sig.config} {
		require.NoError(t, n.DropBlob(d))
	}

	again := pullInstaller(t, ref(t, n, installerRepoForTest, id, "v1.13.0"))
	assert.Equal(t, img.index, again.index, "the tag names the same index")

	replaced := signatureOf(t, n, repo, img.index)
	assert.NotEqual(t, sig.manifest, replaced.manifest, "a new signature replaced the lost one")

	for _, d := range []string{replaced.payload, replaced.config} {
		resp := n.do(t, "GET", repo+"/blobs/"+d, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, d, "sha256:"+sha256Hex(resp.Body))
	}

	t.Run("cosign CLI", func(t *testing.T) {
		checkCosignCLI(t, ref(t, n, installerRepoForTest, id, img.index).String(),
			n.do(t, "GET", "/oci/cosign/signing-key.pub", "", nil).Body)
	})
}
