// Package recipe turns a request for a boot asset into a Recipe: everything that determines the asset's bytes
// (schematic, Talos version, normalised output path, the digest of every input image, secure-boot key
// fingerprint, builder version), and a Key that hashes it. Planning is pure: no I/O, so every node computes the
// same key from the same replicated state. A Recipe becomes a Talos imager profile once its inputs are on disk.
//
// The path grammar, the build-time checks and the per-output customizations follow the official Talos Image
// Factory (docs/api.md §2-§3); every mistake a client can make is reported as an *InvalidError (HTTP 400).
package recipe

import (
	"github.com/siderolabs/talos/pkg/imager/profile"
)

// Asset is a parsed output path of /image (docs/api.md §3.1-§3.2). Everything in it is normalised: arch aliases are
// resolved, compression and disk format are explicit, so two spellings of one asset are equal.
type Asset struct {
	// Path is the normalised path, e.g. "metal-amd64.iso" for "metal-x86_64.iso"; also the default file name.
	Path       string             `json:"path"`
	Kind       profile.OutputKind `json:"kind"`
	Platform   string             `json:"platform"`
	Arch       string             `json:"arch"`
	SecureBoot bool               `json:"secureboot,omitempty"`
	// Board is the legacy board name of the image-service path syntax (issue 6); empty otherwise.
	Board string `json:"board,omitempty"`
	// OutFormat is the compression of the output (raw, xz, gz, zstd, tar for .tar.gz).
	OutFormat profile.OutFormat `json:"outFormat"`
	// Disk image options, only for Kind == OutKindImage.
	DiskFormat        profile.DiskFormat `json:"diskFormat,omitempty"`
	DiskFormatOptions string             `json:"diskFormatOptions,omitempty"`
	DiskSize          uint64             `json:"diskSize,omitempty"`
}

// Image pins one input image by digest in the upstream registry.
type Image struct {
	// Repository is the path in the upstream registry without the registry, e.g. "siderolabs/amd-ucode".
	Repository string `json:"repository"`
	// Digest is "sha256:<hex>": a manifest digest, or an index digest when Platform selects from it.
	Digest string `json:"digest"`
	// Platform ("linux/amd64") selects the image from an index. With a manifest digest it names the platform of
	// that manifest (the OCI layout handed to the imager must record it); empty when it does not matter.
	Platform string `json:"platform,omitempty"`
	// Tag is informational (e.g. "v1.13.0"); it never takes part in lookups.
	Tag string `json:"tag,omitempty"`
}

// Inputs are the images a build reads, all pinned by digest.
type Inputs struct {
	// Imager provides usr/install/<arch>/{vmlinuz,initramfs.xz,systemd-boot.efi,systemd-stub.efi}.
	Imager Image `json:"imager"`
	// InstallerBase is set for installer outputs.
	InstallerBase *Image `json:"installerBase,omitempty"`
	// Extensions in schematic order (after alias resolution).
	Extensions []Image `json:"extensions,omitempty"`
	// Overlay is set when the schematic (or a legacy board path) names an overlay, for every output but kernel and
	// cmdline. Its image is for the build host's architecture: the imager runs the overlay installer there.
	Overlay *Overlay `json:"overlay,omitempty"`
	// OverlayInstaller is the same overlay image for the target architecture, set only for installer outputs with
	// an overlay: the installer image carries the overlay installer that runs on the target machine.
	OverlayInstaller *Image `json:"overlayInstaller,omitempty"`
}

// Overlay is an overlay input: its image, the name of the overlay inside it, and the schematic's options.
type Overlay struct {
	Image   Image          `json:"image"`
	Name    string         `json:"name"`
	Options map[string]any `json:"options,omitempty"`
}

// Recipe is everything that determines an asset's bytes.
type Recipe struct {
	SchematicID string `json:"schematicID"`
	// Schematic is the canonical YAML of the schematic (the ID hashes it, so the key covers it).
	Schematic []byte `json:"-"`
	// Version is the "v"-prefixed Talos version.
	Version string `json:"version"`
	Asset   Asset  `json:"asset"`
	Inputs  Inputs `json:"inputs"`
	// SecureBootKeys is the fingerprint of the secure-boot signing material, for secure-boot assets.
	SecureBootKeys string `json:"secureBootKeys,omitempty"`
	// Author is the author of the virtual "schematic" extension (cluster-wide constant).
	Author string `json:"author,omitempty"`
	// Talosctl is set for a talosctl binary: a file copied out of the talosctl-all image, not built (there is no
	// schematic then, and Asset is only its name).
	Talosctl *TalosctlFile `json:"talosctl,omitempty"`
	// Builder names the builder and Talos imager versions; changing it changes every key.
	Builder string `json:"builder"`
	// Key is the recipe key: lowercase hex sha256 of the canonical encoding of everything above.
	Key string `json:"-"`
}

// Paths are a Recipe's inputs once they are on local disk.
type Paths struct {
	Kernel, Initramfs, SDBoot, SDStub string
	// BaseInstaller is an OCI layout directory whose index.json entry carries the platform and an image ref.
	BaseInstaller string
	// Extensions are OCI layout directories (or plain filesystem tarballs), in Inputs.Extensions order.
	Extensions []profile.ContainerAsset
	// SchematicExtension is the virtual "schematic" extension as a plain filesystem tarball (docs/api.md §2.5).
	SchematicExtension string
	// Overlay is an OCI layout directory of the overlay image for the build host's architecture.
	Overlay string
	// OverlayInstaller is an OCI layout directory of the overlay image for the target architecture (installer
	// outputs with an overlay only). It may be the same directory as Overlay when that layout's index holds both
	// architectures: the imager picks the manifest by platform.
	OverlayInstaller string
	// SecureBoot is set for secure-boot assets.
	SecureBoot *profile.SecureBootAssets
}
