package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// TestSkopeoCopyInstaller runs the README's "Installer images" block as written (the dev server's address and a
// schematic ID in place of 127.0.0.1:8080 and <schematic-id>, the cosign CLI that make deps builds on the PATH):
// skopeo pulls a cold installer image from `edgefactory dev` into an OCI layout, and cosign verifies its signature
// with the published key. The copy is then checked against docs/api.md §5.6, and another key must not verify.
func TestSkopeoCopyInstaller(t *testing.T) {
	RequireBuilds(t, "skopeo")

	dev := StartDev(t)
	bin := cosignCLI(t)

	id := dev.CreateSchematic(t, "customization: {}\n")

	image := dev.Addr + "/metal-installer/" + id

	blocks := ReadmeBlocks(t, "### Installer images", "sh")
	require.Len(t, blocks, 1, "the section has one block of commands")

	dir := t.TempDir()
	script := "export PATH=" + filepath.Dir(bin) + ":$PATH HOME=" + dir + "\n" +
		strings.ReplaceAll(dev.Rewrite(blocks[0]), "<schematic-id>", id)
	text, err := runReadmeBlock(t, dir, script, 10*time.Minute)
	require.NoError(t, err, "the README's installer commands failed:\n%s", text)
	assert.Contains(t, text, "verified against the specified public key",
		"cosign verify, as the README runs it:\n%s", text)

	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "installer"))
	require.NoError(t, err)

	top, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, top.Manifests, 1, "the layout holds the one index skopeo copied")

	installer, err := idx.ImageIndex(top.Manifests[0].Digest)
	require.NoError(t, err)
	require.NoError(t, validate.Index(installer), "every copied blob matches its digest")

	head, err := http.Head(dev.URL + "/v2/metal-installer/" + id + "/manifests/v1.13.0")
	require.NoError(t, err)
	head.Body.Close()

	digest := head.Header.Get("Docker-Content-Digest")
	require.NotEmpty(t, digest)

	// An oci: destination takes only OCI media types, so skopeo rewrites the per-architecture Docker schema-2
	// manifests (and so the index) as OCI ones; the layers it copies are the served bytes.
	served, err := remote.Index(mustRef(t, image+"@"+digest))
	require.NoError(t, err)
	assert.Equal(t, layerDigests(t, served), layerDigests(t, installer), "the copy has the served layers")

	checkInstallerLayout(t, installer)

	t.Run("cosign verify", func(t *testing.T) {
		key := fetchBody(t, dev.URL+"/oci/cosign/signing-key.pub")

		out, ok := cosignVerify(t, bin, image+"@"+digest, key)
		require.True(t, ok, "cosign verify with the published key:\n%s", out)
		assert.Contains(t, out, digest)

		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)

		der, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
		require.NoError(t, err)

		out, ok = cosignVerify(t, bin, image+"@"+digest, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		assert.False(t, ok, "cosign verify with another key must fail:\n%s", out)
		assert.Contains(t, out, "no matching signatures")
	})
}

func mustRef(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s, name.Insecure)
	require.NoError(t, err)

	return r
}

// layerDigests lists the layer digests of every image of an index, by architecture.
func layerDigests(t *testing.T, idx v1.ImageIndex) map[string][]string {
	im, err := idx.IndexManifest()
	require.NoError(t, err)

	out := map[string][]string{}

	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		require.NoError(t, err)

		m, err := img.Manifest()
		require.NoError(t, err)

		for _, l := range m.Layers {
			out[desc.Platform.Architecture] = append(out[desc.Platform.Architecture], l.Digest.String())
		}
	}

	return out
}

// checkInstallerLayout checks the copied index against docs/api.md §5.6 (Talos ≥ 1.10).
func checkInstallerLayout(t *testing.T, idx v1.ImageIndex) {
	im, err := idx.IndexManifest()
	require.NoError(t, err)

	var platforms []string

	for _, desc := range im.Manifests {
		require.NotNil(t, desc.Platform)
		arch := desc.Platform.Architecture
		platforms = append(platforms, desc.Platform.OS+"/"+arch)

		img, err := idx.Image(desc.Digest)
		require.NoError(t, err)

		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 2, "%s: base + artifacts", arch)
		assert.Contains(t, synthetictest.LayerFiles(t, layers[0]), "usr/bin/installer", arch)
		assert.ElementsMatch(t, []string{"usr/install/" + arch + "/vmlinuz.efi", "usr/install/" + arch + "/systemd-boot.efi"},
			synthetictest.LayerFiles(t, layers[1]), arch)
	}

	assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, platforms)
}

func fetchBody(t *testing.T, url string) []byte {
	resp, err := http.Get(url)
	require.NoError(t, err)

	defer resp.Body.Close()

	require.Equal(t, http.StatusOK, resp.StatusCode)

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	return body
}

// cosignCLI finds the cosign CLI (build/tools/cosign, built by scripts/deps.sh, or $PATH) or skips.
func cosignCLI(t *testing.T) string {
	if p := filepath.Join(RepoRoot(t), "build/tools/cosign"); func() bool { _, err := os.Stat(p); return err == nil }() {
		return p
	}

	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}

	t.Skip("the cosign CLI is not installed (run `make deps`, which builds build/tools/cosign)")

	return ""
}

// cosignVerify runs `cosign verify` with a plain key, offline (no transparency log, no certificate), against a
// plain-HTTP registry.
func cosignVerify(t *testing.T, bin, image string, publicPEM []byte) (string, bool) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pub")
	require.NoError(t, os.WriteFile(keyFile, publicPEM, 0o600))

	cmd := exec.Command(bin, "verify", "--key", keyFile, "--insecure-ignore-tlog=true", "--insecure-ignore-sct=true",
		"--allow-insecure-registry", "--allow-http-registry", "--offline=true", "--output", "json", image)
	cmd.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"))
	out, err := cmd.CombinedOutput()

	return string(out), err == nil
}
