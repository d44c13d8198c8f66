// Package registry is the cluster as an OCI registry: installer images (an amd64 + arm64 index assembled from the
// installer tarballs the asset service builds, every blob stored and recorded so any member serves any of it),
// their cosign signatures (made once, kept as write-once records, replaced by a new generation only when lost
// cluster-wide), and the release's own source images read through a member from the upstream registry, cached
// and recorded so members serve them to each other when the upstream is gone.
//
// Guarantee: a manifest is served only whole and only under the digest its bytes hash to; an installer index once
// recorded keeps its digest (assembled again it must hash the same, or it is refused). It plans through the
// catalog, stores and fetches bytes through the asset service, and writes records through the leader.
package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sync/singleflight"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/node/internal/assets"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Planner turns requests into recipes (the catalog).
type Planner interface {
	Plan(ctx context.Context, schematicID, version, path string,
		parse func(string) (recipe.Asset, error)) (recipe.Recipe, error)
	// Image reports whether repo is an extension or overlay image of a known version.
	Image(repo string) bool
}

// Assets stores and finds bytes (the asset service).
type Assets interface {
	Complete(ctx context.Context, r recipe.Recipe) (*assets.Stored, error)
	Blob(ctx context.Context, digest string) (frontends.Asset, error)
	Has(digest string) bool
	Put(data []byte) (string, error)
	Ingest(rec raftstore.AssetRecord, origin string, body io.ReadCloser) *assets.Arrival
	Lost(digest string) bool
	Found(digest string)
	Drop(digest string) error
}

// Leader is the way to the Raft leader: writes from any member, and asset records this member may lack.
type Leader interface {
	raftstore.Applier
	AssetFromLeader(ctx context.Context, key string) (raftstore.AssetRecord, bool, error)
}

// Signer is the cluster's cosign key: nils while it has none yet.
type Signer interface {
	Current() (*signing.ECDSAKey, *ecdsa.PrivateKey)
}

// Upstream is where source images are read from.
type Upstream struct {
	Registry, Namespace string
	Insecure            bool // plain HTTP
	// Cluster: the cluster is its own upstream (--upstream-registry cluster): source images are the images an
	// air-gap bundle brought (ghcr.io/siderolabs/<name>), and nothing is read from outside the cluster.
	Cluster bool
}

// Config is what the registry is built on.
type Config struct {
	Self     string           // this member's name, recorded as the builder of what it assembles
	Store    *raftstore.Store // reads of the asset index and settings
	Leader   Leader
	Assets   Assets
	Planner  Planner
	Cosign   Signer
	Upstream Upstream
	// Members, Peers and Replicas place imported blobs on their holders; Trust checks imported images.
	Members  Members
	Peers    *peer.Client
	Replicas func() int
	Trust    release.Trust
	// Background is the member's lifetime: records written in the background end with it.
	Background context.Context //nolint:containedctx // a lifetime, not a request
	Logger     *slog.Logger
}

// Registry serves installer images, signatures and source images (oci.Registry).
type Registry struct {
	self     string
	store    *raftstore.Store
	leader   Leader
	assets   Assets
	planner  Planner
	cosign   Signer
	upstream Upstream
	members  Members
	peers    *peer.Client
	replicas func() int // the cluster setting in force
	trust    release.Trust
	bg       context.Context //nolint:containedctx // the member's lifetime
	log      *slog.Logger
	imports  importer

	flight singleflight.Group // per image or signature key: one assembly at a time on this member
}

// New makes the registry.
func New(cfg Config) *Registry {
	return &Registry{self: cfg.Self, store: cfg.Store, leader: cfg.Leader, assets: cfg.Assets, planner: cfg.Planner,
		cosign: cfg.Cosign, upstream: cfg.Upstream, members: cfg.Members, peers: cfg.Peers, replicas: cfg.Replicas,
		trust: cfg.Trust, bg: cfg.Background, log: cfg.Logger,
		imports: importer{sessions: map[string]*importSession{}}}
}

// objectKey is the asset key of a registry object: the sha256, in hex, of a line naming its kind and format
// version, then what identifies the object, in the bytes each kind has always written (keys are in Raft: a
// different byte would make every recorded object of the kind unknown).
func objectKey(kind string, parts ...[]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "edgefactory %s v1\n", kind)

	for _, p := range parts {
		h.Write(p)
	}

	return hex.EncodeToString(h.Sum(nil))
}

// installerKey is the asset key of an installer image: it covers the two tarball recipes it is made of.
func installerKey(image string, arches []recipe.Recipe) string {
	parts := [][]byte{[]byte(image + "\n")}
	for _, r := range arches {
		parts = append(parts, fmt.Appendf(nil, "%s %s\n", r.Asset.Arch, r.Key))
	}

	return objectKey("installer image", parts...)
}

// signatureKey is the asset key of generation gen of the signature of an index digest made with a public key.
// Generation 0 is the first signature (its key predates generations and is unchanged).
func signatureKey(indexDigest string, publicPEM []byte, gen int) string {
	parts := [][]byte{[]byte(indexDigest + "\n"), publicPEM}
	if gen > 0 {
		parts = append(parts, fmt.Appendf(nil, "\ngeneration %d\n", gen))
	}

	return objectKey("cosign signature", parts...)
}

// sourceBlobKey is the asset key of a cached source blob.
func sourceBlobKey(digest string) string { return objectKey("source blob", []byte(digest)) }
