package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// Cosign signatures in the "legacy" tag scheme (what `cosign sign --key` pushes, and what `cosign verify --key`
// reads): a manifest at tag sha256-<image hex>.sig in the image's repository whose one layer is a simple-signing
// payload naming the image digest, with the base64 ASN.1 ECDSA signature over sha256(payload) in the layer's
// annotation.
const (
	MediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	AnnotationCosignSignature    = "dev.cosignproject.cosign/signature"
	MediaTypeOCIManifest         = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIConfig           = "application/vnd.oci.image.config.v1+json"

	cosignPayloadType = "cosign container image signature"
)

// CosignBlob is one piece of a cosign signature: its bytes, their digest ("sha256:<hex>") and media type.
type CosignBlob struct {
	Data      []byte
	Digest    string
	MediaType string
}

// CosignParts is a cosign signature of one image in the legacy tag scheme. Push Payload and Config as blobs of the
// image's repository, then Manifest at tag Tag.
type CosignParts struct {
	Payload   CosignBlob // the simple-signing payload, the manifest's one layer
	Config    CosignBlob // an image config whose one diff ID is the payload's digest
	Manifest  CosignBlob // OCI image manifest; its layer carries Signature in AnnotationCosignSignature
	Signature string     // base64 ASN.1 ECDSA signature over sha256(Payload.Data)
	Tag       string     // sha256-<image hex>.sig
}

// CosignSignature signs imageDigest (of a manifest or an index) for dockerReference (the repository named in the
// payload, e.g. "ghcr.io/siderolabs/imager") with key. The ECDSA signature is randomised: signing twice gives two
// valid signatures, and so two manifest digests. Everything else is the same bytes for the same inputs.
func CosignSignature(imageDigest, dockerReference string, key *ecdsa.PrivateKey) (CosignParts, error) {
	return cosignSignature(imageDigest, dockerReference, key, rand.Reader)
}

// DeterministicCosignSignature is CosignSignature with a deterministic ECDSA signature (RFC 6979): the same inputs
// give the same bytes, every time and everywhere, so a release signed twice has the same signature digests. RFC
// 6979 signatures are as sound as randomised ones; they only reveal that the same payload was signed twice.
func DeterministicCosignSignature(imageDigest, dockerReference string, key *ecdsa.PrivateKey) (CosignParts, error) {
	return cosignSignature(imageDigest, dockerReference, key, nil)
}

// cosignSignature signs with random, or deterministically (RFC 6979) when random is nil.
func cosignSignature(imageDigest, dockerReference string, key *ecdsa.PrivateKey, random io.Reader) (CosignParts, error) {
	if key == nil {
		return CosignParts{}, errors.New("cosign signature: no key")
	}

	tag, err := CosignTag(imageDigest)
	if err != nil {
		return CosignParts{}, err
	}

	payload, err := CosignPayload(imageDigest, dockerReference)
	if err != nil {
		return CosignParts{}, err
	}

	sum := sha256.Sum256(payload)

	// Sign with a nil random source is RFC 6979; with a reader, a randomised signature (as ecdsa.SignASN1).
	sig, err := key.Sign(random, sum[:], crypto.SHA256)
	if err != nil {
		return CosignParts{}, fmt.Errorf("sign %s: %w", imageDigest, err)
	}

	sigB64 := base64.StdEncoding.EncodeToString(sig)
	parts := CosignParts{
		Payload:   blob(payload, MediaTypeCosignSimpleSigning),
		Signature: sigB64,
		Tag:       tag,
	}

	config, err := json.Marshal(map[string]any{
		"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{parts.Payload.Digest}},
	})
	if err != nil {
		return CosignParts{}, err
	}

	parts.Config = blob(config, MediaTypeOCIConfig)

	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIManifest,
		"config": map[string]any{
			"mediaType": MediaTypeOCIConfig, "digest": parts.Config.Digest, "size": len(config),
		},
		"layers": []map[string]any{{
			"mediaType":   MediaTypeCosignSimpleSigning,
			"digest":      parts.Payload.Digest,
			"size":        len(payload),
			"annotations": map[string]string{AnnotationCosignSignature: sigB64},
		}},
	})
	if err != nil {
		return CosignParts{}, err
	}

	parts.Manifest = blob(manifest, MediaTypeOCIManifest)

	return parts, nil
}

func blob(data []byte, mediaType string) CosignBlob {
	return CosignBlob{Data: data, Digest: digest.Of(data), MediaType: mediaType}
}

// CosignTag is the legacy-scheme tag of the signature of imageDigest: "sha256-<hex>.sig".
func CosignTag(imageDigest string) (string, error) {
	if err := digest.Check(imageDigest); err != nil {
		return "", fmt.Errorf("cosign signature: image %w", err)
	}

	return "sha256-" + strings.TrimPrefix(imageDigest, digest.Prefix) + ".sig", nil
}

// CosignPayload is the simple-signing payload cosign signs: it names the image by digest and the repository it
// was signed for (docker-reference), with no optional claims.
func CosignPayload(imageDigest, dockerReference string) ([]byte, error) {
	if err := digest.Check(imageDigest); err != nil {
		return nil, fmt.Errorf("cosign payload: image %w", err)
	}

	return json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": dockerReference},
			"image":    map[string]string{"docker-manifest-digest": imageDigest},
			"type":     cosignPayloadType,
		},
		"optional": nil,
	})
}

// ErrCosignVerify is matched (errors.Is) by every error VerifyCosignPayload returns for a signature or payload that
// does not hold (as opposed to a key it cannot use).
var ErrCosignVerify = errors.New("cosign signature does not verify")

// VerifyCosignPayload checks a cosign signature as `cosign verify --key` does: signatureB64 (the layer annotation,
// base64 ASN.1) must be an ECDSA signature by pub over sha256(payload), and the payload a cosign container image
// signature naming imageDigest. pub is an *ecdsa.PublicKey (others are refused). The payload's docker-reference is
// not checked, as cosign does not: signatures stay valid when an image is copied to another registry.
func VerifyCosignPayload(payload []byte, signatureB64 string, pub crypto.PublicKey, imageDigest string) error {
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok || key == nil {
		return fmt.Errorf("cosign verify: public key is %T, want *ecdsa.PublicKey", pub)
	}

	if err := digest.Check(imageDigest); err != nil {
		return fmt.Errorf("cosign verify: image %w", err)
	}

	sig, err := base64.StdEncoding.DecodeString(signatureB64)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64: %w", ErrCosignVerify, err)
	}

	sum := sha256.Sum256(payload)
	if !ecdsa.VerifyASN1(key, sum[:], sig) {
		return fmt.Errorf("%w: not a signature of this payload by this key", ErrCosignVerify)
	}

	var simple struct {
		Critical struct {
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}

	if err := json.Unmarshal(payload, &simple); err != nil {
		return fmt.Errorf("%w: payload is not JSON: %w", ErrCosignVerify, err)
	}

	if simple.Critical.Type != cosignPayloadType {
		return fmt.Errorf("%w: payload type %q, want %q", ErrCosignVerify, simple.Critical.Type, cosignPayloadType)
	}

	if got := simple.Critical.Image.DockerManifestDigest; got != imageDigest {
		return fmt.Errorf("%w: payload names image %s, not %s", ErrCosignVerify, got, imageDigest)
	}

	return nil
}
