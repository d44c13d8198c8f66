package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// maxManifest bounds a manifest read into memory (go-containerregistry's limit).
const maxManifest = 4 << 20

// image is an item resolved: where it is read from, and every manifest and blob it needs.
type image struct {
	it        *item
	src       name.Repository
	top       v1.Descriptor
	own       parts
	platforms []string
	sig       *sigCopy
	refs      []refCopy

	pending atomic.Int64 // blobs not copied yet

	mu  sync.Mutex
	err error
}

func (im *image) fail(err error) {
	im.mu.Lock()
	defer im.mu.Unlock()

	if im.err == nil {
		im.err = err
	}
}

func (im *image) failed() error {
	im.mu.Lock()
	defer im.mu.Unlock()

	return im.err
}

// sigCopy is an image's cosign signature manifest (tag sha256-<hex>.sig).
type sigCopy struct {
	tag          string
	desc         v1.Descriptor
	parts        parts
	verifiedWith []string
}

// refCopy is a manifest that refers to the image (referrers API).
type refCopy struct {
	desc  v1.Descriptor // as the referrers index lists it (with its artefact type)
	parts parts
}

// parts are the manifests (children before the manifests naming them) and the other blobs of one manifest tree.
type parts struct {
	manifests []v1.Descriptor
	blobs     []v1.Descriptor
	seen      map[v1.Hash]bool
}

func (p *parts) add(d v1.Descriptor, manifest bool) {
	if p.seen == nil {
		p.seen = map[v1.Hash]bool{}
	}

	if p.seen[d.Digest] {
		return
	}

	p.seen[d.Digest] = true

	if manifest {
		p.manifests = append(p.manifests, d)
	} else {
		p.blobs = append(p.blobs, d)
	}
}

func (p *parts) bytes() int64 {
	var n int64
	for _, d := range slices.Concat(p.manifests, p.blobs) {
		n += d.Size
	}

	return n
}

// all are the parts of the image, its signature and referrers.
func (im *image) all() []parts {
	out := []parts{im.own}
	if im.sig != nil {
		out = append(out, im.sig.parts)
	}

	for _, r := range im.refs {
		out = append(out, r.parts)
	}

	return out
}

// foreign reports a layer not to be copied: non-distributable, fetched from its URLs by whoever needs it.
func foreign(d v1.Descriptor) bool {
	return len(d.URLs) > 0 || d.MediaType == types.DockerForeignLayer ||
		strings.HasPrefix(string(d.MediaType), "application/vnd.oci.image.layer.nondistributable.")
}

// resolveAll reads every item's manifests (kept in the store) and lists its blobs.
func (m *mirror) resolveAll(ctx context.Context, items []*item) []*image {
	out := make([]*image, len(items))

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(m.opts.Jobs, 8)) // manifests are small: this is latency

	for i, it := range items {
		g.Go(func() error {
			out[i] = m.resolve(gctx, it)

			return nil
		})
	}

	_ = g.Wait() // failures are the images'

	return out
}

func (m *mirror) resolve(ctx context.Context, it *item) *image {
	im := &image{it: it}

	err := m.resolveImage(ctx, im)
	if err != nil {
		im.fail(err)
	}

	return im
}

func (m *mirror) resolveImage(ctx context.Context, im *image) error {
	o := im.it.origin

	src := m.smap.source(o.Repository)

	repo, err := m.client.repo(src)
	if err != nil {
		return err
	}

	im.src = repo

	var ref name.Reference = repo.Tag(o.Tag)
	if o.Digest != "" {
		ref = repo.Digest(o.Digest)
	}

	top, raw, err := m.manifest(ctx, repo, ref, nil)
	if err != nil {
		return fmt.Errorf("read %s: %w", ref, err)
	}

	if o.Digest != "" && top.Digest.String() != o.Digest {
		return fmt.Errorf("read %s: digest %s, want %s", ref, top.Digest, o.Digest)
	}

	im.top = top

	if err := m.walk(ctx, repo, top, raw, &im.own, 0); err != nil {
		return err
	}

	if top.MediaType.IsIndex() {
		if idx, err := v1.ParseIndexManifest(bytes.NewReader(raw)); err == nil {
			for _, d := range idx.Manifests {
				if p := d.Platform; p != nil && p.OS != "unknown" {
					im.platforms = append(im.platforms, strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
				}
			}
		}
	}

	if err := m.signature(ctx, im); err != nil {
		return err
	}

	if err := m.referrers(ctx, im); err != nil {
		return err
	}

	return m.checkSigned(im)
}

// manifest reads a manifest (or index) from the store when ref is a digest the store has, else from the registry,
// keeping it in the store. want is the descriptor naming it, when there is one.
func (m *mirror) manifest(ctx context.Context, repo name.Repository, ref name.Reference, want *v1.Descriptor) (v1.Descriptor, []byte, error) {
	if d, ok := ref.(name.Digest); ok {
		size := int64(-1)
		if want != nil {
			size = want.Size
		}

		if ok, _ := m.store.has(d.DigestStr(), size); ok {
			if raw, err := m.store.read(d.DigestStr(), maxManifest); err == nil {
				h, err := v1.NewHash(d.DigestStr())
				if err != nil {
					return v1.Descriptor{}, nil, err
				}

				return v1.Descriptor{Digest: h, Size: int64(len(raw)), MediaType: mediaTypeOf(raw, want)}, raw, nil
			}
		}
	}

	rd, err := remote.Get(ref, m.client.options(ctx)...)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}

	if want != nil && rd.Digest != want.Digest {
		return v1.Descriptor{}, nil, fmt.Errorf("%s: digest %s, want %s", repo, rd.Digest, want.Digest)
	}

	if err := m.store.put(rd.Digest.String(), rd.Manifest); err != nil {
		return v1.Descriptor{}, nil, err
	}

	desc := v1.Descriptor{Digest: rd.Digest, Size: rd.Size, MediaType: rd.MediaType}
	if desc.MediaType == "" {
		desc.MediaType = mediaTypeOf(rd.Manifest, want)
	}

	return desc, rd.Manifest, nil
}

// mediaTypeOf is a manifest's media type: its descriptor's, else its own mediaType field, else an OCI index or
// manifest by its shape.
func mediaTypeOf(raw []byte, want *v1.Descriptor) types.MediaType {
	if want != nil && want.MediaType != "" {
		return want.MediaType
	}

	var doc struct {
		MediaType types.MediaType  `json:"mediaType"`
		Manifests *json.RawMessage `json:"manifests"`
	}

	_ = json.Unmarshal(raw, &doc) // a manifest that does not parse fails its walk

	switch {
	case doc.MediaType != "":
		return doc.MediaType
	case doc.Manifests != nil:
		return types.OCIImageIndex
	default:
		return types.OCIManifestSchema1
	}
}

// manifestDoc is what a walk reads of any manifest or index.
type manifestDoc struct {
	Manifests []v1.Descriptor `json:"manifests"`
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	Blobs     []v1.Descriptor `json:"blobs"` // the draft OCI artefact manifest
	Subject   *v1.Descriptor  `json:"subject"`
}

// walk adds a manifest and everything under it to acc: child manifests (read, kept), configs and layers.
func (m *mirror) walk(ctx context.Context, repo name.Repository, desc v1.Descriptor, raw []byte, acc *parts, depth int) error {
	if desc.MediaType.IsSchema1() {
		return fmt.Errorf("%s@%s: Docker schema 1 manifests are not supported", repo, desc.Digest)
	}

	if depth > 4 {
		return fmt.Errorf("%s@%s: indexes nested too deep", repo, desc.Digest)
	}

	var doc manifestDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s@%s: %w", repo, desc.Digest, err)
	}

	for _, child := range doc.Manifests {
		if acc.seen[child.Digest] {
			continue
		}

		cd, craw, err := m.manifest(ctx, repo, repo.Digest(child.Digest.String()), &child)
		if err != nil {
			return fmt.Errorf("read %s@%s: %w", repo, child.Digest, err)
		}

		if err := m.walk(ctx, repo, cd, craw, acc, depth+1); err != nil {
			return err
		}
	}

	blobs := slices.Concat(doc.Layers, doc.Blobs)
	if doc.Config != nil {
		blobs = append([]v1.Descriptor{*doc.Config}, blobs...)
	}

	for _, b := range blobs {
		if !foreign(b) {
			acc.add(b, false)
		}
	}

	acc.add(v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, true)

	return nil
}

// signatureTag is the cosign signature tag of a digest.
func signatureTag(d v1.Hash) string { return d.Algorithm + "-" + d.Hex + ".sig" }

// signature copies the image's cosign signature tag when the source has one, verifying it with the keys given.
func (m *mirror) signature(ctx context.Context, im *image) error {
	tag := signatureTag(im.top.Digest)

	desc, raw, err := m.manifest(ctx, im.src, im.src.Tag(tag), nil)

	switch {
	case notFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read signature %s:%s: %w", im.src, tag, err)
	}

	sc := &sigCopy{tag: tag, desc: desc}
	if err := m.walk(ctx, im.src, desc, raw, &sc.parts, 0); err != nil {
		return fmt.Errorf("signature %s: %w", tag, err)
	}

	im.sig = sc

	if len(m.keys) == 0 {
		return nil
	}

	read := func(d string, size int64) ([]byte, error) {
		if _, err := m.store.ensure(ctx, d, size, m.client.blob(im.src, d, size), nil); err != nil {
			return nil, err
		}

		return m.store.read(d, signing.MaxCosignPayload)
	}

	if sc.verifiedWith, err = signing.VerifyCosignManifest(raw, read, m.keys, im.top.Digest.String()); err != nil {
		return fmt.Errorf("signature %s does not verify: %w", tag, err)
	}

	return nil
}

// referrers copies the manifests whose subject is the image (referrers API, or its tag fallback).
func (m *mirror) referrers(ctx context.Context, im *image) error {
	idx, err := remote.Referrers(im.src.Digest(im.top.Digest.String()), m.client.options(ctx)...)
	if err != nil {
		return fmt.Errorf("referrers of %s@%s: %w", im.src, im.top.Digest, err)
	}

	list, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("referrers of %s@%s: %w", im.src, im.top.Digest, err)
	}

	for _, d := range list.Manifests {
		desc, raw, err := m.manifest(ctx, im.src, im.src.Digest(d.Digest.String()), &d)
		if err != nil {
			return fmt.Errorf("referrer %s@%s: %w", im.src, d.Digest, err)
		}

		rc := refCopy{desc: d}
		if err := m.walk(ctx, im.src, desc, raw, &rc.parts, 0); err != nil {
			return fmt.Errorf("referrer %s: %w", d.Digest, err)
		}

		im.refs = append(im.refs, rc)
	}

	return nil
}

// signatureArtifact reports referrers that are signatures (cosign's, or sigstore bundles).
func signatureArtifact(artifactType string) bool {
	return strings.HasPrefix(artifactType, "application/vnd.dev.cosign.artifact.sig") ||
		strings.HasPrefix(artifactType, "application/vnd.dev.sigstore.bundle")
}

// checkSigned applies RequireSignatures.
func (m *mirror) checkSigned(im *image) error {
	if !m.opts.RequireSignatures {
		return nil
	}

	if len(m.keys) > 0 {
		if im.sig == nil {
			return errors.New("no cosign signature (tag " + signatureTag(im.top.Digest) + ") to verify, and signatures are required")
		}

		return nil // verified by signature
	}

	if im.sig != nil || slices.ContainsFunc(im.refs, func(r refCopy) bool { return signatureArtifact(r.desc.ArtifactType) }) {
		return nil
	}

	return errors.New("not signed (no " + signatureTag(im.top.Digest) + " tag, no signature referrer), and signatures are required")
}
