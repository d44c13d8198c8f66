package registry

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"net/http"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Cosign signatures in the "legacy" tag scheme (docs/api.md §5.4): a manifest at tag sha256-<index hex>.sig in the same
// repository whose one layer is a simple-signing payload naming the index digest, with the base64 ECDSA signature
// in the layer's annotation. ECDSA signatures are randomised, so a signature is made once and kept in an asset
// record like any other content: the first committed signature of an index is the one every node serves.
//
// A signature whose bytes are lost cluster-wide (evicted, or only on a member that is gone) cannot be made again
// with the same digest. It is replaced by a new generation: another write-once record, under the next generation's
// key, so concurrent replacements still agree on one (the first committed). The newest recorded generation is the
// index's signature; the older ones' manifests keep their meaning by digest. Every member that serves a signature
// keeps a copy of its (small) blobs, so one member's loss rarely costs a replacement. The bytes are made by
// signing.CosignSignature.
const artifactTypeCosignSig = "application/vnd.dev.cosign.artifact.sig.v1+json"

// maxSignatureGenerations bounds how often one index's signature is replaced.
const maxSignatureGenerations = 1000

// currentSignature is the newest recorded generation of the signature of indexDigest (gen -1 when there is none).
// Generations are recorded in order, each only once the one before exists.
func (reg *Registry) currentSignature(indexDigest string, publicPEM []byte) (raftstore.AssetRecord, int, error) {
	var current raftstore.AssetRecord

	gen := -1

	for next := 0; next < maxSignatureGenerations; next++ {
		rec, ok, err := reg.store.Asset(signatureKey(indexDigest, publicPEM, next))
		if err != nil {
			return raftstore.AssetRecord{}, -1, err
		}

		if !ok {
			break
		}

		current, gen = rec, next
	}

	return current, gen, nil
}

// signature returns the record of the signature of indexDigest whose bytes the cluster has, signing it if nobody
// has (create) or if its bytes are lost (a new generation). ok is false when the index is unsigned and create is
// false. repo names the repository asked for, for the payload's docker-reference.
func (reg *Registry) signature(ctx context.Context, indexDigest, repo string, create bool) (raftstore.AssetRecord, bool, error) {
	key, signer := reg.cosign.Current()
	if key == nil {
		return raftstore.AssetRecord{}, false, frontends.NewError(frontends.ClassUnavailable,
			"the cosign signing key is not available yet (the cluster leader creates it); retry shortly", nil)
	}

	rec, gen, err := reg.currentSignature(indexDigest, key.PublicPEM)
	if err != nil {
		return raftstore.AssetRecord{}, false, err
	}

	switch {
	case gen < 0 && !create:
		return raftstore.AssetRecord{}, false, nil
	case gen >= 0:
		intact, err := reg.signatureIntact(ctx, rec)
		if err != nil || intact {
			return rec, err == nil, err
		}

		if gen+1 >= maxSignatureGenerations {
			return raftstore.AssetRecord{}, false, fmt.Errorf("the signature of %s was lost %d times: not signing again",
				indexDigest, maxSignatureGenerations)
		}
	}

	next := gen + 1
	sk := signatureKey(indexDigest, key.PublicPEM, next)

	res, err, _ := reg.flight.Do("signature:"+sk, func() (any, error) {
		ctx := context.WithoutCancel(ctx)

		if next > 0 {
			// This node may be behind the log: another member may have replaced the signature already.
			rec, ok, err := reg.leader.AssetFromLeader(ctx, sk)
			if err != nil {
				return raftstore.AssetRecord{}, fmt.Errorf("before signing %s again: %w", indexDigest, err)
			}

			if ok {
				return rec, nil
			}

			reg.log.Warn("the signature of an installer image is lost cluster-wide: signing it again", "index",
				indexDigest, "lost", rec.Digest, "generation", next)
		}

		return reg.sign(ctx, sk, indexDigest, repo, signer)
	})
	if err != nil {
		return raftstore.AssetRecord{}, false, err
	}

	return res.(raftstore.AssetRecord), true, nil //nolint:forcetypeassert // sign returns records
}

// signatureIntact reports whether every blob of a signature can be had, keeping a copy of each here: they are a
// few hundred bytes, and a copy on each member that serves them is what keeps them from being lost. An error is
// returned only when the request ended, so that a client hanging up never replaces a signature.
func (reg *Registry) signatureIntact(ctx context.Context, rec raftstore.AssetRecord) (bool, error) {
	digests := []string{rec.Digest}
	for _, b := range rec.Blobs {
		digests = append(digests, b.Digest)
	}

	for _, d := range digests {
		if reg.assets.Has(d) {
			continue
		}

		if reg.assets.Lost(d) {
			return false, nil
		}

		if _, _, err := reg.readBlob(ctx, d, maxManifestSize); err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}

			reg.log.Warn("a signature blob could not be copied from any member", "digest", d, "error", err)

			return false, nil
		}
	}

	return true, nil
}

func (reg *Registry) sign(ctx context.Context, key, indexDigest, repo string, signer *ecdsa.PrivateKey) (raftstore.AssetRecord, error) {
	parts, err := signing.CosignSignature(indexDigest, repo, signer)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	for _, b := range []signing.CosignBlob{parts.Payload, parts.Config, parts.Manifest} {
		if _, err := reg.assets.Put(b.Data); err != nil {
			return raftstore.AssetRecord{}, err
		}
	}

	rec, err := raftstore.PutAsset(ctx, reg.leader, raftstore.AssetRecord{
		Key: key, Digest: parts.Manifest.Digest, Size: int64(len(parts.Manifest.Data)), MediaType: parts.Manifest.MediaType,
		Filename: parts.Tag, Builder: reg.self,
		Created: time.Now().UTC(),
		Blobs: []raftstore.Blob{
			{Digest: parts.Payload.Digest, Size: int64(len(parts.Payload.Data)), MediaType: parts.Payload.MediaType},
			{Digest: parts.Config.Digest, Size: int64(len(parts.Config.Data)), MediaType: parts.Config.MediaType},
		},
	})
	if err != nil {
		return raftstore.AssetRecord{}, fmt.Errorf("record signature of %s: %w", indexDigest, err)
	}

	return rec, nil
}

// signatureManifest serves the cosign signature manifest of an index (tag sha256-<hex>.sig) in repo.
func (reg *Registry) signatureManifest(ctx context.Context, indexDigest, repo string) (oci.Manifest, error) {
	key, _ := reg.cosign.Current()
	if key == nil || !oci.ValidDigest(indexDigest) {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: "no signature for " + indexDigest}
	}

	rec, ok, err := reg.signature(ctx, indexDigest, repo, false)
	if err != nil {
		return oci.Manifest{}, err
	}

	if !ok {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: "no signature for " + indexDigest}
	}

	return reg.manifestByDigest(ctx, rec.Digest)
}

// Referrers lists the signature of digest, when it has one (oci.Registry).
func (reg *Registry) Referrers(ctx context.Context, image, schematicID, digest string) ([]oci.Descriptor, error) {
	key, _ := reg.cosign.Current()
	if key == nil {
		return nil, nil
	}

	rec, ok, err := reg.signature(ctx, digest, image+"/"+schematicID, false)
	if err != nil || !ok {
		return nil, err
	}

	return []oci.Descriptor{{MediaType: rec.MediaType, Digest: rec.Digest, Size: rec.Size,
		ArtifactType: artifactTypeCosignSig}}, nil
}

// CosignPublicKey returns the PEM public key signatures verify with (oci.Registry).
func (reg *Registry) CosignPublicKey(context.Context) ([]byte, error) {
	key, _ := reg.cosign.Current()
	if key == nil {
		return nil, frontends.NewError(frontends.ClassUnavailable,
			"the cosign signing key is not available yet (the cluster leader creates it); retry shortly", nil)
	}

	return key.PublicPEM, nil
}
