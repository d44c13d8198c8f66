// Package oci serves the pull side of the OCI distribution spec (docs/api.md §5): installer images generated per
// schematic under /v2/<image>/<schematic>, the Talos release's source images under /v2/siderolabs/…, the referrers
// API, and the cosign public key. Errors use the distribution spec's JSON envelope. It is wire format only: the node
// behind the Registry interface finds, builds and fetches the bytes.
package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/internal/digest"
)

// Manifest is a manifest (or index) as served: its bytes, media type and digest.
type Manifest struct {
	Body      []byte
	MediaType string
	Digest    string
}

// Registry is what the OCI frontend needs from the node.
type Registry interface {
	// InstallerManifest resolves reference (a Talos version tag, "latest", a digest, or a cosign signature tag
	// "sha256-<hex>.sig") in the installer repository image/schematicID, building the image on a cold request.
	InstallerManifest(ctx context.Context, image, schematicID, reference string) (Manifest, error)
	// Blob returns any blob of the cluster's installer images by digest.
	Blob(ctx context.Context, digest string) (frontends.Asset, error)
	// Referrers lists the manifests that refer to digest in an installer repository.
	Referrers(ctx context.Context, image, schematicID, digest string) ([]Descriptor, error)
	// SourceManifest, SourceBlob and SourceTags read a source image (siderolabs/<name>) through this node: from the
	// upstream registry, cached, and from other members when the upstream is unreachable.
	SourceManifest(ctx context.Context, repo, reference string) (Manifest, error)
	SourceBlob(ctx context.Context, repo, digest string) (frontends.Asset, error)
	SourceTags(ctx context.Context, repo string) ([]string, error)
	// CosignPublicKey is the PEM public key installer image signatures verify with.
	CosignPublicKey(ctx context.Context) ([]byte, error)
	// ImageManifest, ImageBlob, ImageTags and ImageReferrers read an image the cluster holds under its full
	// original name (imported from a bundle: registry.k8s.io/pause), from this member or the members that hold
	// its blobs; never from outside the cluster.
	ImageManifest(ctx context.Context, name, reference string) (Manifest, error)
	ImageBlob(ctx context.Context, name, digest string) (frontends.Asset, error)
	ImageTags(ctx context.Context, name string) ([]string, error)
	ImageReferrers(ctx context.Context, name, digest string) ([]Descriptor, error)
}

// Descriptor is an OCI content descriptor (as listed by the referrers API).
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// OCI holds what the handlers need.
type OCI struct {
	Registry   Registry
	Schematics frontends.Schematics
	Logger     *slog.Logger
}

// Mount registers /v2 and the cosign key route.
func (o *OCI) Mount(r chi.Router) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	r.Get("/v2", o.ping)
	r.Get("/v2/", o.ping)
	r.Get("/v2/*", o.route)
	r.Get("/oci/cosign/signing-key.pub", o.publicKey)
}

func (o *OCI) ping(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(http.StatusOK)
}

func (o *OCI) publicKey(w http.ResponseWriter, r *http.Request) {
	pem, err := o.Registry.CosignPublicKey(r.Context())
	if err != nil {
		frontends.WriteError(w, r, o.Logger, err)

		return
	}

	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pem) //nolint:errcheck // the client hung up
}

// route dispatches a /v2/<repository>/<resource>/<reference> path (docs/api.md §5.1).
func (o *OCI) route(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")

	rt, err := ParseMirrored(chi.URLParam(r, "*"), r.URL.Query().Get("ns"))
	if err != nil {
		writeError(w, r, o.Logger, err)

		return
	}

	switch {
	case rt.Imported:
		o.imported(w, r, rt)
	case rt.Source:
		o.source(w, r, rt)
	default:
		o.installer(w, r, rt)
	}
}

func (o *OCI) installer(w http.ResponseWriter, r *http.Request, rt Route) {
	ctx := r.Context()

	// The schematic first: an unknown one is NAME_UNKNOWN whatever else is asked; a lookup that cannot be
	// confirmed (no Raft leader) is UNAVAILABLE, which clients retry.
	if _, err := o.Schematics.Schematic(ctx, rt.Schematic); err != nil {
		writeError(w, r, o.Logger, defaultCode(err, CodeNameUnknown))

		return
	}

	if _, _, err := ParseImage(rt.Image); err != nil {
		writeError(w, r, o.Logger, err)

		return
	}

	switch rt.Resource {
	case ResourceManifests:
		m, err := o.Registry.InstallerManifest(ctx, rt.Image, rt.Schematic, rt.Reference)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeManifestUnknown))

			return
		}

		serveManifest(w, r, m)
	case ResourceBlobs:
		o.blob(w, r, rt.Reference, func() (frontends.Asset, error) { return o.Registry.Blob(ctx, rt.Reference) })
	case ResourceReferrers:
		refs, err := o.Registry.Referrers(ctx, rt.Image, rt.Schematic, rt.Reference)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeManifestUnknown))

			return
		}

		serveReferrers(w, r, refs)
	default:
		writeError(w, r, o.Logger, &Error{Code: CodeUnsupported, Status: http.StatusNotFound,
			Message: "tag listing is not supported for generated installer repositories"})
	}
}

func (o *OCI) source(w http.ResponseWriter, r *http.Request, rt Route) {
	ctx := r.Context()

	switch rt.Resource {
	case ResourceManifests:
		m, err := o.Registry.SourceManifest(ctx, rt.Repository, rt.Reference)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeManifestUnknown))

			return
		}

		serveManifest(w, r, m)
	case ResourceBlobs:
		o.blob(w, r, rt.Reference, func() (frontends.Asset, error) {
			return o.Registry.SourceBlob(ctx, rt.Repository, rt.Reference)
		})
	case ResourceTags:
		tags, err := o.Registry.SourceTags(ctx, rt.Repository)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeNameUnknown))

			return
		}

		serveTags(w, rt.Repository, tags)
	case ResourceReferrers:
		serveReferrers(w, r, nil)
	}
}

// imported serves an image the cluster holds under its full name.
func (o *OCI) imported(w http.ResponseWriter, r *http.Request, rt Route) {
	ctx := r.Context()

	switch rt.Resource {
	case ResourceManifests:
		m, err := o.Registry.ImageManifest(ctx, rt.Repository, rt.Reference)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeManifestUnknown))

			return
		}

		serveManifest(w, r, m)
	case ResourceBlobs:
		o.blob(w, r, rt.Reference, func() (frontends.Asset, error) {
			return o.Registry.ImageBlob(ctx, rt.Repository, rt.Reference)
		})
	case ResourceTags:
		tags, err := o.Registry.ImageTags(ctx, rt.Repository)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeNameUnknown))

			return
		}

		serveTags(w, rt.Repository, tags)
	case ResourceReferrers:
		refs, err := o.Registry.ImageReferrers(ctx, rt.Repository, rt.Reference)
		if err != nil {
			writeError(w, r, o.Logger, defaultCode(err, CodeManifestUnknown))

			return
		}

		serveReferrers(w, r, refs)
	}
}

func (o *OCI) blob(w http.ResponseWriter, r *http.Request, digest string, get func() (frontends.Asset, error)) {
	a, err := get()
	if err != nil {
		writeError(w, r, o.Logger, defaultCode(err, CodeBlobUnknown))

		return
	}
	defer a.Close()

	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", a.Digest())
	w.Header().Set("ETag", `"`+a.Digest()+`"`)
	frontends.ServeAsset(w, r, a)
}

func serveManifest(w http.ResponseWriter, r *http.Request, m Manifest) {
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", m.Digest)
	h.Set("ETag", `"`+m.Digest+`"`)
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)

	if r.Method != http.MethodHead {
		w.Write(m.Body) //nolint:errcheck // the client hung up
	}
}

// serveReferrers answers the referrers API: an OCI index of the referring manifests, filtered by ?artifactType=.
func serveReferrers(w http.ResponseWriter, r *http.Request, refs []Descriptor) {
	filtered := []Descriptor{}

	at := r.URL.Query().Get("artifactType")
	for _, d := range refs {
		if at == "" || d.ArtifactType == at {
			filtered = append(filtered, d)
		}
	}

	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}

	body, _ := json.Marshal(struct { //nolint:errchkjson // a fixed shape always marshals
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, filtered})

	serveManifest(w, r, Manifest{Body: body, MediaType: MediaTypeOCIIndex, Digest: digest.Of(body)})
}

// Media types served here.
const (
	MediaTypeOCIIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
)

// Error codes of the distribution spec.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeUnsupported     = "UNSUPPORTED"
	CodeUnavailable     = "UNAVAILABLE"
)

// Error is a registry error with its distribution-spec code.
type Error struct {
	Code    string
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// defaultCode gives an error without a registry code the code a failed operation of its class means here.
func defaultCode(err error, notFound string) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}

	switch frontends.Classify(err) {
	case frontends.ClassNotFound:
		return &Error{Code: notFound, Status: http.StatusNotFound, Message: err.Error()}
	case frontends.ClassInvalid:
		code := CodeNameInvalid
		if notFound == CodeBlobUnknown {
			code = CodeDigestInvalid
		}

		return &Error{Code: code, Status: http.StatusBadRequest, Message: err.Error()}
	case frontends.ClassUnavailable:
		return &Error{Code: CodeUnavailable, Status: http.StatusServiceUnavailable, Message: err.Error()}
	case frontends.ClassNoSpace:
		return &Error{Code: CodeUnavailable, Status: http.StatusInsufficientStorage,
			Message: "this member's data disk is full: " + err.Error()}
	default:
		return err
	}
}

// writeError answers with the distribution spec's JSON envelope ({"errors":[{"code","message"}]}).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		if frontends.Classify(err) == frontends.ClassCanceled {
			return
		}

		log.Error("registry request failed", "request_id", frontends.RequestID(r.Context()), "path", r.URL.Path,
			"error", err)
		e = &Error{Code: "UNKNOWN", Status: http.StatusInternalServerError,
			Message: fmt.Sprintf("%v (request ID %s)", err, frontends.RequestID(r.Context()))}
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)

	if r.Method == http.MethodHead {
		return
	}

	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck,errchkjson // the client hung up
		"errors": []map[string]string{{"code": e.Code, "message": e.Message}},
	})
}

func trimSlashes(s string) string { return strings.Trim(s, "/") }

// serveTags answers a tags/list request.
func serveTags(w http.ResponseWriter, repository string, tags []string) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct { //nolint:errcheck,errchkjson // the client hung up
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repository, tags})
}
