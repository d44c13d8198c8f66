// Package release describes a Talos release as the upstream registry publishes it, and reads it from there.
//
// A Version is the complete, immutable catalog of one Talos version: the digests of its imager and installer-base
// images, its official extensions and overlays, and the talosctl binaries of its talosctl-all image. It is small
// metadata (never image bytes), so it is replicated through Raft and every node answers catalog requests without
// talking to the upstream registry.
package release

// Architectures are the CPU architectures every release carries.
var Architectures = []string{"amd64", "arm64"}

// Extension is one entry of a version's official extensions catalog, in the JSON shape of
// GET /version/{v}/extensions/official.
type Extension struct {
	Name        string `json:"name"`
	Ref         string `json:"ref"`
	Digest      string `json:"digest"`
	Author      string `json:"author"`
	Description string `json:"description"`
}

// Overlay is one entry of a version's official overlays catalog, in the JSON shape of
// GET /version/{v}/overlays/official.
type Overlay struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// Image pins one multi-architecture upstream image: its repository (without registry, e.g. "siderolabs/imager"),
// the digest of its index, and the digest of the manifest for each architecture.
type Image struct {
	Repository string            `json:"repository"`
	Index      string            `json:"index"`
	Arch       map[string]string `json:"arch"`
}

// Version is the catalog of one Talos version. Version is "v"-prefixed semver, e.g. "v1.13.0".
type Version struct {
	Version       string      `json:"version"`
	Imager        Image       `json:"imager"`
	InstallerBase Image       `json:"installerBase"`
	Extensions    []Extension `json:"extensions"`
	Overlays      []Overlay   `json:"overlays"`
	// Talosctl is the version's talosctl-all image and its binaries (none when the registry has no such image);
	// nil before Talos 1.11.0-alpha.3, and until the image has been read.
	Talosctl *Talosctl `json:"talosctl,omitempty"`
}
