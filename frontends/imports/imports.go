// Package imports speaks the import API: how `edgefactory import` brings an air-gap bundle's images into a
// cluster through any one member. Client and server together, over the small Importer interface the member
// implements.
//
// The protocol has three steps, so that a bundle moves no blob twice and lands whole or not at all:
//  1. POST /import/plan with every blob the bundle holds: the member opens a session and answers which blobs the
//     cluster lacks;
//  2. PUT /import/{session}/blobs/{digest} for each of those, streamed; the member checks every byte against the
//     digest on arrival;
//  3. POST /import/{session}/commit with the bundle's images (and its iPXE binaries, when it carries them): the
//     member checks each image whole (every manifest, config and layer present and matching, its signature good with
//     the cluster's trusted keys) and each iPXE binary by digest, then spreads the blobs to their holders and records
//     the images and the binaries in Raft. A refused commit names the image and the reason, and
//     the member drops every blob the session brought.
//
// Writes need the cluster secret as a bearer token when the member has one.
package imports

import (
	"context"
	"io"
)

// Prefix is where the API lives on the public listener.
const Prefix = "/import"

// Blob is one blob of a bundle.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// PlanRequest lists the blobs a bundle holds.
type PlanRequest struct {
	Blobs []Blob `json:"blobs"`
}

// PlanResponse opens a session and says which blobs to send.
type PlanResponse struct {
	Session string   `json:"session"`
	Missing []string `json:"missing"`
}

// Image is one image of a bundle, by its original name.
type Image struct {
	// Name is the repository's full name (registry.k8s.io/pause); Tag is empty for an image named by digest.
	Name      string `json:"name"`
	Tag       string `json:"tag,omitempty"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Role says what the image is to a Talos release (imager, extension, cluster, …); Versions are the Talos
	// versions it serves.
	Role     string   `json:"role,omitempty"`
	Versions []string `json:"versions,omitempty"`
	// Signatures are its cosign signatures in the tag scheme (tag sha256-<hex>.sig), manifests in the bundle.
	Signatures []Signature `json:"signatures,omitempty"`
	// Referrers are the OCI referrers of the digest the bundle carries.
	Referrers []Descriptor `json:"referrers,omitempty"`
}

// Signature is a signature manifest of an image.
type Signature struct {
	Tag       string `json:"tag"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// IPXE is the iPXE binaries a bundle carries, for network boot: blobs of the bundle like any other, checked by
// digest only (Debian signs its archive, not the files).
type IPXE struct {
	// Source says where they come from (the VERSION text the bundle recorded).
	Source string     `json:"source,omitempty"`
	Files  []IPXEFile `json:"files"`
}

// IPXEFile is one iPXE binary: undionly.kpxe, ipxe.efi or ipxe-arm64.efi, and its blob.
type IPXEFile struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Bytes is the total size of the binaries.
func (x *IPXE) Bytes() int64 {
	var n int64
	for _, f := range x.Files {
		n += f.Size
	}

	return n
}

// CommitRequest lists the images to record, and the iPXE binaries when the bundle carries them.
type CommitRequest struct {
	Images []Image `json:"images"`
	IPXE   *IPXE   `json:"ipxe,omitempty"`
}

// CommitResponse says what the cluster holds now of the bundle.
type CommitResponse struct {
	Images int   `json:"images"`
	Blobs  int   `json:"blobs"`
	Bytes  int64 `json:"bytes"`
	// Moved counts the blobs this import brought (0 when the cluster had them all).
	Moved int `json:"moved"`
	// IPXE counts the iPXE binaries recorded for network boot (0 when the bundle carried none).
	IPXE int `json:"ipxe,omitempty"`
}

// Importer is what a member does with an import. Its errors are classified as frontends describes: an Invalid one
// (a refused image, a digest mismatch) is a 400 naming it, an unknown session a 404.
type Importer interface {
	Plan(ctx context.Context, req PlanRequest) (PlanResponse, error)
	PutBlob(ctx context.Context, session, digest string, size int64, body io.Reader) error
	Commit(ctx context.Context, session string, req CommitRequest) (CommitResponse, error)
}
