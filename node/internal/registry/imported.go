package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Imported images: images the cluster holds under their full original names (registry.k8s.io/pause,
// ghcr.io/siderolabs/imager), brought in by an air-gap bundle. Their blobs are recorded like cached source blobs
// (one asset record each, under sourceBlobKey, naming a member that holds it); a tag is a Raft setting
// image-tag/<name>:<tag> and the referrers of a digest a setting image-referrers/<digest>. They are served from the
// cluster only: nothing here ever contacts the registry the name belongs to.

const (
	imageTagPrefix       = "image-tag/"
	imageReferrersPrefix = "image-referrers/"
)

// imageTagSetting names the setting of one tag of an imported image.
func imageTagSetting(name, tag string) string { return imageTagPrefix + name + ":" + tag }

// ImageTag is what one tag of an imported image points at.
type ImageTag struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Role and Versions say what the image is to which Talos versions, as the bundle said (registry mirror
	// patches name the registries of a version's images).
	Role     string   `json:"role,omitempty"`
	Versions []string `json:"versions,omitempty"`
}

// ImageManifest resolves a tag or digest of an imported image (oci.Registry).
func (reg *Registry) ImageManifest(ctx context.Context, name, reference string) (oci.Manifest, error) {
	d := reference

	if !strings.Contains(reference, ":") { // a tag (a tag cannot hold a colon)
		tag, ok, err := reg.imageTag(name, reference)
		if err != nil {
			return oci.Manifest{}, err
		}

		if !ok {
			return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
				Message: fmt.Sprintf("%s:%s is not an image of this cluster", name, reference)}
		}

		d = tag.Digest
	}

	return reg.manifestByDigest(ctx, d)
}

// ImageBlob serves a blob of an imported image (oci.Registry).
func (reg *Registry) ImageBlob(ctx context.Context, _, digest string) (frontends.Asset, error) {
	return reg.Blob(ctx, digest)
}

// ImageTags lists the tags of an imported image, sorted (oci.Registry).
func (reg *Registry) ImageTags(_ context.Context, name string) ([]string, error) {
	settings, err := reg.store.Settings(imageTagPrefix + name + ":")
	if err != nil {
		return nil, err
	}

	tags := make([]string, 0, len(settings))
	for key := range settings {
		tags = append(tags, strings.TrimPrefix(key, imageTagPrefix+name+":"))
	}

	if len(tags) == 0 {
		return nil, &oci.Error{Code: oci.CodeNameUnknown, Status: http.StatusNotFound,
			Message: name + " is not an image of this cluster"}
	}

	slices.Sort(tags)

	return tags, nil
}

// ImageReferrers lists what refers to a digest of an imported image (its signatures, attestations), as the
// bundle carried them (oci.Registry).
func (reg *Registry) ImageReferrers(_ context.Context, _, digest string) ([]oci.Descriptor, error) {
	raw, ok, err := reg.store.Setting(imageReferrersPrefix + digest)
	if err != nil || !ok {
		return nil, err
	}

	var refs []oci.Descriptor
	if err := json.Unmarshal(raw, &refs); err != nil {
		return nil, fmt.Errorf("stored referrers of %s: %w", digest, err)
	}

	return refs, nil
}

// imageTag reads what a tag of an imported image points at.
func (reg *Registry) imageTag(name, tag string) (ImageTag, bool, error) {
	raw, ok, err := reg.store.Setting(imageTagSetting(name, tag))
	if err != nil || !ok {
		return ImageTag{}, false, err
	}

	var t ImageTag
	if err := json.Unmarshal(raw, &t); err != nil {
		return ImageTag{}, false, fmt.Errorf("stored tag %s:%s: %w", name, tag, err)
	}

	return t, true, nil
}

// RecordBlob records that holder stores a blob of an imported image, so every member can find it.
func (reg *Registry) RecordBlob(ctx context.Context, b raftstore.Blob, holder string) error {
	if _, ok, _ := reg.store.Asset(sourceBlobKey(b.Digest)); ok {
		return nil
	}

	_, err := raftstore.PutAsset(ctx, reg.leader, raftstore.AssetRecord{Key: sourceBlobKey(b.Digest), Digest: b.Digest,
		Size: b.Size, MediaType: b.MediaType, Filename: strings.TrimPrefix(b.Digest, "sha256:"), Builder: holder,
		Created: time.Now().UTC()})

	return err
}

// RecordTag points a tag of an imported image at a manifest or index.
func (reg *Registry) RecordTag(ctx context.Context, name, tag string, t ImageTag) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}

	if old, ok, _ := reg.store.Setting(imageTagSetting(name, tag)); ok && string(old) == string(raw) {
		return nil
	}

	return raftstore.PutSetting(ctx, reg.leader, imageTagSetting(name, tag), raw)
}

// RecordReferrers records what refers to a digest of an imported image.
func (reg *Registry) RecordReferrers(ctx context.Context, digest string, refs []oci.Descriptor) error {
	raw, err := json.Marshal(refs)
	if err != nil {
		return err
	}

	return raftstore.PutSetting(ctx, reg.leader, imageReferrersPrefix+digest, raw)
}
