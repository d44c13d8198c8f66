package synthetic

import (
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// buildRelease makes every image of the release in memory, dependencies first: extension and overlay images, the
// catalogs naming them by digest, then the imager, installer-base, (from Talos 1.11) talosctl-all and cluster
// images, each with its signature.
func buildRelease(opts Options) (*release, error) {
	minVersion, err := lowestMinor(opts.Versions)
	if err != nil {
		return nil, err
	}

	warmInitramfs(opts.Parts)

	bootFiles, err := bootFilesLayer(opts.Parts)
	if err != nil {
		return nil, err
	}

	b := &versionBuilder{ns: opts.Namespace, parts: opts.Parts, minVersion: minVersion, bootFiles: bootFiles}

	var rel release

	for _, version := range opts.Versions {
		vi, err := b.build(version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", version, err)
		}

		rel.versions = append(rel.versions, vi)
	}

	rel.items = b.set.items

	return &rel, nil
}

// versionBuilder builds the images of one version after another into one set (shared images appear once).
type versionBuilder struct {
	ns         string
	parts      *Parts
	minVersion string   // extensions' compatibility floor
	bootFiles  v1.Layer // the imager's version-independent layer
	set        itemSet
}

func (b *versionBuilder) add(repo, tag string, idx v1.ImageIndex, err error) (Pushed, error) {
	if err != nil {
		return Pushed{}, fmt.Errorf("%s:%s: %w", repo, tag, err)
	}

	it, err := newItem(b.ns+"/"+repo, tag, idx)
	if err != nil {
		return Pushed{}, err
	}

	return b.set.add(it)
}

func (b *versionBuilder) build(version string) (VersionImages, error) {
	vi := VersionImages{Version: version}
	lines := make([]string, 0, len(extensions))
	descs := map[string]description{}

	for _, e := range extensions {
		idx, err := e.image(version, b.minVersion)

		p, err := b.add(e.name, e.tag(version), idx, err)
		if err != nil {
			return vi, err
		}

		vi.Extensions = append(vi.Extensions, p)
		line := catalogLine(p.Repository, p.Tag, p.Digest)
		lines = append(lines, line)
		descs[line] = description{Author: e.author, Description: e.description}
	}

	idx, err := overlayImage()

	ov, err := b.add(OverlayRepository, OverlayTag, idx, err)
	if err != nil {
		return vi, err
	}

	vi.Overlays = []Pushed{ov}

	idx, err = extensionsCatalog(lines, descs)
	if vi.ExtensionsCatalog, err = b.add("extensions", version, idx, err); err != nil {
		return vi, err
	}

	idx, err = overlaysCatalog([]overlayEntry{{
		Name: OverlayName, Image: UpstreamRegistry + "/" + ov.Repository + ":" + ov.Tag, Digest: ov.Digest,
	}})
	if vi.OverlaysCatalog, err = b.add("overlays", version, idx, err); err != nil {
		return vi, err
	}

	idx, err = imagerImage(b.parts, version, b.bootFiles)
	if vi.Imager, err = b.add("imager", version, idx, err); err != nil {
		return vi, err
	}

	installerBase, err := installerBaseImage(b.parts, version)
	if vi.InstallerBase, err = b.add("installer-base", version, installerBase, err); err != nil {
		return vi, err
	}

	if hasTalosctl(version) {
		idx, err = talosctlImage(b.ns, version)

		p, err := b.add(TalosctlRepository, version, idx, err)
		if err != nil {
			return vi, err
		}

		vi.Talosctl = &p
	}

	if vi.Cluster, err = b.cluster(version, installerBase); err != nil {
		return vi, err
	}

	return vi, nil
}

// cluster adds a stand-in for each image ClusterImageList names. Before Talos 1.10 the installer is the
// installer-base image (there, one image was both).
func (b *versionBuilder) cluster(version string, installerBase v1.ImageIndex) ([]ClusterImage, error) {
	sv, err := parseVersion(version)
	if err != nil {
		return nil, err
	}

	refs := ClusterImageList(b.ns, version)
	out := make([]ClusterImage, 0, len(refs))

	for _, ref := range refs {
		repo, tag, err := clusterRepository(ref)
		if err != nil {
			return nil, err
		}

		var idx v1.ImageIndex

		if repo == b.ns+"/installer" && sv.LT(installerIsBaseBefore) {
			idx = installerBase
		} else if idx, err = clusterImage(ref); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}

		it, err := newItem(repo, tag, idx)
		if err != nil {
			return nil, err
		}

		p, err := b.set.add(it)
		if err != nil {
			return nil, err
		}

		out = append(out, ClusterImage{Source: ref, Image: p})
	}

	return out, nil
}

// lowestMinor is "v<major>.<minor>.0" of the lowest version: the extensions' compatibility floor.
func lowestMinor(versions []string) (string, error) {
	var low string

	for _, v := range versions {
		sv, err := parseVersion(v)
		if err != nil {
			return "", err
		}

		floor := fmt.Sprintf("v%d.%d.0", sv.Major, sv.Minor)
		if low == "" {
			low = floor

			continue
		}

		cur, _ := parseVersion(low) // built above from a valid version
		if sv.LT(cur) {
			low = floor
		}
	}

	return low, nil
}

// warmInitramfs compresses the busybox segment of every architecture's initramfs in parallel (the slow part).
func warmInitramfs(parts *Parts) {
	var wg sync.WaitGroup

	for _, arch := range Architectures {
		wg.Go(func() { _, _ = initramfsBase(parts.File(arch, "busybox")) }) // errors resurface at use
	}

	wg.Wait()
}

// bootFilesLayer holds usr/install/<arch>/{vmlinuz,systemd-boot.efi,systemd-stub.efi} for every architecture: the
// same for every version, so it is one shared blob.
func bootFilesLayer(parts *Parts) (v1.Layer, error) {
	var entries []entry

	for _, arch := range Architectures {
		for _, name := range []string{"vmlinuz", "systemd-boot.efi", "systemd-stub.efi"} {
			entries = append(entries, file("usr/install/"+arch+"/"+name, 0o644, parts.File(arch, name)))
		}
	}

	l, err := layer(entries)
	if err != nil {
		return nil, fmt.Errorf("imager boot files: %w", err)
	}

	return l, nil
}

// imagerImage is <ns>/imager:<version>. Like the real one, each platform's image carries the boot assets of every
// architecture, so either platform image can build for either target.
func imagerImage(parts *Parts, version string, bootFiles v1.Layer) (v1.ImageIndex, error) {
	var entries []entry

	for _, arch := range Architectures {
		data, err := Initramfs(parts.File(arch, "busybox"), version)
		if err != nil {
			return nil, fmt.Errorf("%s initramfs: %w", arch, err)
		}

		entries = append(entries, file("usr/install/"+arch+"/initramfs.xz", 0o644, data))
	}

	initramfs, err := layer(entries)
	if err != nil {
		return nil, fmt.Errorf("imager initramfs: %w", err)
	}

	return sameForAll(v1.Config{
		Labels: map[string]string{"org.opencontainers.image.version": version},
	}, bootFiles, initramfs)
}

// installerBaseImage is <ns>/installer-base:<version>, two layers like the real one: the installer's tools, then
// usr/install/<arch>/ (the Talos imager drops this layer and appends the built artifacts instead).
func installerBaseImage(parts *Parts, version string) (v1.ImageIndex, error) {
	return multiArch(func(arch string) (v1.Image, error) {
		tools, err := layer([]entry{
			file("bin/busybox", 0o755, parts.File(arch, "busybox")),
			symlink("bin/sh", "busybox"),
			text("usr/bin/installer", 0o755, installerScript(version, arch)),
		})
		if err != nil {
			return nil, err
		}

		artifacts, err := layer([]entry{
			text("usr/install/"+arch+"/placeholder", 0o644, "replaced by the imager's artifacts layer\n"),
		})
		if err != nil {
			return nil, err
		}

		return image(arch, v1.Config{
			Entrypoint: []string{"/usr/bin/installer"},
			Env:        []string{"PATH=/bin:/usr/bin"},
			Labels:     map[string]string{"org.opencontainers.image.version": version},
		}, tools, artifacts)
	})
}

// installerScript stands in for the Talos installer binary: it only shows what the image carries.
func installerScript(version, arch string) string {
	return "#!/bin/sh\necho \"synthetic Talos installer " + version + " (" + arch + "): $*\"\n" +
		"ls -lR /usr/install /overlay 2>/dev/null\n"
}

// versionsOf lists the versions of a manifest (for logs).
func versionsOf(vs []VersionImages) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.Version)
	}

	return out
}
