package synthetic_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// The lists `talosctl images default` prints, for the release's two default versions.
var (
	imagesV1120 = []string{
		"ghcr.io/siderolabs/flannel:v0.27.4",
		"registry.k8s.io/coredns/coredns:v1.13.1",
		"registry.k8s.io/etcd:v3.6.6",
		"registry.k8s.io/pause:3.10",
		"registry.k8s.io/kube-apiserver:v1.35.0",
		"registry.k8s.io/kube-controller-manager:v1.35.0",
		"registry.k8s.io/kube-scheduler:v1.35.0",
		"registry.k8s.io/kube-proxy:v1.35.0",
		"ghcr.io/siderolabs/kubelet:v1.35.0",
	}
	// exactly what the talosctl of Talos v1.13.0 prints (its source, go.mod's github.com/siderolabs/talos v1.13.0)
	imagesV1130 = []string{
		"ghcr.io/siderolabs/flannel:v0.28.4",
		"registry.k8s.io/coredns/coredns:v1.14.2",
		"registry.k8s.io/etcd:v3.6.9",
		"registry.k8s.io/pause:3.10.1",
		"registry.k8s.io/kube-apiserver:v1.36.0",
		"registry.k8s.io/kube-controller-manager:v1.36.0",
		"registry.k8s.io/kube-scheduler:v1.36.0",
		"registry.k8s.io/kube-proxy:v1.36.0",
		"ghcr.io/siderolabs/kubelet:v1.36.0",
		"registry.k8s.io/networking/kube-network-policies:v1.0.0",
	}
)

func TestClusterImageList(t *testing.T) {
	ns := synthetic.DefaultNamespace

	require.Equal(t, imagesV1120, synthetic.ClusterImageList(ns, "v1.12.0"))
	require.Equal(t, imagesV1130, synthetic.ClusterImageList(ns, "v1.13.0"))
	require.Equal(t, imagesV1130, synthetic.ClusterImageList(ns, "v1.13.4"), "a patch release: its minor's list")
	require.Equal(t, imagesV1130, synthetic.ClusterImageList(ns, "v1.14.0-alpha.1"), "past the table: the last row")

	// the older format: etcd from gcr.io, the installer (of this very version) and pause last
	require.Equal(t, []string{
		"ghcr.io/siderolabs/flannel:v0.27.4",
		"registry.k8s.io/coredns/coredns:v1.12.4",
		"gcr.io/etcd-development/etcd:v3.6.5",
		"registry.k8s.io/kube-apiserver:v1.34.1",
		"registry.k8s.io/kube-controller-manager:v1.34.1",
		"registry.k8s.io/kube-scheduler:v1.34.1",
		"registry.k8s.io/kube-proxy:v1.34.1",
		"ghcr.io/siderolabs/kubelet:v1.34.1",
		"ghcr.io/siderolabs/installer:v1.11.2",
		"registry.k8s.io/pause:3.10",
	}, synthetic.ClusterImageList(ns, "v1.11.2"))

	v19 := synthetic.ClusterImageList(ns, "v1.9.5")
	require.Contains(t, v19, "ghcr.io/siderolabs/installer:v1.9.5", "before the table: the first row")
	require.Contains(t, v19, "registry.k8s.io/kube-apiserver:v1.33.1")

	// another namespace moves the ghcr.io images only
	other := synthetic.ClusterImageList("mirror/talos", "v1.11.2")
	require.Contains(t, other, "ghcr.io/mirror/talos/installer:v1.11.2")
	require.Contains(t, other, "ghcr.io/mirror/talos/kubelet:v1.34.1")
	require.Contains(t, other, "gcr.io/etcd-development/etcd:v3.6.5")
}

// checkCluster: a version's cluster images are its ClusterImageList, in order, each held under its original name
// (registry.k8s.io/... as a repository path) as an amd64 + arm64 index of one-file images saying what they stand for.
func checkCluster(t *testing.T, addr, namespace string, vi synthetic.VersionImages) {
	t.Helper()

	list := synthetic.ClusterImageList(namespace, vi.Version)
	require.Len(t, vi.Cluster, len(list))

	for i, c := range vi.Cluster {
		require.Equal(t, list[i], c.Source)
		require.Equal(t, c.Source, synthetic.UpstreamName(c.Image.Repository)+":"+c.Image.Tag)
		require.Equal(t, localRef(addr, c.Source), c.Image.Ref(addr))

		for arch, img := range pull(t, addr, c.Image) {
			layers, err := img.Layers()
			require.NoError(t, err)
			require.Len(t, layers, 1, c.Source)

			files := flatten(t, img)
			require.Len(t, files, 1, c.Source)
			require.Equal(t, synthetic.ClusterImageContent(c.Source, arch), string(files[synthetic.ClusterImageFile].data))
			layerOrderOK(t, img)
		}
	}
}

// localRef is where the synthetic registry at addr holds the image upstream names ref: ghcr.io/ dropped, any other
// registry kept as the first path component.
func localRef(addr, ref string) string {
	return addr + "/" + strings.TrimPrefix(ref, "ghcr.io/")
}

// TestClusterImagePaths: the registry serves a repository whose first component is a registry host, as the
// distribution spec allows, by tag and by digest.
func TestClusterImagePaths(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: parts(t)})

	vi, ok := srv.Manifest.Version("v1.12.0")
	require.True(t, ok)

	var apiServer synthetic.Pushed

	for _, c := range vi.Cluster {
		if c.Source == "registry.k8s.io/kube-apiserver:v1.35.0" {
			apiServer = c.Image
		}
	}

	require.Equal(t, "registry.k8s.io/kube-apiserver", apiServer.Repository)

	for _, ref := range []string{"v1.35.0", apiServer.Digest} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
			"http://"+srv.Addr+"/v2/registry.k8s.io/kube-apiserver/manifests/"+ref, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")

		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode, ref)
		require.Equal(t, apiServer.Digest, resp.Header.Get("Docker-Content-Digest"), ref)
	}
}

// TestTalosctlImagesDefault runs the linux/amd64 talosctl of each version's talosctl-all image, as pulled, with sh:
// `talosctl images default` prints the version's list exactly, every image of which the registry holds; any other
// invocation prints the stand-in line.
func TestTalosctlImagesDefault(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the stand-in talosctl with")
	}

	srv := synthetictest.Start(t, synthetic.Options{Parts: parts(t)})

	for _, tc := range []struct {
		version   string
		want      []string
		k8sBundle bool
	}{{"v1.12.0", imagesV1120, true}, {"v1.13.0", imagesV1130, true}} {
		t.Run(tc.version, func(t *testing.T) {
			vi, ok := srv.Manifest.Version(tc.version)
			require.True(t, ok)
			require.NotNil(t, vi.Talosctl)

			img, err := crane.Pull(vi.Talosctl.Ref(srv.Addr), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "amd64"}))
			require.NoError(t, err)

			bin := filepath.Join(t.TempDir(), "talosctl")
			require.NoError(t, os.WriteFile(bin, flatten(t, img)["talosctl-linux-amd64"].data, 0o755))

			run := func(args ...string) string {
				t.Helper()

				out, err := exec.Command(sh, append([]string{bin}, args...)...).CombinedOutput()
				require.NoError(t, err, "talosctl %s: %s", strings.Join(args, " "), out)

				return string(out)
			}

			list := strings.Join(tc.want, "\n") + "\n"
			require.Equal(t, list, run("images", "default"))
			require.Equal(t, list, run("image", "default"), "image is the command, images its alias")

			if tc.k8sBundle {
				require.Equal(t, list, run("images", "k8s-bundle"), "default is an alias of k8s-bundle")
			}

			standIn := "synthetic talosctl " + tc.version + " for linux/amd64: a stand-in of the Edge Factory synthetic " +
				"release, not a real talosctl\n"
			for _, args := range [][]string{nil, {"version"}, {"images"}, {"images", "list"}, {"default"},
				{"images", "default", "--k8s-version", "v1.33.0"}} {
				require.Equal(t, standIn, run(args...), args)
			}

			for _, ref := range tc.want {
				got, err := crane.Digest(localRef(srv.Addr, ref))
				require.NoError(t, err, ref)

				found := false

				for _, c := range vi.Cluster {
					found = found || (c.Source == ref && c.Image.Digest == got)
				}

				require.True(t, found, "%s is one of the version's cluster images", ref)
			}
		})
	}
}

// TestClusterInstallerBeforeV110: before Talos 1.10 the installer image was the imager's base as well, so there the
// cluster's installer is the installer-base image; from 1.10 a stand-in like the others.
func TestClusterInstallerBeforeV110(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts(), Versions: []string{"v1.9.5", "v1.10.0"}})

	installer := func(version string) (synthetic.VersionImages, synthetic.Pushed) {
		vi, ok := srv.Manifest.Version(version)
		require.True(t, ok)

		for _, c := range vi.Cluster {
			if c.Source == "ghcr.io/siderolabs/installer:"+version {
				return vi, c.Image
			}
		}

		t.Fatalf("%s lists no installer", version)

		return vi, synthetic.Pushed{}
	}

	old, inst := installer("v1.9.5")
	require.Equal(t, "siderolabs/installer", inst.Repository)
	require.Equal(t, old.InstallerBase.Digest, inst.Digest)

	got, err := crane.Digest(inst.Ref(srv.Addr))
	require.NoError(t, err)
	require.Equal(t, old.InstallerBase.Digest, got)

	cur, inst := installer("v1.10.0")
	require.NotEqual(t, cur.InstallerBase.Digest, inst.Digest)
}
