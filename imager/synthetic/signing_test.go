package synthetic_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// labPublicKey parses synthetic.PublicKeyPEM: a P-256 ECDSA public key, in the PEM form cosign reads.
func labPublicKey(t *testing.T) *ecdsa.PublicKey {
	t.Helper()

	block, rest := pem.Decode(synthetic.PublicKeyPEM())
	require.NotNil(t, block)
	require.Equal(t, "PUBLIC KEY", block.Type)
	require.Empty(t, strings.TrimSpace(string(rest)), "one PEM block")

	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)

	key, ok := pub.(*ecdsa.PublicKey)
	require.True(t, ok, "an ECDSA key, not %T", pub)
	require.Equal(t, elliptic.P256(), key.Curve)

	return key
}

func TestPublicKeyPEM(t *testing.T) {
	labPublicKey(t)

	k := synthetic.PublicKeyPEM()
	k[0] = 'X'
	require.NotEqual(t, k, synthetic.PublicKeyPEM(), "a copy: callers cannot change the key")
}

// TestSignatures: every image of the release has a cosign signature at its legacy tag in its repository, recorded
// in the manifest Push returns, signing the index digest and the image's upstream name with the lab key.
func TestSignatures(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: parts(t)})
	pub := labPublicKey(t)

	images := srv.Manifest.Images()
	require.NotEmpty(t, images)

	for _, p := range images {
		require.Equal(t, "sha256-"+strings.TrimPrefix(p.Digest, "sha256:")+".sig", p.Signature.Tag, p.Ref(srv.Addr))

		ref, err := name.ParseReference(p.SignatureRef(srv.Addr))
		require.NoError(t, err)

		desc, err := remote.Get(ref)
		require.NoError(t, err, ref.String())
		require.Equal(t, p.Signature.Digest, desc.Digest.String(), ref.String())
		require.Equal(t, signing.MediaTypeOCIManifest, string(desc.MediaType))

		var m v1.Manifest
		require.NoError(t, json.Unmarshal(desc.Manifest, &m))
		require.Len(t, m.Layers, 1)
		require.Equal(t, signing.MediaTypeCosignSimpleSigning, string(m.Layers[0].MediaType))

		payload := blobBytes(t, srv.Addr, p.Repository, m.Layers[0].Digest.String())
		sig := m.Layers[0].Annotations[signing.AnnotationCosignSignature]

		require.NoError(t, signing.VerifyCosignPayload(payload, sig, pub, p.Digest), ref.String())
		require.ErrorIs(t, signing.VerifyCosignPayload(payload, sig, pub, p.Platforms["amd64"]), signing.ErrCosignVerify,
			"the index is signed, not a platform image")

		var simple struct {
			Critical struct {
				Identity struct {
					DockerReference string `json:"docker-reference"`
				} `json:"identity"`
			} `json:"critical"`
		}

		require.NoError(t, json.Unmarshal(payload, &simple))
		require.Equal(t, synthetic.UpstreamName(p.Repository), simple.Critical.Identity.DockerReference)

		require.NotEmpty(t, blobBytes(t, srv.Addr, p.Repository, m.Config.Digest.String()), "the config is pushed")
	}
}

func blobBytes(t *testing.T, addr, repo, digest string) []byte {
	t.Helper()

	ref, err := name.NewDigest(addr + "/" + repo + "@" + digest)
	require.NoError(t, err)

	l, err := remote.Layer(ref)
	require.NoError(t, err)

	rc, err := l.Compressed()
	require.NoError(t, err)

	defer rc.Close()

	data, err := io.ReadAll(rc)
	require.NoError(t, err)

	return data
}

func TestUpstreamName(t *testing.T) {
	for repo, want := range map[string]string{
		"siderolabs/imager":                         "ghcr.io/siderolabs/imager",
		"mirror/talos/kubelet":                      "ghcr.io/mirror/talos/kubelet",
		"registry.k8s.io/kube-apiserver":            "registry.k8s.io/kube-apiserver",
		"registry.k8s.io/coredns/coredns":           "registry.k8s.io/coredns/coredns",
		"gcr.io/etcd-development/etcd":              "gcr.io/etcd-development/etcd",
		"localhost:5000/x":                          "ghcr.io/localhost:5000/x",
		"registry.k8s.io/networking/kube-network-x": "registry.k8s.io/networking/kube-network-x",
	} {
		require.Equal(t, want, synthetic.UpstreamName(repo), repo)
	}
}

// cosignCLI finds the cosign CLI: $EDGEFACTORY_COSIGN, build/tools/cosign (scripts/deps.sh builds it there), or
// $PATH. Without it the test is skipped.
func cosignCLI(t *testing.T) string {
	t.Helper()

	wd, err := os.Getwd()
	require.NoError(t, err)

	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}

		require.NotEqual(t, filepath.Dir(root), root, "go.mod not found above %s", wd)
		root = filepath.Dir(root)
	}

	for _, p := range []string{os.Getenv("EDGEFACTORY_COSIGN"), filepath.Join(root, "build/tools/cosign")} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}

	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}

	t.Skip("the cosign CLI is not installed: build/tools/cosign is missing (run `make deps`, which builds it), " +
		"and neither $EDGEFACTORY_COSIGN nor $PATH has one")

	return ""
}

// cosignVerify runs `cosign verify` offline (no transparency log, no certificate: a plain key) against an image on
// the plain-HTTP synthetic registry, and returns its output and whether it succeeded.
func cosignVerify(t *testing.T, bin, image string, publicPEM []byte) (string, bool) {
	t.Helper()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pub")
	require.NoError(t, os.WriteFile(keyFile, publicPEM, 0o600))

	cmd := exec.Command(bin, "verify", "--key", keyFile, "--insecure-ignore-tlog=true", "--insecure-ignore-sct=true",
		"--offline=true", "--allow-insecure-registry", "--allow-http-registry", "--output", "json", image)
	// Its own home: cosign keeps a TUF cache there, and nothing here needs one.
	cmd.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"))
	out, err := cmd.CombinedOutput()

	return string(out), err == nil
}

// TestCosignCLI: the cosign CLI verifies images of every kind with the lab key (`edgefactory synthetic public-key`),
// offline, and refuses them with another key.
func TestCosignCLI(t *testing.T) {
	bin := cosignCLI(t)
	srv := synthetictest.Start(t, synthetic.Options{Parts: parts(t)})

	vi, ok := srv.Manifest.Version("v1.13.0")
	require.True(t, ok)
	require.NotNil(t, vi.Talosctl)

	images := []synthetic.Pushed{vi.Imager, vi.InstallerBase, vi.ExtensionsCatalog, vi.OverlaysCatalog,
		vi.Extensions[0], vi.Overlays[0], *vi.Talosctl}
	for _, c := range vi.Cluster {
		images = append(images, c.Image) // ghcr.io and registry.k8s.io names, up to three path components
	}

	for _, p := range images {
		image := p.Pinned(srv.Addr)

		out, ok := cosignVerify(t, bin, image, synthetic.PublicKeyPEM())
		require.True(t, ok, "cosign verify %s with the lab key:\n%s", image, out)
		assert.Contains(t, out, p.Digest, "the verified payload names the index digest")
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	der, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
	require.NoError(t, err)

	image := vi.Imager.Pinned(srv.Addr)
	out, ok := cosignVerify(t, bin, image, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	require.False(t, ok, "cosign verify %s with another key must fail:\n%s", image, out)
	assert.Contains(t, out, "no matching signatures")
}
