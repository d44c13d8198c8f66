package synthetic

import (
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ClusterImage is one image a Talos cluster of a version pulls, as that version's `talosctl images default` names
// it, and the stand-in the synthetic registry holds for it. The stand-in's repository is the name without the
// registry for ghcr.io images ("siderolabs/kubelet", in the release's namespace), and the full name for any other
// registry ("registry.k8s.io/kube-apiserver": a first path component with a dot is valid in the distribution spec),
// so the original name survives: UpstreamName(Image.Repository) + ":" + Image.Tag is Source.
type ClusterImage struct {
	Source string `json:"source"` // as talosctl prints it, e.g. "registry.k8s.io/kube-apiserver:v1.36.0"
	Image  Pushed `json:"image"`
}

// talosVersionTag in clusterImageLists stands for the Talos version itself (the installer's tag).
const talosVersionTag = "<talos version>"

// clusterImageLists is the one table of cluster images: per Talos minor, exactly what that minor's `talosctl images
// default` prints, in its order. In a release with another namespace, ghcr.io/siderolabs/ reads ghcr.io/<namespace>/.
// A version outside the table gets the nearest row (a v1.9 release the v1.10 list, a v1.14 one the v1.13 list).
//
// What each row follows:
//   - 1.13: the Talos v1.13.0 source itself (go.mod's github.com/siderolabs/talos v1.13.0): `images default` is an
//     alias of `images k8s-bundle` (cmd/talosctl/cmd/talos/image.go), printing flannel, coredns, etcd, pause,
//     kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet, kube-network-policies, with
//     pkg/machinery/constants' versions and pkg/images' pause. Exact for v1.13.0.
//   - 1.12: the same k8s-bundle command before kube-network-policies (nine lines, pause fourth, no installer: the
//     installer moved to `images talos-bundle`). Kubernetes 1.35.0 and etcd 3.6.6 (from registry.k8s.io since 1.12)
//     are what Talos 1.12.0 shipped; the CoreDNS, Flannel and pause tags are plausible, not checked against the
//     v1.12.0 source (unreachable here).
//   - 1.11 and 1.10: the older `images default` (etcd from gcr.io/etcd-development, installer then pause last), with
//     the lists of the v1.11.5 and v1.10.4 release notes.
var clusterImageLists = []struct {
	minor     string // Talos major.minor
	k8sBundle bool   // `images k8s-bundle` prints the list too (`default` is its alias)
	images    []string
}{
	{minor: "1.10", images: []string{
		"ghcr.io/siderolabs/flannel:v0.26.7",
		"registry.k8s.io/coredns/coredns:v1.12.1",
		"gcr.io/etcd-development/etcd:v3.5.21",
		"registry.k8s.io/kube-apiserver:v1.33.1",
		"registry.k8s.io/kube-controller-manager:v1.33.1",
		"registry.k8s.io/kube-scheduler:v1.33.1",
		"registry.k8s.io/kube-proxy:v1.33.1",
		"ghcr.io/siderolabs/kubelet:v1.33.1",
		"ghcr.io/siderolabs/installer:" + talosVersionTag,
		"registry.k8s.io/pause:3.10",
	}},
	{minor: "1.11", images: []string{
		"ghcr.io/siderolabs/flannel:v0.27.4",
		"registry.k8s.io/coredns/coredns:v1.12.4",
		"gcr.io/etcd-development/etcd:v3.6.5",
		"registry.k8s.io/kube-apiserver:v1.34.1",
		"registry.k8s.io/kube-controller-manager:v1.34.1",
		"registry.k8s.io/kube-scheduler:v1.34.1",
		"registry.k8s.io/kube-proxy:v1.34.1",
		"ghcr.io/siderolabs/kubelet:v1.34.1",
		"ghcr.io/siderolabs/installer:" + talosVersionTag,
		"registry.k8s.io/pause:3.10",
	}},
	{minor: "1.12", k8sBundle: true, images: []string{
		"ghcr.io/siderolabs/flannel:v0.27.4",
		"registry.k8s.io/coredns/coredns:v1.13.1",
		"registry.k8s.io/etcd:v3.6.6",
		"registry.k8s.io/pause:3.10",
		"registry.k8s.io/kube-apiserver:v1.35.0",
		"registry.k8s.io/kube-controller-manager:v1.35.0",
		"registry.k8s.io/kube-scheduler:v1.35.0",
		"registry.k8s.io/kube-proxy:v1.35.0",
		"ghcr.io/siderolabs/kubelet:v1.35.0",
	}},
	{minor: "1.13", k8sBundle: true, images: []string{
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
	}},
}

// installerIsBaseBefore: before Talos 1.10 the installer image was also the imager's base (there was no
// installer-base), so there the cluster's installer is the installer-base image under the installer's name.
var installerIsBaseBefore = semver.MustParse("1.10.0")

// clusterRow is the row of clusterImageLists for version (the nearest one outside the table).
func clusterRow(version string) (k8sBundle bool, images []string) {
	v, err := parseVersion(version)
	if err != nil {
		return false, nil
	}

	floor := semver.Version{Major: v.Major, Minor: v.Minor}
	row := clusterImageLists[0]

	for _, r := range clusterImageLists { // ascending
		if semver.MustParse(r.minor + ".0").LTE(floor) {
			row = r
		}
	}

	return row.k8sBundle, row.images
}

// ClusterImageList is what `talosctl images default` of version prints (one reference per line), for a release in
// namespace: the stand-in talosctl of the version prints exactly this.
func ClusterImageList(namespace, version string) []string {
	_, images := clusterRow(version)
	out := make([]string, 0, len(images))

	for _, ref := range images {
		ref = strings.Replace(ref, talosVersionTag, version, 1)
		if rest, ok := strings.CutPrefix(ref, UpstreamRegistry+"/"+DefaultNamespace+"/"); ok {
			ref = UpstreamRegistry + "/" + namespace + "/" + rest
		}

		out = append(out, ref)
	}

	return out
}

// clusterRepository splits a cluster image reference into the synthetic registry's repository and tag.
func clusterRepository(ref string) (repo, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", "", fmt.Errorf("cluster image %q: no tag", ref)
	}

	repo, tag = ref[:i], ref[i+1:]
	if rest, ok := strings.CutPrefix(repo, UpstreamRegistry+"/"); ok {
		repo = rest
	}

	return repo, tag, nil
}

// clusterImage is the stand-in for one cluster image: a linux/amd64 + linux/arm64 index whose images carry one small
// layer with one file saying what it stands for.
func clusterImage(ref string) (v1.ImageIndex, error) {
	return multiArch(func(arch string) (v1.Image, error) {
		l, err := layer([]entry{text(ClusterImageFile, 0o644, ClusterImageContent(ref, arch))})
		if err != nil {
			return nil, err
		}

		return image(arch, v1.Config{}, l)
	})
}

// ClusterImageFile is the one file of a cluster image stand-in.
const ClusterImageFile = "synthetic-image.txt"

// ClusterImageContent is what ClusterImageFile says in the arch image of the stand-in for ref.
func ClusterImageContent(ref, arch string) string {
	return "Edge Factory synthetic release: a stand-in for " + ref + " (linux/" + arch + "), not the real image\n"
}
