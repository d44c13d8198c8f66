package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cosignBinary finds the cosign CLI: $EDGEFACTORY_COSIGN, build/tools/cosign (scripts/deps.sh builds it there), or
// $PATH. Without it the test is skipped.
func cosignBinary(t testing.TB) string {
	t.Helper()

	for _, p := range []string{os.Getenv("EDGEFACTORY_COSIGN"), repoFile(t, "build/tools/cosign")} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}

	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}

	t.Skip("the cosign CLI is not installed (run `make deps`, which builds build/tools/cosign)")

	return ""
}

// cosignVerify runs `cosign verify` offline (no transparency log, no certificate: a plain key) against an image
// on a plain-HTTP registry, and returns its output and whether it succeeded.
func cosignVerify(t testing.TB, bin, image string, publicPEM []byte) (string, bool) {
	t.Helper()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pub")
	require.NoError(t, os.WriteFile(keyFile, publicPEM, 0o600))

	cmd := exec.Command(bin, "verify", "--key", keyFile, "--insecure-ignore-tlog=true", "--insecure-ignore-sct=true",
		"--allow-insecure-registry", "--allow-http-registry", "--offline=true", "--output", "json", image)
	// Its own home: cosign keeps a TUF cache there, and nothing here needs one.
	cmd.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"))
	out, err := cmd.CombinedOutput()

	return string(out), err == nil
}

// checkCosignCLI verifies image (a digest reference) with the cosign CLI: it succeeds with the factory's published
// key and fails with any other key.
func checkCosignCLI(t *testing.T, image, publicPEM string) {
	bin := cosignBinary(t)
	require.Contains(t, image, "@sha256:")

	out, ok := cosignVerify(t, bin, image, []byte(publicPEM))
	require.True(t, ok, "cosign verify with the published key:\n%s", out)
	assert.Contains(t, out, image[strings.Index(image, "@")+1:], "the verified payload names the index digest")
	t.Logf("cosign verify %s:\n%s", image, out)

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	der, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
	require.NoError(t, err)

	out, ok = cosignVerify(t, bin, image, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	assert.False(t, ok, "cosign verify with another key must fail:\n%s", out)
	assert.Contains(t, out, "no matching signatures", "it fails because the signature does not verify")
	t.Logf("with another key:\n%s", out)
}

// cosignSignature is the signature manifest of an index and the blobs it refers to.
type cosignSignature struct {
	manifest, payload, config string
	signature                 []byte
	body                      string
}

// signatureOf reads the signature of index at its cosign tag (sha256-<hex>.sig) in the same repository.
func signatureOf(t *testing.T, r *running, repo, index string) cosignSignature {
	t.Helper()

	resp := r.do(t, "GET", repo+"/manifests/sha256-"+strings.TrimPrefix(index, "sha256:")+".sig", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	var m v1.Manifest
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &m))
	require.Len(t, m.Layers, 1)
	assert.Equal(t, types.MediaType("application/vnd.dev.cosign.simplesigning.v1+json"), m.Layers[0].MediaType)

	sig, err := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[annotationCosignSig])
	require.NoError(t, err)
	require.NotEmpty(t, sig)

	return cosignSignature{manifest: resp.Header.Get("Docker-Content-Digest"), payload: m.Layers[0].Digest.String(),
		config: m.Config.Digest.String(), signature: sig, body: resp.Body}
}

func checkReferrers(t *testing.T, r *running, id, repo, index string, sig cosignSignature) {
	list := func(query string) (response, []v1.Descriptor) {
		resp := r.do(t, "GET", repo+"/referrers/"+index+query, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, "application/vnd.oci.image.index.v1+json", resp.Header.Get("Content-Type"))
		assert.Equal(t, "sha256:"+sha256Hex(resp.Body), resp.Header.Get("Docker-Content-Digest"))

		var im v1.IndexManifest
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &im))

		return resp, im.Manifests
	}

	resp, all := list("")
	require.Len(t, all, 1)
	assert.Equal(t, sig.manifest, all[0].Digest.String())
	assert.Equal(t, int64(len(sig.body)), all[0].Size)
	assert.Equal(t, mediaTypeCosignSig, all[0].ArtifactType)
	assert.Empty(t, resp.Header.Get("OCI-Filters-Applied"))

	resp, matching := list("?artifactType=" + url.QueryEscape(mediaTypeCosignSig))
	assert.Len(t, matching, 1)
	assert.Equal(t, "artifactType", resp.Header.Get("OCI-Filters-Applied"))

	resp, none := list("?artifactType=" + url.QueryEscape("application/vnd.example.sbom+json"))
	assert.Empty(t, none)
	assert.Equal(t, "artifactType", resp.Header.Get("OCI-Filters-Applied"))

	// What a registry client sees through the referrers API.
	d, err := name.NewDigest(strings.TrimPrefix(r.base, "http://")+"/"+installerRepoForTest+"/"+id+"@"+index, name.Insecure)
	require.NoError(t, err)

	refs, err := remote.Referrers(d)
	require.NoError(t, err)

	im, err := refs.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, 1)
	assert.Equal(t, sig.manifest, im.Manifests[0].Digest.String())
}

// checkSignature verifies the signature with the standard library: the payload names the index, and its ECDSA
// signature verifies with the key every node publishes. (The cosign CLI check below is the client's view.)
func checkSignature(t *testing.T, c *cluster, r *running, repo, index string, sig cosignSignature) {
	var key string

	for _, m := range c.live() {
		resp := m.do(t, "GET", "/oci/cosign/signing-key.pub", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, m.name)

		if key == "" {
			key = resp.Body
		}

		assert.Equal(t, key, resp.Body, "%s publishes the cluster's one key", m.name)

		same := m.do(t, "GET", repo+"/manifests/sha256-"+strings.TrimPrefix(index, "sha256:")+".sig", "", nil)
		assert.Equal(t, sig.manifest, same.Header.Get("Docker-Content-Digest"), "%s serves the one signature", m.name)
	}

	block, _ := pem.Decode([]byte(key))
	require.NotNil(t, block)
	require.Equal(t, "PUBLIC KEY", block.Type)

	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)

	ecPub, ok := pub.(*ecdsa.PublicKey)
	require.True(t, ok, "an ECDSA key")

	payload := r.do(t, "GET", repo+"/blobs/"+sig.payload, "", nil)
	require.Equal(t, http.StatusOK, payload.StatusCode)

	var simple struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			}
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			}
			Type string
		}
	}

	require.NoError(t, json.Unmarshal([]byte(payload.Body), &simple))
	assert.Equal(t, index, simple.Critical.Image.DockerManifestDigest)
	assert.Equal(t, "cosign container image signature", simple.Critical.Type)
	assert.NotEmpty(t, simple.Critical.Identity.DockerReference)

	sum := sha256.Sum256([]byte(payload.Body))
	assert.True(t, ecdsa.VerifyASN1(ecPub, sum[:], sig.signature), "the signature verifies with the published key")

	tampered := sha256.Sum256([]byte(strings.Replace(payload.Body, index[len(index)-4:], "0000", 1)))
	assert.False(t, ecdsa.VerifyASN1(ecPub, tampered[:], sig.signature), "and only over this payload")
}
