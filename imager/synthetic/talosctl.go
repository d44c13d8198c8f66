package synthetic

import (
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TalosctlRepository is the base name of the image carrying the talosctl binaries.
const TalosctlRepository = "talosctl-all"

// TalosctlFiles are the files of the real talosctl-all image (Talos 1.11 and later), one layer each as its
// Dockerfile copies them, at the image root.
var TalosctlFiles = []string{
	"talosctl-darwin-amd64", "talosctl-darwin-arm64",
	"talosctl-freebsd-amd64", "talosctl-freebsd-arm64",
	"talosctl-linux-amd64", "talosctl-linux-arm64", "talosctl-linux-armv7",
	"talosctl-windows-amd64.exe", "talosctl-windows-arm64.exe",
}

// talosctlSince is the first version with a talosctl-all image in the synthetic release.
var talosctlSince = semver.MustParse("1.11.0")

// hasTalosctl reports whether version gets a talosctl-all image.
func hasTalosctl(version string) bool {
	v, err := parseVersion(version)

	return err == nil && v.GTE(talosctlSince)
}

// TalosctlContent is TalosctlContentIn for a release in DefaultNamespace.
func TalosctlContent(version, file string) []byte {
	return TalosctlContentIn(DefaultNamespace, version, file)
}

// TalosctlContentIn is the stand-in for one talosctl binary of a release in namespace: a short shell script. A real
// talosctl cannot be built here, and a few hundred bytes keep the release small. Run as `talosctl images default`
// (or `image default`, and from Talos 1.12 `images k8s-bundle`, which `default` is an alias of) it prints what the
// real talosctl of the version prints: ClusterImageList, one reference per line, naming the original registries
// (ghcr.io, registry.k8s.io, ...), not the synthetic one. Any other invocation prints one line saying what it
// stands for.
func TalosctlContentIn(namespace, version, file string) []byte {
	target := strings.TrimSuffix(strings.TrimPrefix(file, "talosctl-"), ".exe")
	target = strings.Replace(target, "-", "/", 1)

	k8sBundle, _ := clusterRow(version)
	subcommand := `[ "$2" = default ]`

	if k8sBundle {
		subcommand = `{ [ "$2" = default ] || [ "$2" = k8s-bundle ]; }`
	}

	var b strings.Builder

	b.WriteString("#!/bin/sh\n")

	if images := ClusterImageList(namespace, version); len(images) > 0 {
		fmt.Fprintf(&b, `if [ "$#" -eq 2 ] && { [ "$1" = image ] || [ "$1" = images ]; } && %s; then`+"\n", subcommand)
		b.WriteString(`	printf '%s\n'`)

		for _, ref := range images {
			b.WriteString(" \\\n\t\t'" + ref + "'")
		}

		b.WriteString("\n\texit 0\nfi\n")
	}

	fmt.Fprintf(&b, "echo 'synthetic talosctl %s for %s: a stand-in of the Edge Factory synthetic release, not a real "+
		"talosctl'\n", version, target)

	return []byte(b.String())
}

// talosctlImage is <ns>/talosctl-all:<version>: a linux/amd64 + linux/arm64 index (like the real one, built by
// buildx for both) whose images carry the same files, one layer per file.
func talosctlImage(ns, version string) (v1.ImageIndex, error) {
	layers := make([]v1.Layer, 0, len(TalosctlFiles))

	for _, f := range TalosctlFiles {
		l, err := layer([]entry{file(f, 0o755, TalosctlContentIn(ns, version, f))})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}

		layers = append(layers, l)
	}

	return sameForAll(v1.Config{Labels: map[string]string{"org.opencontainers.image.version": version}}, layers...)
}
