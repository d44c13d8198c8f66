package synthetic

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	_ "embed" // the lab signing key
	"fmt"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// The lab signing key: one fixed ECDSA P-256 key pair, generated once with Go and committed with this package, that
// signs every image of the synthetic release (cosign, legacy tag scheme) so that tests and lab runs verify their
// inputs as a real site verifies Sidero Labs' images. It is a PUBLIC LAB KEY, WORTHLESS AS A SECRET: its private
// half is in this repository for anyone to read, so a signature by it proves nothing about who made an image.
// Trust it (PublicKeyPEM, `edgefactory synthetic public-key`) only where the synthetic release is the input.
var (
	//go:embed lab-signing-key.pem
	labPrivatePEM []byte
	//go:embed lab-signing-key.pub
	labPublicPEM []byte
)

// PublicKeyPEM is the public half of the lab key the synthetic release is signed with (PKIX "PUBLIC KEY" PEM, what
// `cosign verify --key` reads).
func PublicKeyPEM() []byte { return bytes.Clone(labPublicPEM) }

// labSigner parses the lab key once.
var labSigner = sync.OnceValues(func() (*ecdsa.PrivateKey, error) {
	key, err := (&signing.ECDSAKey{PrivatePEM: labPrivatePEM, PublicPEM: labPublicPEM}).Signer()
	if err != nil {
		return nil, fmt.Errorf("synthetic lab signing key: %w", err)
	}

	return key, nil
})

// Signature is the cosign signature of a pushed image in the legacy tag scheme: a manifest in the image's
// repository, at tag Tag ("sha256-<index hex>.sig"), whose payload names the index digest and UpstreamName of the
// repository, signed with the lab key (PublicKeyPEM). Signatures are deterministic (RFC 6979), like the rest of the
// release: the same image gets the same signature digest at every push.
type Signature struct {
	Tag    string `json:"tag"`
	Digest string `json:"digest"` // of the signature manifest
}

// UpstreamName is the name an image of the synthetic registry has upstream, which its signature's payload names:
// a repository whose first component is a registry host (it has a dot: "registry.k8s.io/kube-apiserver") is its
// own full name; any other ("siderolabs/imager") is in UpstreamRegistry ("ghcr.io/siderolabs/imager").
func UpstreamName(repository string) string {
	if first, _, ok := strings.Cut(repository, "/"); ok && strings.Contains(first, ".") {
		return repository
	}

	return UpstreamRegistry + "/" + repository
}

// sign makes the signature of an image (index digest) of repository.
func sign(repository, imageDigest string) (signing.CosignParts, error) {
	key, err := labSigner()
	if err != nil {
		return signing.CosignParts{}, err
	}

	parts, err := signing.DeterministicCosignSignature(imageDigest, UpstreamName(repository), key)
	if err != nil {
		return signing.CosignParts{}, fmt.Errorf("sign %s@%s: %w", repository, imageDigest, err)
	}

	return parts, nil
}

// pushSignature pushes a signature's payload and config blobs into repo, then its manifest at its tag.
func pushSignature(ctx context.Context, pusher *remote.Pusher, repo name.Repository, sig signing.CosignParts) error {
	for _, b := range []signing.CosignBlob{sig.Payload, sig.Config} {
		if err := pusher.Upload(ctx, repo, static.NewLayer(b.Data, types.MediaType(b.MediaType))); err != nil {
			return fmt.Errorf("signature blob %s: %w", b.Digest, err)
		}
	}

	if err := pusher.Put(ctx, repo.Tag(sig.Tag), rawManifest{sig.Manifest}); err != nil {
		return fmt.Errorf("signature manifest %s: %w", sig.Tag, err)
	}

	return nil
}

// rawManifest is a manifest pushed as its bytes (remote.Taggable, with its media type).
type rawManifest struct{ blob signing.CosignBlob }

func (m rawManifest) RawManifest() ([]byte, error) { return m.blob.Data, nil }

func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(m.blob.MediaType), nil
}
