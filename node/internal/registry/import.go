package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Importing a bundle (frontends/imports says the protocol): the blobs the cluster lacks arrive on this member and
// are checked against their digests; at commit every image is checked whole, then the blobs go to their holders on
// the ring (R copies, each verified on arrival) and the images are recorded. A refused commit drops what the session
// brought: the cluster keeps nothing of a bundle it refuses.

// spreadParallel bounds the blobs an import commit places at once.
const spreadParallel = 8

// sessionTTL forgets an import session nobody committed.
const sessionTTL = time.Hour

// Members places blobs on the ring and reaches the members holding them.
type Members interface {
	Self() string
	Holders(key string, n int) []string
	PeerURL(name string) (string, bool)
}

// importSession is what one import brought to this member.
type importSession struct {
	started time.Time
	blobs   map[string]int64 // digest → size, every blob stored by this session
	refused error            // why the bundle was refused; its blobs still arriving are dropped
	// dropping is held while what the session brought is deleted, and taken before refused is set: whoever
	// learns of the refusal waits for the deletion, so a client told "refused" finds nothing left.
	dropping sync.Mutex
}

// importer holds the sessions open on this member.
type importer struct {
	mu       sync.Mutex
	sessions map[string]*importSession
}

// errImport marks a refusal of the bundle's content: the client's problem (400), named.
type errImport struct{ msg string }

func (e *errImport) Error() string { return e.msg }
func (e *errImport) Invalid() bool { return true }

func refuse(format string, args ...any) error { return &errImport{msg: fmt.Sprintf(format, args...)} }

// Plan opens a session and answers which of the bundle's blobs the cluster lacks (imports.Importer).
func (reg *Registry) Plan(_ context.Context, req imports.PlanRequest) (imports.PlanResponse, error) {
	var missing []string

	for _, b := range req.Blobs {
		if err := digest.Check(b.Digest); err != nil {
			return imports.PlanResponse{}, refuse("bundle blob: %v", err)
		}

		if !reg.known(b.Digest) {
			missing = append(missing, b.Digest)
		}
	}

	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return imports.PlanResponse{}, err
	}

	session := hex.EncodeToString(id)

	reg.imports.mu.Lock()
	defer reg.imports.mu.Unlock()

	for k, s := range reg.imports.sessions { // forget the abandoned, and what they brought
		if time.Since(s.started) > sessionTTL {
			delete(reg.imports.sessions, k)
			go reg.drop(s)
		}
	}

	reg.imports.sessions[session] = &importSession{started: time.Now(), blobs: map[string]int64{}}

	return imports.PlanResponse{Session: session, Missing: missing}, nil
}

// known reports whether the cluster has a blob: stored here, or recorded as held by a member.
func (reg *Registry) known(d string) bool {
	if reg.assets.Has(d) {
		return true
	}

	_, ok, _ := reg.store.AssetByDigest(d)

	return ok
}

// PutBlob stores one blob of a session, verified against its digest (imports.Importer).
func (reg *Registry) PutBlob(ctx context.Context, session, d string, size int64, body io.Reader) error {
	s, err := reg.session(session)
	if err != nil {
		return err
	}

	if err := digest.Check(d); err != nil {
		return refuse("bundle blob: %v", err)
	}

	rec := raftstore.AssetRecord{Key: sourceBlobKey(d), Digest: d, Size: size, MediaType: "application/octet-stream"}
	// The wait outlives the request: a blob whose bytes all arrived is stored even when its client hangs up, and it
	// must be counted in the session, or a refusal would leave it behind.
	if err := reg.assets.Ingest(rec, "import", io.NopCloser(body)).Stored(context.WithoutCancel(ctx)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}

		// A blob that does not match its digest condemns the bundle: what it brought goes, and the blobs still
		// arriving (the client sends a few at once) are refused with the same reason.
		refusal := refuse("bundle blob %s: %v (the bundle is damaged: nothing of it is kept)", d, err)

		s.dropping.Lock()
		reg.imports.mu.Lock()
		if s.refused == nil {
			s.refused = refusal
		}
		reg.imports.mu.Unlock()

		reg.dropLocked(s)
		s.dropping.Unlock()
		reg.log.Warn("import refused: a blob does not match its digest; what it brought is dropped", "blob", d,
			"error", err)

		return refusal
	}

	reg.imports.mu.Lock()
	s.blobs[d] = size
	refused := s.refused
	reg.imports.mu.Unlock()

	if refused != nil { // stored while another blob condemned the bundle
		reg.drop(s)

		return refused
	}

	return nil
}

// endSession forgets a session.
func (reg *Registry) endSession(id string) {
	reg.imports.mu.Lock()
	delete(reg.imports.sessions, id)
	reg.imports.mu.Unlock()
}

// drop deletes what a session brought that nothing records.
func (reg *Registry) drop(s *importSession) {
	s.dropping.Lock()
	defer s.dropping.Unlock()

	reg.dropLocked(s)
}

// dropLocked is drop with s.dropping held.
func (reg *Registry) dropLocked(s *importSession) {
	reg.imports.mu.Lock()
	brought := slices.Collect(maps.Keys(s.blobs))
	reg.imports.mu.Unlock()

	for _, d := range brought {
		if _, recorded, _ := reg.store.AssetByDigest(d); !recorded {
			reg.assets.Drop(d) //nolint:errcheck // best effort: what stays is unrecorded, and evicted in time
		}
	}
}

func (reg *Registry) session(id string) (*importSession, error) {
	reg.imports.mu.Lock()
	s, ok := reg.imports.sessions[id]
	var refused error
	if ok {
		refused = s.refused
	}
	reg.imports.mu.Unlock()

	if !ok {
		return nil, frontends.NewError(frontends.ClassNotFound,
			fmt.Sprintf("import session %q is unknown (it expired, or this member restarted): import again", id), nil)
	}

	if refused != nil {
		s.dropping.Lock()   // wait until what it brought is gone
		s.dropping.Unlock() //nolint:staticcheck // SA2001: the empty section is the wait

		return nil, refused
	}

	return s, nil
}

// Commit checks every image of a session whole, spreads its blobs to their holders and records the images; a refusal
// drops what the session brought (imports.Importer).
func (reg *Registry) Commit(ctx context.Context, session string, req imports.CommitRequest) (imports.CommitResponse,
	error,
) {
	s, err := reg.session(session)
	if err != nil {
		return imports.CommitResponse{}, err
	}

	reg.endSession(session) // one commit per session, whatever its outcome

	res, err := reg.commit(ctx, s, req)
	if err != nil {
		reg.drop(s)
		reg.log.Warn("import refused; what it brought is dropped", "error", err, "blobs", len(s.blobs))

		return imports.CommitResponse{}, err
	}

	reg.log.Info("bundle imported", "images", res.Images, "blobs", res.Blobs, "bytes", res.Bytes, "moved", res.Moved)

	return res, nil
}

func (reg *Registry) commit(ctx context.Context, s *importSession, req imports.CommitRequest) (imports.CommitResponse,
	error,
) {
	blobs := map[string]raftstore.Blob{} // every blob of every image, manifests included

	for _, img := range req.Images {
		if err := reg.checkImage(ctx, img, blobs); err != nil {
			return imports.CommitResponse{}, refuse("image %s: %v", imageRef(img), err)
		}
	}

	if req.IPXE != nil {
		if err := reg.checkIPXE(ctx, req.IPXE, blobs); err != nil {
			return imports.CommitResponse{}, refuse("%v", err)
		}
	}

	var res imports.CommitResponse

	// The blobs spread side by side: copies to different holders overlap, and their records reach Raft together
	// (the leader writes concurrent entries with one fsync).
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(spreadParallel)

	for _, b := range slices.SortedFunc(maps.Values(blobs), func(a, b raftstore.Blob) int {
		return strings.Compare(a.Digest, b.Digest)
	}) {
		g.Go(func() error {
			if err := reg.spread(gctx, b); err != nil {
				return fmt.Errorf("spread blob %s to its holders: %w", b.Digest, err)
			}

			return nil
		})

		res.Blobs++
		res.Bytes += b.Size

		if _, brought := s.blobs[b.Digest]; brought {
			res.Moved++
		}
	}

	if err := g.Wait(); err != nil {
		return imports.CommitResponse{}, err
	}

	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(spreadParallel)

	for _, img := range req.Images {
		g.Go(func() error {
			if err := reg.recordImage(gctx, img); err != nil {
				return fmt.Errorf("record image %s: %w", imageRef(img), err)
			}

			return nil
		})

		res.Images++
	}

	if err := g.Wait(); err != nil {
		return imports.CommitResponse{}, err
	}

	if req.IPXE != nil { // a bundle without them leaves the binaries the cluster has alone
		if err := reg.recordIPXE(ctx, req.IPXE); err != nil {
			return imports.CommitResponse{}, fmt.Errorf("record the iPXE binaries: %w", err)
		}

		res.IPXE = len(req.IPXE.Files)
		reg.log.Info("iPXE binaries imported for network boot, checked by digest only: they carry no signature "+
			"(Debian signs its archive, not the files)", "source", req.IPXE.Source, "files", res.IPXE)
	}

	return res, nil
}

// checkImage checks an image whole: its manifest or index, every manifest under it, every config and layer, all
// present in the cluster and matching their digests, and its signature good with a trusted key. It adds every blob to
// blobs.
func (reg *Registry) checkImage(ctx context.Context, img imports.Image, blobs map[string]raftstore.Blob) error {
	if !isRegistryName(img.Name) {
		return errors.New("the name must start with its registry host (registry.k8s.io/pause)")
	}

	if err := reg.walk(ctx, raftstore.Blob{Digest: img.Digest, Size: img.Size, MediaType: img.MediaType}, blobs); err != nil {
		return err
	}

	for _, sig := range img.Signatures {
		if err := reg.walk(ctx, raftstore.Blob{Digest: sig.Digest, Size: sig.Size, MediaType: sig.MediaType},
			blobs); err != nil {
			return fmt.Errorf("signature %s: %w", sig.Tag, err)
		}
	}

	if reg.trust.Off {
		return nil
	}

	return reg.verifySignatures(ctx, img)
}

// maxManifestBlobs bounds the manifests and blobs one image may name (the real images name a few dozen).
const maxManifestBlobs = 10_000

// walk reads a manifest or index from the cluster (as the bundle brought it), checks every blob it names is present
// and adds them all to blobs.
func (reg *Registry) walk(ctx context.Context, m raftstore.Blob, blobs map[string]raftstore.Blob) error {
	if len(blobs) > maxManifestBlobs {
		return fmt.Errorf("more than %d blobs", maxManifestBlobs)
	}

	body, _, err := reg.readBlob(ctx, m.Digest, maxManifestSize)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", m.Digest, err)
	}

	var doc struct {
		MediaType string           `json:"mediaType"`
		Manifests []oci.Descriptor `json:"manifests"`
		Config    *oci.Descriptor  `json:"config"`
		Layers    []oci.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("manifest %s does not parse: %w", m.Digest, err)
	}

	if m.MediaType == "" {
		m.MediaType = doc.MediaType
	}

	m.Size = int64(len(body))
	blobs[m.Digest] = m

	for _, child := range doc.Manifests {
		if err := reg.walk(ctx, raftstore.Blob{Digest: child.Digest, Size: child.Size, MediaType: child.MediaType},
			blobs); err != nil {
			return err
		}
	}

	parts := doc.Layers
	if doc.Config != nil {
		parts = append(parts, *doc.Config)
	}

	for _, p := range parts {
		if err := digest.Check(p.Digest); err != nil {
			return fmt.Errorf("manifest %s names %w", m.Digest, err)
		}

		if !reg.known(p.Digest) {
			return fmt.Errorf("blob %s (%s) is missing from the bundle", p.Digest, p.MediaType)
		}

		blobs[p.Digest] = raftstore.Blob{Digest: p.Digest, Size: p.Size, MediaType: p.MediaType}
	}

	return nil
}

// verifySignatures checks that one of img's cosign signatures verifies with a trusted key.
func (reg *Registry) verifySignatures(ctx context.Context, img imports.Image) error {
	if len(img.Signatures) == 0 {
		return errors.New("it has no cosign signature (a bundle from `edgefactory mirror` carries them; " +
			"--input-verify=off accepts unsigned images in a lab)")
	}

	var problems []string

	for _, sig := range img.Signatures {
		err := reg.verifySignature(ctx, img.Digest, sig)
		if err == nil {
			return nil
		}

		problems = append(problems, fmt.Sprintf("%s: %v", sig.Tag, err))
	}

	return fmt.Errorf("no signature verifies with a trusted key: %s", strings.Join(problems, "; "))
}

// verifySignature checks one signature manifest: one of its simple-signing layers names the image's digest and is
// signed by a trusted key.
func (reg *Registry) verifySignature(ctx context.Context, imageDigest string, sig imports.Signature) error {
	body, _, err := reg.readBlob(ctx, sig.Digest, maxManifestSize)
	if err != nil {
		return err
	}

	read := func(d string, _ int64) ([]byte, error) {
		data, _, err := reg.readBlob(ctx, d, signing.MaxCosignPayload)

		return data, err
	}

	if len(reg.trust.Keys) == 0 {
		return errors.New("no trusted public key is configured (--input-public-key)")
	}

	_, err = signing.VerifyCosignManifest(body, read, reg.trust.Keys, imageDigest)

	return err
}

// spread puts a blob on its holders on the ring, each copying it from a member that has it and verifying it, and
// records which member holds it.
func (reg *Registry) spread(ctx context.Context, b raftstore.Blob) error {
	if _, recorded, _ := reg.store.AssetByDigest(b.Digest); recorded {
		return nil // in the cluster already
	}

	key := sourceBlobKey(b.Digest)
	rec := raftstore.AssetRecord{Key: key, Digest: b.Digest, Size: b.Size, MediaType: b.MediaType,
		Filename: strings.TrimPrefix(b.Digest, digest.Prefix)}
	holders := reg.members.Holders(key, reg.replicas())

	g, gctx := errgroup.WithContext(ctx) // the holders copy at once, each from this member
	for _, h := range holders {
		if h == reg.members.Self() {
			continue
		}

		base, ok := reg.members.PeerURL(h)
		if !ok {
			continue
		}

		g.Go(func() error {
			err := reg.peers.Keep(gctx, base, peer.PullRequest{Record: rec, From: []string{reg.members.Self()}})
			if err != nil {
				return fmt.Errorf("holder %s: %w", h, err)
			}

			return nil
		})
	}

	if err := g.Wait(); err != nil {
		return err
	}

	holder := reg.members.Self()
	if len(holders) > 0 && !slices.Contains(holders, holder) {
		holder = holders[0]
	}

	return reg.RecordBlob(ctx, b, holder)
}

// recordImage records an image's tag (when it has one), its signature tags and its referrers.
func (reg *Registry) recordImage(ctx context.Context, img imports.Image) error {
	if img.Tag != "" {
		if err := reg.RecordTag(ctx, img.Name, img.Tag, ImageTag{Digest: img.Digest, MediaType: img.MediaType,
			Size: img.Size, Role: img.Role, Versions: img.Versions}); err != nil {
			return err
		}
	}

	for _, sig := range img.Signatures {
		if err := reg.RecordTag(ctx, img.Name, sig.Tag, ImageTag{Digest: sig.Digest, MediaType: sig.MediaType,
			Size: sig.Size}); err != nil {
			return err
		}
	}

	if len(img.Referrers) == 0 {
		return nil
	}

	refs := make([]oci.Descriptor, 0, len(img.Referrers))
	for _, r := range img.Referrers {
		refs = append(refs, oci.Descriptor{MediaType: r.MediaType, Digest: r.Digest, Size: r.Size,
			ArtifactType: r.ArtifactType, Annotations: r.Annotations})
	}

	return reg.RecordReferrers(ctx, img.Digest, refs)
}

// imageRef is how an image is named in messages.
func imageRef(img imports.Image) string {
	if img.Tag != "" {
		return img.Name + ":" + img.Tag
	}

	return img.Name + "@" + img.Digest
}

// isRegistryName reports whether a repository name starts with a registry host.
func isRegistryName(name string) bool {
	host, rest, ok := strings.Cut(name, "/")

	return ok && rest != "" && (strings.ContainsAny(host, ".:") || host == "localhost")
}
