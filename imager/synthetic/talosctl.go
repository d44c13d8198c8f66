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

// TalosctlContent is the stand-in for one talosctl binary: a short script saying what it stands for. A real
// talosctl cannot be built here, and a few dozen bytes keep the release small.
func TalosctlContent(version, file string) []byte {
	target := strings.TrimSuffix(strings.TrimPrefix(file, "talosctl-"), ".exe")
	target = strings.Replace(target, "-", "/", 1)

	return fmt.Appendf(nil, "#!/bin/sh\necho 'synthetic talosctl %s for %s: a stand-in of the Edge Factory "+
		"synthetic release, not a real talosctl'\n", version, target)
}

// talosctlImage is <ns>/talosctl-all:<version>: a linux/amd64 + linux/arm64 index (like the real one, built by
// buildx for both) whose images carry the same files, one layer per file.
func talosctlImage(version string) (v1.ImageIndex, error) {
	layers := make([]v1.Layer, 0, len(TalosctlFiles))

	for _, f := range TalosctlFiles {
		l, err := layer([]entry{file(f, 0o755, TalosctlContent(version, f))})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}

		layers = append(layers, l)
	}

	return sameForAll(v1.Config{Labels: map[string]string{"org.opencontainers.image.version": version}}, layers...)
}
