package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Cosign signatures in the "legacy" tag scheme (API.md §5.4): a manifest at tag sha256-<index hex>.sig in the same
// repository whose one layer is a simple-signing payload naming the index digest, with the base64 ECDSA signature
// in the layer's annotation. ECDSA signatures are randomised, so a signature is made once and kept in an asset
// record like any other content: the first committed signature of an index is the one every node serves.
const (
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	annotationSignature    = "dev.cosignproject.cosign/signature"
	artifactTypeCosignSig  = "application/vnd.dev.cosign.artifact.sig.v1+json"
)

// signatureKey is the asset key of the signature of an index digest made with a public key.
func signatureKey(indexDigest string, publicPEM []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "edgefactory cosign signature v1\n%s\n", indexDigest)
	h.Write(publicPEM)

	return hex.EncodeToString(h.Sum(nil))
}

// signature returns the record of the signature of indexDigest, signing it if nobody has. repo names the
// repository first asked for, for the payload's docker-reference.
func (n *Node) signature(ctx context.Context, indexDigest, repo string) (raftstore.AssetRecord, error) {
	key, signer := n.cosign.current()
	if key == nil {
		return raftstore.AssetRecord{}, frontends.NewError(frontends.ClassUnavailable,
			"the cosign signing key is not available yet (the cluster leader creates it); retry shortly", nil)
	}

	sk := signatureKey(indexDigest, key.PublicPEM)
	if rec, ok, err := n.store.Asset(sk); err != nil || ok {
		return rec, err
	}

	res, err, _ := n.assets.flight.Do("signature:"+sk, func() (any, error) {
		return n.sign(context.WithoutCancel(ctx), sk, indexDigest, repo, signer)
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	return res.(raftstore.AssetRecord), nil //nolint:forcetypeassert // sign returns records
}

func (n *Node) sign(ctx context.Context, key, indexDigest, repo string, signer *ecdsa.PrivateKey) (raftstore.AssetRecord, error) {
	payload, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": repo},
			"image":    map[string]string{"docker-manifest-digest": indexDigest},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	sum := sha256.Sum256(payload)

	sig, err := ecdsa.SignASN1(rand.Reader, signer, sum[:])
	if err != nil {
		return raftstore.AssetRecord{}, fmt.Errorf("sign %s: %w", indexDigest, err)
	}

	payloadDigest, err := n.putBytes(payload)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	config, err := json.Marshal(map[string]any{
		"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{payloadDigest}},
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	configDigest, err := n.putBytes(config)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIManifest,
		"config": map[string]any{
			"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config),
		},
		"layers": []map[string]any{{
			"mediaType":   mediaTypeSimpleSigning,
			"digest":      payloadDigest,
			"size":        len(payload),
			"annotations": map[string]string{annotationSignature: base64.StdEncoding.EncodeToString(sig)},
		}},
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	manifestDigest, err := n.putBytes(manifest)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	res, err := n.apply(ctx, raftstore.Command{V: raftstore.CommandVersion, Op: raftstore.OpPutAsset,
		Asset: &raftstore.AssetRecord{
			Key: key, Digest: manifestDigest, Size: int64(len(manifest)), MediaType: oci.MediaTypeOCIManifest,
			Filename: "sha256-" + indexDigest[len("sha256:"):] + ".sig", Builder: n.cfg.NodeName,
			Created: time.Now().UTC(),
			Blobs: []raftstore.Blob{
				{Digest: payloadDigest, Size: int64(len(payload)), MediaType: mediaTypeSimpleSigning},
				{Digest: configDigest, Size: int64(len(config)), MediaType: "application/vnd.oci.image.config.v1+json"},
			},
		}})
	if err != nil {
		return raftstore.AssetRecord{}, fmt.Errorf("record signature of %s: %w", indexDigest, err)
	}

	return *res.Asset, nil
}

// signatureManifest serves the cosign signature manifest of an index (tag sha256-<hex>.sig).
func (n *Node) signatureManifest(ctx context.Context, indexDigest string) (oci.Manifest, error) {
	key, _ := n.cosign.current()
	if key == nil || !oci.ValidDigest(indexDigest) {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: "no signature for " + indexDigest}
	}

	rec, ok, err := n.store.Asset(signatureKey(indexDigest, key.PublicPEM))
	if err != nil {
		return oci.Manifest{}, err
	}

	if !ok {
		return oci.Manifest{}, &oci.Error{Code: oci.CodeManifestUnknown, Status: http.StatusNotFound,
			Message: "no signature for " + indexDigest}
	}

	return n.manifestByDigest(ctx, rec.Digest)
}

// Referrers lists the signature of digest, when it has one (oci.Registry).
func (n *Node) Referrers(_ context.Context, _, _, digest string) ([]oci.Descriptor, error) {
	key, _ := n.cosign.current()
	if key == nil {
		return nil, nil
	}

	rec, ok, err := n.store.Asset(signatureKey(digest, key.PublicPEM))
	if err != nil || !ok {
		return nil, err
	}

	return []oci.Descriptor{{MediaType: rec.MediaType, Digest: rec.Digest, Size: rec.Size,
		ArtifactType: artifactTypeCosignSig}}, nil
}

// CosignPublicKey returns the PEM public key signatures verify with (oci.Registry).
func (n *Node) CosignPublicKey(context.Context) ([]byte, error) {
	key, _ := n.cosign.current()
	if key == nil {
		return nil, frontends.NewError(frontends.ClassUnavailable,
			"the cosign signing key is not available yet (the cluster leader creates it); retry shortly", nil)
	}

	return key.PublicPEM, nil
}

// publicPEM encodes a public key as PKIX PEM, the form `cosign verify --key` reads.
func publicPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}

	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
