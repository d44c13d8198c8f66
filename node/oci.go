package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/blang/semver/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Installer images (API.md §5): an OCI index of the amd64 and arm64 installer tarballs the asset service builds
// (each once, cluster-wide, by its owner), with every manifest, config and layer stored in the CAS and listed in an
// asset record, so any node can serve any blob of it. Assembling the index from the tarballs is deterministic, so
// the node that assembles it does not matter; the first committed record wins.

// installerKey is the asset key of an installer image: it covers the two tarball recipes it is made of.
func installerKey(image string, arches []recipe.Recipe) string {
	h := sha256.New()
	fmt.Fprintf(h, "edgefactory installer image v1\n%s\n", image)

	for _, r := range arches {
		fmt.Fprintf(h, "%s %s\n", r.Asset.Arch, r.Key)
	}

	return hex.EncodeToString(h.Sum(nil))
}

// installerArches are the platforms of every installer index, in index order.
var installerArches = []string{"amd64", "arm64"}

// InstallerManifest resolves a reference in an installer repository (oci.Registry).
func (n *Node) InstallerManifest(ctx context.Context, image, schematicID, reference string) (oci.Manifest, error) {
	platform, secureBoot, err := oci.ParseImage(image)
	if err != nil {
		return oci.Manifest{}, err
	}

	switch {
	case strings.HasPrefix(reference, "sha256:"):
		if !oci.ValidDigest(reference) {
			return oci.Manifest{}, &oci.Error{Code: oci.CodeDigestInvalid, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("invalid digest %q", reference)}
		}

		return n.manifestByDigest(ctx, reference)
	case strings.HasPrefix(reference, "sha256-") && strings.HasSuffix(reference, ".sig"):
		return n.signatureManifest(ctx, "sha256:"+strings.TrimSuffix(strings.TrimPrefix(reference, "sha256-"), ".sig"))
	case reference == "latest":
		if reference, err = n.latestStable(); err != nil {
			return oci.Manifest{}, err
		}
	}

	// Version tags carry the "v" (API.md §5.2): "1.13.0" is not a tag of these repositories.
	version, err := parseVersion(reference)
	if err != nil || !strings.HasPrefix(reference, "v") {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: fmt.Sprintf("tag %q is not a Talos version (vX.Y.Z, latest) or a signature tag", reference)}
	}

	rec, err := n.installerImage(ctx, image, platform, secureBoot, schematicID, "v"+version.String())
	if err != nil {
		return oci.Manifest{}, err
	}

	if _, err := n.signature(ctx, rec.Digest, image+"/"+schematicID); err != nil {
		n.log.Warn("installer image served unsigned for now", "image", image, "digest", rec.Digest, "error", err)
	}

	return n.manifestByDigest(ctx, rec.Digest)
}

// latestStable is the newest released (non-prerelease) version.
func (n *Node) latestStable() (string, error) {
	versions, err := n.store.Versions()
	if err != nil {
		return "", err
	}

	for i := len(versions) - 1; i >= 0; i-- {
		if v, err := semver.ParseTolerant(versions[i]); err == nil && len(v.Pre) == 0 {
			return versions[i], nil
		}
	}

	return "", &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
		Message: "no released Talos version is available for latest"}
}

// installerImage finds or assembles the installer index of a schematic and version.
func (n *Node) installerImage(ctx context.Context, image, platform string, secureBoot bool, schematicID,
	version string,
) (raftstore.AssetRecord, error) {
	sb := ""
	if secureBoot {
		sb = "-secureboot"
	}

	recipes := make([]recipe.Recipe, 0, len(installerArches))

	for _, arch := range installerArches {
		r, err := n.plan(ctx, schematicID, version, platform+"-installer-"+arch+sb+".tar", recipe.ParsePath)
		if err != nil {
			return raftstore.AssetRecord{}, err
		}

		recipes = append(recipes, r)
	}

	key := installerKey(image, recipes)

	if rec, ok, err := n.store.Asset(key); err != nil || ok {
		return rec, err
	}

	res, err, _ := n.assets.flight.Do("installer:"+key, func() (any, error) {
		return n.assembleInstaller(context.WithoutCancel(ctx), key, image+":"+version, recipes)
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	return res.(raftstore.AssetRecord), nil //nolint:forcetypeassert // assembleInstaller returns records
}

// assembleInstaller builds the index from the per-architecture installer tarballs and commits its record.
func (n *Node) assembleInstaller(ctx context.Context, key, name string, recipes []recipe.Recipe) (raftstore.AssetRecord, error) {
	start := time.Now()

	var (
		manifests []map[string]any
		blobs     []raftstore.Blob
	)

	for _, r := range recipes {
		desc, parts, err := n.storeInstallerTarball(ctx, r)
		if err != nil {
			return raftstore.AssetRecord{}, fmt.Errorf("installer image %s (%s): %w", name, r.Asset.Arch, err)
		}

		manifests = append(manifests, desc)
		blobs = append(blobs, parts...)
	}

	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIIndex,
		"manifests":     manifests,
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	digest, err := n.putBytes(index)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	res, err := n.apply(ctx, raftstore.Command{V: raftstore.CommandVersion, Op: raftstore.OpPutAsset,
		Asset: &raftstore.AssetRecord{
			Key: key, Digest: digest, Size: int64(len(index)), MediaType: oci.MediaTypeOCIIndex, Filename: name,
			Builder: n.cfg.NodeName, Created: time.Now().UTC(), Blobs: blobs,
		}})
	if err != nil {
		return raftstore.AssetRecord{}, fmt.Errorf("record installer image %s: %w", name, err)
	}

	n.log.Info("installer image assembled", "image", name, "index", res.Asset.Digest,
		"duration", time.Since(start).Round(time.Millisecond))

	return *res.Asset, nil
}

// storeInstallerTarball stores the manifest, config and layers of one installer tarball in the CAS and returns the
// index entry for it and the blobs it added.
func (n *Node) storeInstallerTarball(ctx context.Context, r recipe.Recipe) (map[string]any, []raftstore.Blob, error) {
	a, err := n.assets.complete(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()

	file := a.blob.File()
	img, err := tarball.Image(func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(file, 0, a.Size())), nil
	}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read installer tarball: %w", err)
	}

	manifest, err := img.RawManifest()
	if err != nil {
		return nil, nil, err
	}

	mediaType, err := img.MediaType()
	if err != nil {
		return nil, nil, err
	}

	config, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, err
	}

	layers, err := img.Layers()
	if err != nil {
		return nil, nil, err
	}

	var blobs []raftstore.Blob

	for _, l := range layers {
		b, err := n.putLayer(l)
		if err != nil {
			return nil, nil, err
		}

		blobs = append(blobs, b)
	}

	configDigest, err := n.putBytes(config)
	if err != nil {
		return nil, nil, err
	}

	manifestDigest, err := n.putBytes(manifest)
	if err != nil {
		return nil, nil, err
	}

	cfgFile, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}

	blobs = append(blobs,
		raftstore.Blob{Digest: configDigest, Size: int64(len(config)), MediaType: "application/vnd.docker.container.image.v1+json"},
		raftstore.Blob{Digest: manifestDigest, Size: int64(len(manifest)), MediaType: string(mediaType)})

	return map[string]any{
		"mediaType": string(mediaType),
		"digest":    manifestDigest,
		"size":      len(manifest),
		"platform":  map[string]string{"os": "linux", "architecture": cfgFile.Architecture},
	}, blobs, nil
}

// putLayer stores a layer's compressed bytes, verified against its digest.
func (n *Node) putLayer(l v1.Layer) (raftstore.Blob, error) {
	d, err := l.Digest()
	if err != nil {
		return raftstore.Blob{}, err
	}

	size, err := l.Size()
	if err != nil {
		return raftstore.Blob{}, err
	}

	mt, err := l.MediaType()
	if err != nil {
		return raftstore.Blob{}, err
	}

	b := raftstore.Blob{Digest: d.String(), Size: size, MediaType: string(mt)}
	if n.cas.Has(b.Digest) {
		return b, nil
	}

	rc, err := l.Compressed()
	if err != nil {
		return raftstore.Blob{}, err
	}
	defer rc.Close()

	w, err := n.cas.Create(b.Digest, size)
	if err != nil {
		return raftstore.Blob{}, err
	}
	defer w.Abort()

	if _, err := io.Copy(w, rc); err != nil {
		return raftstore.Blob{}, fmt.Errorf("store layer %s: %w", b.Digest, err)
	}

	if _, _, err := w.Commit(); err != nil {
		return raftstore.Blob{}, fmt.Errorf("store layer %s: %w", b.Digest, err)
	}

	return b, nil
}

// putBytes stores a small blob (manifest, config) and returns its digest.
func (n *Node) putBytes(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	if n.cas.Has(digest) {
		return digest, nil
	}

	w, err := n.cas.Create(digest, int64(len(data)))
	if err != nil {
		return "", err
	}
	defer w.Abort()

	if _, err := w.Write(data); err != nil {
		return "", err
	}

	if _, _, err := w.Commit(); err != nil {
		return "", fmt.Errorf("store %s: %w", digest, err)
	}

	return digest, nil
}

// manifestByDigest serves a manifest or index of the cluster by digest, from here or from a member that has it.
func (n *Node) manifestByDigest(ctx context.Context, digest string) (oci.Manifest, error) {
	a, err := n.Blob(ctx, digest)
	if err != nil {
		var e *oci.Error
		if errors.As(err, &e) && e.Code == oci.CodeBlobUnknown {
			e.Code, e.Message = oci.CodeManifestUnknown, "manifest "+digest+" is unknown"
		}

		return oci.Manifest{}, err
	}
	defer a.Close()

	body, err := io.ReadAll(io.LimitReader(a.Content(), 4<<20))
	if err != nil {
		return oci.Manifest{}, fmt.Errorf("read manifest %s: %w", digest, err)
	}

	mediaType := a.MediaType()
	if !strings.Contains(mediaType, "manifest") && !strings.Contains(mediaType, "index") {
		var probe struct{ MediaType string }
		if json.Unmarshal(body, &probe) != nil || probe.MediaType == "" {
			return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
				Message: digest + " is not a manifest"}
		}

		mediaType = probe.MediaType
	}

	return oci.Manifest{Body: body, MediaType: mediaType, Digest: digest}, nil
}

// Blob returns any blob the cluster knows by digest: stored here, or fetched (verified, with a copy kept) from the
// members holding the asset it belongs to.
func (n *Node) Blob(ctx context.Context, digest string) (frontends.Asset, error) {
	if !oci.ValidDigest(digest) {
		return nil, &oci.Error{Code: oci.CodeDigestInvalid, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("invalid digest %q", digest)}
	}

	rec, known, err := n.store.AssetByDigest(digest)
	if err != nil {
		return nil, err
	}

	part, _ := rec.Find(digest)
	want := raftstore.AssetRecord{Key: rec.Key, Digest: digest, Size: part.Size, MediaType: part.MediaType,
		Builder: rec.Builder, Filename: strings.TrimPrefix(digest, "sha256:")}

	if a, err := n.assets.local(want); err == nil {
		if !known {
			a.rec.Size = a.blob.Size()
		}

		return a, nil
	} else if !errors.Is(err, errMiss) {
		return nil, err
	}

	if known {
		if t := n.assets.fetch(want, n.assets.sources(rec.Key, rec)); t != nil {
			return n.assets.attach(ctx, t)
		}
	}

	return nil, &oci.Error{Code: oci.CodeBlobUnknown, Status: http.StatusNotFound,
		Message: "blob " + digest + " is unknown to this cluster"}
}
