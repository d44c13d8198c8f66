package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/node/internal/cluster"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Source images (docs/api.md §5.5): the release's own images, read through this node from the upstream registry and
// kept in the CAS. Every blob and tag this node caches is recorded in Raft, so in an isolated site (upstream gone)
// members serve them to each other.

// sourceComponents are the release images served under /v2/siderolabs/<name>; extension and overlay images listed
// in a version's catalog are served too.
var sourceComponents = []string{"installer-base", "installer", "imager", "extensions", "overlays", "talosctl-all"}

// upstreamCachedTimeout bounds the upstream lookup of a source tag the cluster has an answer for.
var upstreamCachedTimeout = 5 * time.Second

// sourceTagSetting names the Raft setting remembering what a source tag pointed at (tags move; the newest wins).
func sourceTagSetting(repo, tag string) string { return "source-tag/" + repo + ":" + tag }

type sourceTag struct {
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

// releaseOrigin is the registry Talos releases are published in: a source image siderolabs/<name> is
// ghcr.io/siderolabs/<name>, the name an air-gap bundle keeps it under.
const releaseOrigin = "ghcr.io"

// sourcePath is where siderolabs/<name> lives in the upstream registry (under the configured namespace for the
// release's components), or NAME_UNKNOWN.
func (reg *Registry) sourcePath(repo string) (string, error) {
	rest := strings.TrimPrefix(repo, "siderolabs/")

	switch {
	case slices.Contains(sourceComponents, rest):
		return reg.upstream.Namespace + "/" + rest, nil
	case reg.planner.Image(repo):
		return repo, nil
	default:
		return "", &oci.Error{Code: oci.CodeNameUnknown, Status: http.StatusNotFound,
			Message: fmt.Sprintf("%s is not a source image of this factory", repo)}
	}
}

// imported is the imported image a source repository reads from when the cluster is its own upstream
// (Upstream.Cluster): ok is false otherwise.
func (reg *Registry) imported(repo string) (string, bool, error) {
	if !reg.upstream.Cluster {
		return "", false, nil
	}

	if _, err := reg.sourcePath(repo); err != nil {
		return "", false, err
	}

	return releaseOrigin + "/" + repo, true, nil
}

// upstreamRepo maps siderolabs/<name> to its repository in the upstream registry, or fails with NAME_UNKNOWN.
func (reg *Registry) upstreamRepo(repo string) (name.Repository, error) {
	path, err := reg.sourcePath(repo)
	if err != nil {
		return name.Repository{}, err
	}

	var opts []name.Option
	if reg.upstream.Insecure {
		opts = append(opts, name.Insecure)
	}

	return name.NewRepository(reg.upstream.Registry+"/"+path, opts...)
}

func (reg *Registry) upstreamOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx)}
}

// SourceManifest resolves a tag or digest of a source image (oci.Registry).
func (reg *Registry) SourceManifest(ctx context.Context, repo, reference string) (oci.Manifest, error) {
	if name, ok, err := reg.imported(repo); ok || err != nil {
		if err != nil {
			return oci.Manifest{}, err
		}

		return reg.ImageManifest(ctx, name, reference)
	}

	upstream, err := reg.upstreamRepo(repo)
	if err != nil {
		return oci.Manifest{}, err
	}

	// A reference with a colon is a digest (a tag cannot hold one). Only canonical sha256 digests are served: any
	// other is refused before the cluster or the upstream is asked (an unchecked one would be fetched as a tag,
	// unverified, and served under a sha256 digest it was never checked against).
	if strings.Contains(reference, ":") {
		if !oci.ValidDigest(reference) {
			return oci.Manifest{}, &oci.Error{Code: oci.CodeDigestInvalid, Status: http.StatusBadRequest,
				Message: fmt.Sprintf("invalid digest %q: want sha256:<64 lowercase hex digits>", reference)}
		}

		if m, err := reg.manifestByDigest(ctx, reference); err == nil {
			return m, nil
		}

		m, err := reg.upstreamManifest(ctx, upstream.Digest(reference), repo, "")
		if err != nil {
			return oci.Manifest{}, sourceError(err, oci.CodeManifestUnknown)
		}

		return m, nil
	}

	// With a cached answer to fall back on, an upstream that does not answer promptly (an isolated site whose
	// firewall drops packets, a registry that accepts and stalls) must not hold the request: remote.Get has no
	// timeout of its own.
	upstreamCtx := ctx

	if _, cached, _ := reg.store.Setting(sourceTagSetting(repo, reference)); cached {
		var cancel context.CancelFunc

		upstreamCtx, cancel = context.WithTimeout(ctx, upstreamCachedTimeout)
		defer cancel()
	}

	m, err := reg.upstreamManifest(upstreamCtx, upstream.Tag(reference), repo, reference)
	if err == nil {
		return m, nil
	}

	// The upstream is unreachable (or lost the tag): serve what the cluster last saw under this tag.
	raw, ok, serr := reg.store.Setting(sourceTagSetting(repo, reference))
	if serr != nil || !ok {
		return oci.Manifest{}, sourceError(err, oci.CodeManifestUnknown)
	}

	var tag sourceTag
	if json.Unmarshal(raw, &tag) != nil {
		return oci.Manifest{}, sourceError(err, oci.CodeManifestUnknown)
	}

	reg.log.Warn("upstream registry unavailable: serving the cached manifest", "repo", repo, "tag", reference,
		"digest", tag.Digest, "error", err)

	return reg.manifestByDigest(ctx, tag.Digest)
}

// sourceError presents an upstream failure: what the upstream does not have stays a 404 with notFound's code,
// anything else (it cannot be reached, refuses, rate-limits, fails) is a 503.
func sourceError(err error, notFound string) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return &oci.Error{Code: notFound, Status: http.StatusNotFound, Message: "upstream registry: " + err.Error()}
	}

	return &oci.Error{Code: oci.CodeUnavailable, Status: http.StatusServiceUnavailable,
		Message: "upstream registry: " + err.Error()}
}

// upstreamManifest fetches a manifest from the upstream registry, stores it, and records where it is.
func (reg *Registry) upstreamManifest(ctx context.Context, ref name.Reference, repo, tag string) (oci.Manifest, error) {
	desc, err := remote.Get(ref, reg.upstreamOptions(ctx)...)
	if err != nil {
		return oci.Manifest{}, err
	}

	digest, err := reg.assets.Put(desc.Manifest)
	if err != nil {
		return oci.Manifest{}, err
	}

	if digest != desc.Digest.String() {
		return oci.Manifest{}, fmt.Errorf("upstream manifest of %s hashes to %s, not %s", ref, digest, desc.Digest)
	}

	m := oci.Manifest{Body: desc.Manifest, MediaType: string(desc.MediaType), Digest: digest}
	reg.recordSource(ctx, raftstore.Blob{Digest: digest, Size: int64(len(desc.Manifest)), MediaType: m.MediaType})

	if tag != "" {
		value, _ := json.Marshal(sourceTag{Digest: digest, MediaType: m.MediaType, Size: int64(len(desc.Manifest))}) //nolint:errchkjson // fixed shape
		if old, ok, _ := reg.store.Setting(sourceTagSetting(repo, tag)); !ok || string(old) != string(value) {
			go func() {
				ctx, cancel := context.WithTimeout(reg.bg, cluster.WriteDeadline)
				defer cancel()

				if err := raftstore.PutSetting(ctx, reg.leader, sourceTagSetting(repo, tag), value); err != nil {
					reg.log.Warn("could not record a source tag", "repo", repo, "tag", tag, "error", err)
				}
			}()
		}
	}

	return m, nil
}

// recordSource records (in the background) that this node holds a source blob, so members can find it.
func (reg *Registry) recordSource(ctx context.Context, b raftstore.Blob) {
	key := sourceBlobKey(b.Digest)
	if _, ok, _ := reg.store.Asset(key); ok {
		return
	}

	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cluster.WriteDeadline)
		defer cancel()

		if _, err := raftstore.PutAsset(ctx, reg.leader, raftstore.AssetRecord{Key: key, Digest: b.Digest,
			Size: b.Size, MediaType: b.MediaType, Filename: strings.TrimPrefix(b.Digest, "sha256:"),
			Builder: reg.self, Created: time.Now().UTC(),
		}); err != nil {
			reg.log.Warn("could not record a cached source blob", "digest", b.Digest, "error", err)
		}
	}()
}

// SourceBlob serves a blob of a source image: from here, from the upstream registry (streamed to the client while
// a verified copy is kept), or from members when the upstream is unreachable (oci.Registry).
func (reg *Registry) SourceBlob(ctx context.Context, repo, digest string) (frontends.Asset, error) {
	if name, ok, err := reg.imported(repo); ok || err != nil {
		if err != nil {
			return nil, err
		}

		return reg.ImageBlob(ctx, name, digest)
	}

	upstream, err := reg.upstreamRepo(repo)
	if err != nil {
		return nil, err
	}

	a, err := reg.Blob(ctx, digest)
	if err == nil {
		return a, nil
	}

	var invalid *oci.Error
	if errors.As(err, &invalid) && invalid.Code == oci.CodeDigestInvalid {
		return nil, err
	}

	// Size asks with HEAD and Compressed with GET: an upstream may answer one and fail the other (rate limits,
	// errors, resets), so each failure is presented on its own.
	layer, err := remote.Layer(upstream.Digest(digest), reg.upstreamOptions(context.WithoutCancel(ctx))...)
	if err != nil {
		return nil, sourceError(err, oci.CodeBlobUnknown)
	}

	size, err := layer.Size()
	if err != nil {
		return nil, sourceError(err, oci.CodeBlobUnknown)
	}

	body, err := layer.Compressed()
	if err != nil {
		return nil, sourceError(err, oci.CodeBlobUnknown)
	}

	rec := raftstore.AssetRecord{Key: sourceBlobKey(digest), Digest: digest, Size: size,
		MediaType: "application/octet-stream", Filename: strings.TrimPrefix(digest, "sha256:")}
	arrival := reg.assets.Ingest(rec, "upstream", body)

	go func() {
		if arrival.Stored(reg.bg) == nil {
			reg.recordSource(reg.bg, raftstore.Blob{Digest: digest, Size: size, MediaType: rec.MediaType})
		}
	}()

	return arrival.Asset(ctx)
}

// SourceTags lists a source image's tags from the upstream registry (oci.Registry).
func (reg *Registry) SourceTags(ctx context.Context, repo string) ([]string, error) {
	if name, ok, err := reg.imported(repo); ok || err != nil {
		if err != nil {
			return nil, err
		}

		return reg.ImageTags(ctx, name)
	}

	upstream, err := reg.upstreamRepo(repo)
	if err != nil {
		return nil, err
	}

	tags, err := remote.List(upstream, reg.upstreamOptions(ctx)...)
	if err != nil {
		return nil, sourceError(err, oci.CodeNameUnknown)
	}

	return tags, nil
}
