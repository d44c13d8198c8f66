package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/blang/semver/v4"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/imager/recipe"
	digests "github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/node/internal/assets"
	"github.com/edgefactory/edgefactory/node/internal/catalog"
)

// Installer images (docs/api.md §5): an OCI index of the amd64 and arm64 installer tarballs the asset service builds
// (each once, cluster-wide, by its owner), with every manifest, config and layer stored in the CAS and listed in an
// asset record, so any node can serve any blob of it. Assembling the index from the tarballs is deterministic, so
// the node that assembles it does not matter; the first committed record wins.

// installerArches are the platforms of every installer index, in index order.
var installerArches = []string{"amd64", "arm64"}

// InstallerManifest resolves a reference in an installer repository (oci.Registry).
func (reg *Registry) InstallerManifest(ctx context.Context, image, schematicID, reference string) (oci.Manifest, error) {
	platform, secureBoot, err := oci.ParseImage(image)
	if err != nil {
		return oci.Manifest{}, err
	}

	switch {
	case strings.Contains(reference, ":"): // a digest: a tag cannot hold a colon
		if !oci.ValidDigest(reference) {
			return oci.Manifest{}, &oci.Error{Code: oci.CodeDigestInvalid, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("invalid digest %q", reference)}
		}

		return reg.manifestByDigest(ctx, reference)
	case strings.HasPrefix(reference, "sha256-") && strings.HasSuffix(reference, ".sig"):
		return reg.signatureManifest(ctx, "sha256:"+strings.TrimSuffix(strings.TrimPrefix(reference, "sha256-"), ".sig"),
			image+"/"+schematicID)
	case reference == "latest":
		if reference, err = reg.latestStable(); err != nil {
			return oci.Manifest{}, err
		}
	}

	// Version tags carry the "v" (docs/api.md §5.2): "1.13.0" is not a tag of these repositories.
	version, err := catalog.ParseVersion(reference)
	if err != nil || !strings.HasPrefix(reference, "v") {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: fmt.Sprintf("tag %q is not a Talos version (vX.Y.Z, latest) or a signature tag", reference)}
	}

	p, err := reg.planInstaller(ctx, image, platform, secureBoot, schematicID, "v"+version.String())
	if err != nil {
		return oci.Manifest{}, err
	}

	rec, err := reg.installerImage(ctx, p, false)
	if err != nil {
		return oci.Manifest{}, err
	}

	if _, _, err := reg.signature(ctx, rec.Digest, image+"/"+schematicID, true); err != nil {
		reg.log.Warn("installer image served unsigned for now", "image", image, "digest", rec.Digest, "error", err)
	}

	m, err := reg.manifestByDigest(ctx, rec.Digest)
	if err == nil || ctx.Err() != nil {
		return m, err
	}

	// No member could deliver the index (they lost it, or are gone): assemble it again. It is made from the
	// tarballs, which are reproducible, so it gets the recorded digest back, or is refused.
	reg.log.Warn("installer index unreadable: assembling it again", "image", p.name, "index", rec.Digest, "error", err)

	if rec, err = reg.installerImage(ctx, p, true); err != nil {
		return oci.Manifest{}, err
	}

	return reg.manifestByDigest(ctx, rec.Digest)
}

// latestStable is the newest released (non-prerelease) version.
func (reg *Registry) latestStable() (string, error) {
	versions, err := reg.store.Versions()
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

// installerPlan is what an installer image is made of: the per-architecture tarball recipes, and the asset key and
// name they give it.
type installerPlan struct {
	key, name string
	recipes   []recipe.Recipe
}

// planInstaller plans the installer image of a schematic and version.
func (reg *Registry) planInstaller(ctx context.Context, image, platform string, secureBoot bool, schematicID,
	version string,
) (installerPlan, error) {
	sb := ""
	if secureBoot {
		sb = "-secureboot"
	}

	recipes := make([]recipe.Recipe, 0, len(installerArches))

	for _, arch := range installerArches {
		r, err := reg.planner.Plan(ctx, schematicID, version, platform+"-installer-"+arch+sb+".tar", recipe.ParsePath)
		if err != nil {
			return installerPlan{}, err
		}

		recipes = append(recipes, r)
	}

	return installerPlan{key: installerKey(image, recipes), name: image + ":" + version, recipes: recipes}, nil
}

// maxManifestSize is the largest manifest served: go-containerregistry's own limit (remote's manifestLimit), so
// every manifest the upstream path can fetch and store is served whole.
const maxManifestSize = 100 << 20

// manifestByDigest serves a manifest or index of the cluster by digest, from here or from a member that has it.
func (reg *Registry) manifestByDigest(ctx context.Context, digest string) (oci.Manifest, error) {
	// Manifests are served from memory, whole and checked: a body that does not hash to its digest is never
	// answered under it. Nothing larger than maxManifestSize can be a manifest this cluster stored.
	body, mediaType, err := reg.readBlob(ctx, digest, maxManifestSize)
	if err != nil {
		var e *oci.Error
		if errors.As(err, &e) && e.Code == oci.CodeBlobUnknown {
			e.Code, e.Message = oci.CodeManifestUnknown, "manifest "+digest+" is unknown"
		}

		return oci.Manifest{}, err
	}

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

// readBlob reads a blob of at most limit bytes the cluster knows by digest, whole, and checks it hashes to its
// digest. It returns the bytes and the media type recorded for them.
func (reg *Registry) readBlob(ctx context.Context, digest string, limit int64) ([]byte, string, error) {
	a, err := reg.Blob(ctx, digest)
	if err != nil {
		return nil, "", err
	}
	defer a.Close()

	if a.Size() > limit {
		return nil, "", &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: fmt.Sprintf("%s is not a manifest: it is %d bytes, more than the %d MiB a manifest may be",
				digest, a.Size(), limit>>20)}
	}

	body, err := io.ReadAll(io.LimitReader(a.Content(), limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", digest, err)
	}

	if got := digests.Of(body); got != digest || int64(len(body)) != a.Size() {
		return nil, "", fmt.Errorf("read %s: got %d bytes hashing to %s, want %d bytes", digest, len(body), got,
			a.Size())
	}

	return body, a.MediaType(), nil
}

// Blob returns any blob the cluster knows by digest (oci.Registry): stored here, or fetched (verified, with a copy
// kept) from the members holding the asset it belongs to.
func (reg *Registry) Blob(ctx context.Context, d string) (frontends.Asset, error) {
	a, err := reg.assets.Blob(ctx, d)

	switch {
	case errors.Is(err, digests.ErrInvalid):
		return nil, &oci.Error{Code: oci.CodeDigestInvalid, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("invalid digest %q", d)}
	case errors.Is(err, assets.ErrUnknownBlob):
		return nil, &oci.Error{Code: oci.CodeBlobUnknown, Status: http.StatusNotFound,
			Message: "blob " + d + " is unknown to this cluster"}
	}

	return a, err
}
