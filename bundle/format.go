package bundle

import (
	"slices"
	"time"

	"github.com/edgefactory/edgefactory/frontends/imports"
)

// FormatVersion is the version of bundle.json this package writes, and the newest it reads.
const FormatVersion = 1

// Names of the files at the root of a bundle, and of its blobs directory.
const (
	LayoutFile   = "oci-layout"
	IndexFile    = "index.json"
	ManifestFile = "bundle.json"
	BlobsDir     = "blobs/sha256"
)

// AnnotationRefName is the index.json annotation holding an entry's original full reference.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// Role says why an image is in a bundle.
type Role string

// The roles, in the order bundle.json lists them. An image wanted for several reasons takes the first.
const (
	RoleImager        Role = "imager"         // <ns>/imager:<v>
	RoleInstallerBase Role = "installer-base" // <ns>/installer-base:<v> (Talos 1.10 and later)
	RoleInstaller     Role = "installer"      // <ns>/installer:<v> (before Talos 1.10)
	RoleExtensions    Role = "extensions"     // the extensions catalog, <ns>/extensions:<v>
	RoleOverlays      Role = "overlays"       // the overlays catalog, <ns>/overlays:<v>
	RoleTalosctlAll   Role = "talosctl-all"   // <ns>/talosctl-all:<v>
	RoleExtension     Role = "extension"      // an extension image named by the extensions catalog
	RoleOverlay       Role = "overlay"        // an overlay image named by the overlays catalog
	RoleCluster       Role = "cluster"        // printed by the version's `talosctl images default`
	RoleExtra         Role = "extra"          // asked for with --extra-image
)

var roleOrder = []Role{
	RoleImager, RoleInstallerBase, RoleInstaller, RoleExtensions, RoleOverlays, RoleTalosctlAll, RoleExtension,
	RoleOverlay, RoleCluster, RoleExtra,
}

// rank orders roles (an unknown role last).
func (r Role) rank() int {
	if i := slices.Index(roleOrder, r); i >= 0 {
		return i
	}

	return len(roleOrder)
}

// Manifest is bundle.json: what a bundle holds.
type Manifest struct {
	Format  int       `json:"format"`  // FormatVersion
	Created time.Time `json:"created"` // UTC
	Tool    string    `json:"tool,omitempty"`
	// Source is where the release was read ("ghcr.io/siderolabs", or a mirror of it); SourceMap lists the other
	// origins read elsewhere, as ORIGIN=REGISTRY[/PREFIX].
	Source    string   `json:"source"`
	SourceMap []string `json:"sourceMap,omitempty"`
	Versions  []string `json:"versions"` // the Talos versions mirrored, ascending
	// PublicKeys are the keys signatures were verified with (none: signatures were copied, not checked).
	PublicKeys []PublicKey `json:"publicKeys"`
	Blobs      int         `json:"blobs"` // blobs in the bundle (manifests, configs, layers), each once
	Bytes      int64       `json:"bytes"` // their total size
	Images     []Image     `json:"images"`
	// IPXE is the iPXE binaries the bundle carries for network boot (edgefactory mirror --ipxe-dir); nil when it
	// carries none. Their blobs are in blobs/ but not in index.json, nor counted in Blobs and Bytes.
	IPXE *IPXE `json:"ipxe,omitempty"`
	// Incomplete lists what a run could not copy; only an incomplete directory bundle (or a tar's work directory)
	// has any. A tar bundle is never written incomplete.
	Incomplete []Failure `json:"incomplete,omitempty"`
}

// IPXE is the iPXE binaries a bundle carries: loose files, not images, stored as blobs like every other. bundle.json
// and the import's commit request describe them alike.
type IPXE = imports.IPXE

// IPXEFile is one iPXE binary: its name (undionly.kpxe, ipxe.efi, ipxe-arm64.efi) and its blob.
type IPXEFile = imports.IPXEFile

// Image is one image of a bundle, under its original reference.
type Image struct {
	Reference  string `json:"reference"`     // "ghcr.io/siderolabs/imager:v1.13.0", or "repo@sha256:…"
	Repository string `json:"repository"`    // "ghcr.io/siderolabs/imager"
	Tag        string `json:"tag,omitempty"` // "" for an image known only by digest
	Digest     string `json:"digest"`        // of its manifest or index
	MediaType  string `json:"mediaType"`
	Size       int64  `json:"size"` // of its manifest or index
	// TotalBytes is every blob of the image (index, manifests, configs, layers) counted once, signatures and
	// referrers not included.
	TotalBytes int64       `json:"totalBytes"`
	Role       Role        `json:"role"`
	Versions   []string    `json:"versions,omitempty"`  // the Talos versions it serves
	Platforms  []string    `json:"platforms,omitempty"` // "linux/amd64", … of an index
	Signatures []Signature `json:"signatures,omitempty"`
	Referrers  []Referrer  `json:"referrers,omitempty"`
}

// Signature is a cosign signature copied with its image: the manifest at tag sha256-<hex>.sig.
type Signature struct {
	Tag    string `json:"tag"`    // "sha256-<hex>.sig"
	Digest string `json:"digest"` // of the signature manifest
	Size   int64  `json:"size"`
	// VerifiedWith are the fingerprints of the public keys that verified it (none when no key was given).
	VerifiedWith []string `json:"verifiedWith,omitempty"`
}

// Referrer is a manifest whose subject is the image (OCI referrers API, or its sha256-<hex> tag fallback).
type Referrer struct {
	Digest       string `json:"digest"`
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType,omitempty"`
	Size         int64  `json:"size"`
}

// PublicKey is a key signatures were verified with.
type PublicKey struct {
	Fingerprint string `json:"fingerprint"` // "sha256:<hex>" of the key's DER (PKIX) encoding
	PEM         string `json:"pem"`
}

// Failure is an image, or a part of the release, that was not copied, and why.
type Failure struct {
	What  string `json:"what"` // an original reference, or "v1.13.0 cluster images", …
	Error string `json:"error"`
}

// Image finds an image by its original reference.
func (m *Manifest) Image(reference string) (Image, bool) {
	for _, im := range m.Images {
		if im.Reference == reference {
			return im, true
		}
	}

	return Image{}, false
}
