package bundle

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blang/semver/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseVersions(t *testing.T) {
	spec, err := parseVersions("v1.13.0, 1.12.0,v1.12.0")
	require.NoError(t, err)
	assert.Equal(t, []string{"v1.12.0", "v1.13.0"}, spec.list)

	for _, tc := range []struct {
		expr    string
		in, out []string
	}{
		{">=v1.12.0", []string{"v1.12.0", "v1.13.2", "v2.0.0"}, []string{"v1.11.9"}},
		{">=1.12.0 <1.13.0", []string{"v1.12.0", "v1.12.7"}, []string{"v1.13.0", "v1.11.0"}},
		{">=v1.12.0,<v1.13.0", []string{"v1.12.3"}, []string{"v1.13.0"}},
		{">=v1.12.0, <v1.13.0", []string{"v1.12.3"}, []string{"v1.13.0"}},
		{"<1.11.0 || >=1.13.0", []string{"v1.10.1", "v1.13.0"}, []string{"v1.12.0"}},
	} {
		spec, err := parseVersions(tc.expr)
		require.NoError(t, err, tc.expr)
		require.NotNil(t, spec.rng, tc.expr)

		for _, v := range tc.in {
			assert.True(t, spec.rng(mustSemver(t, v)), "%s in %s", v, tc.expr)
		}

		for _, v := range tc.out {
			assert.False(t, spec.rng(mustSemver(t, v)), "%s not in %s", v, tc.expr)
		}
	}

	pre, err := parseVersions(">=v1.13.0-alpha.0")
	require.NoError(t, err)
	assert.True(t, pre.pre, "a range naming a pre-release takes pre-releases")

	for _, bad := range []string{">=banana", "v1.13", "1.2.3.4", ">>1.2.3"} {
		_, err := parseVersions(bad)
		assert.Error(t, err, bad)
	}
}

func TestParseOrigin(t *testing.T) {
	for in, want := range map[string]origin{
		"ghcr.io/siderolabs/imager:v1.13.0":                    {Repository: "ghcr.io/siderolabs/imager", Tag: "v1.13.0"},
		"registry.k8s.io/kube-apiserver:v1.34.1":               {Repository: "registry.k8s.io/kube-apiserver", Tag: "v1.34.1"},
		"localhost:5000/a/b@sha256:" + strings.Repeat("a", 64): {Repository: "localhost:5000/a/b", Digest: "sha256:" + strings.Repeat("a", 64)},
		"busybox:1.36":            {Repository: "docker.io/library/busybox", Tag: "1.36"},
		"rancher/local-path:v0.1": {Repository: "docker.io/rancher/local-path", Tag: "v0.1"},
		"ghcr.io/siderolabs/gvisor:2025@sha256:" + strings.Repeat("b", 64): {
			Repository: "ghcr.io/siderolabs/gvisor", Tag: "2025", Digest: "sha256:" + strings.Repeat("b", 64),
		},
	} {
		got, err := parseOrigin(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}

	o, _ := parseOrigin("ghcr.io/siderolabs/gvisor:2025@sha256:" + strings.Repeat("b", 64))
	assert.Equal(t, "ghcr.io/siderolabs/gvisor:2025", o.Reference(), "the tag form when there is a tag")

	o, _ = parseOrigin("ghcr.io/x/y@sha256:" + strings.Repeat("b", 64))
	assert.Equal(t, "ghcr.io/x/y@sha256:"+strings.Repeat("b", 64), o.Reference())

	for _, bad := range []string{"ghcr.io/siderolabs/imager", "ghcr.io/x:y@sha256:short", "Ghcr.io/UPPER/case:v1", ""} {
		_, err := parseOrigin(bad)
		assert.Error(t, err, bad)
	}
}

func TestSourceMap(t *testing.T) {
	m, err := parseSourceMap("127.0.0.1:5000/siderolabs", []string{
		"registry.k8s.io=127.0.0.1:5000/registry.k8s.io", "registry.k8s.io/coredns=cache.local/dns",
	})
	require.NoError(t, err)

	for origin, want := range map[string]string{
		"ghcr.io/siderolabs/imager":        "127.0.0.1:5000/siderolabs/imager",
		"registry.k8s.io/kube-apiserver":   "127.0.0.1:5000/registry.k8s.io/kube-apiserver",
		"registry.k8s.io/coredns/coredns":  "cache.local/dns/coredns",
		"registry.k8s.io.evil/x":           "registry.k8s.io.evil/x",
		"ghcr.io/siderolabsx/imager":       "ghcr.io/siderolabsx/imager",
		"gcr.io/etcd-development/etcd":     "gcr.io/etcd-development/etcd",
		"ghcr.io/siderolabs/sbc-rpi/child": "127.0.0.1:5000/siderolabs/sbc-rpi/child",
	} {
		assert.Equal(t, want, m.source(origin), origin)
	}

	for _, bad := range [][]string{{"registry.k8s.io"}, {"=x.io"}, {"a.io=b.io", "a.io=c.io"}, {"a.io=B.io/UP"}} {
		_, err := parseSourceMap(DefaultFrom, bad)
		assert.Error(t, err, bad)
	}
}

// A bundle directory archived by tar(1) opens in place, and Verify finds damage and missing blobs.
func TestOpenAndVerify(t *testing.T) {
	reg := startRegistry(t, false)
	reg.push(t, "apps/one:v1", indexOfImages(t, imageOf(t, layer(t, 8192)), imageOf(t, layer(t, 8192))))

	dir := filepath.Join(t.TempDir(), "b")
	_, err := mirrorT(t, Options{ExtraImages: []string{reg.Addr + "/apps/one:v1"}, To: dir})
	require.NoError(t, err)

	tarPath := filepath.Join(t.TempDir(), "b.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Skipf("tar(1): %v: %s", err, out)
	}

	b, err := Open(tarPath)
	require.NoError(t, err)
	require.NoError(t, b.Verify(t.Context()))

	img := b.Images()[0]
	ds, err := b.Descriptors(img.Digest)
	require.NoError(t, err)
	assert.Len(t, ds, 7, "2 layers, 2 configs, 2 manifests, then the index")
	assert.Equal(t, img.Digest, ds[len(ds)-1].Digest.String())
	require.NoError(t, b.Close())

	// Damage a layer in the directory: Verify names it.
	var victim BlobInfo

	d, err := Open(dir)
	require.NoError(t, err)

	for _, bi := range d.Blobs() {
		if bi.Size > victim.Size {
			victim = bi
		}
	}

	require.NoError(t, d.Close())

	p := filepath.Join(dir, BlobsDir, victim.Digest[len("sha256:"):])
	data, err := os.ReadFile(p)
	require.NoError(t, err)

	data[0] ^= 1
	require.NoError(t, os.WriteFile(p, data, 0o644))

	d, err = Open(dir)
	require.NoError(t, err)

	err = d.Verify(t.Context())
	require.ErrorContains(t, err, "blob "+victim.Digest+": its")
	require.NoError(t, d.Close())

	require.NoError(t, os.Remove(p))

	d, err = Open(dir)
	require.NoError(t, err)

	defer d.Close()

	err = d.Verify(t.Context())
	require.ErrorContains(t, err, "blob "+victim.Digest+" (application/vnd.oci.image.layer.v1.tar+gzip) is missing")

	_, err = Open(t.TempDir())
	require.ErrorContains(t, err, "not an OCI image layout")
}

func mustSemver(t testing.TB, v string) semver.Version {
	t.Helper()

	sv, err := semver.ParseTolerant(v)
	require.NoError(t, err)

	return sv
}
