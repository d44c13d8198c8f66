package signing

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// PublicKey is a key cosign signatures are checked with: the parsed key, the sha256 of its DER (PKIX) encoding as
// "sha256:<hex>", and its PEM.
type PublicKey struct {
	Key         crypto.PublicKey
	Fingerprint string
	PEM         string
}

// ParsePublicKeys reads every PEM "PUBLIC KEY" block (PKIX, the form `cosign generate-key-pair` and `edgefactory
// synthetic public-key` write) of each input; an input with none is an error naming it (1-based).
func ParsePublicKeys(pems ...[]byte) ([]PublicKey, error) {
	var keys []PublicKey

	for i, data := range pems {
		found := 0

		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}

			if block.Type != "PUBLIC KEY" {
				continue
			}

			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", i+1, err)
			}

			sum := sha256.Sum256(block.Bytes)
			keys = append(keys, PublicKey{Key: pub, Fingerprint: "sha256:" + hex.EncodeToString(sum[:]),
				PEM: string(pem.EncodeToMemory(block))})
			found++
		}

		if found == 0 {
			return nil, fmt.Errorf("public key %d: no PEM public key (-----BEGIN PUBLIC KEY-----)", i+1)
		}
	}

	return keys, nil
}

// MaxCosignPayload bounds a signature payload read into memory (cosign's are a few hundred bytes).
const MaxCosignPayload = 1 << 20

// VerifyCosignManifest checks a cosign signature manifest of the tag scheme (tag sha256-<hex>.sig) for imageDigest:
// read fetches a layer's payload by digest and size; a payload whose annotation is a signature by one of keys over
// it, naming imageDigest, makes the signature good. It returns the fingerprints of the keys that verified a
// payload, or why none did (errors.Is ErrCosignVerify when the signature does not hold).
func VerifyCosignManifest(manifest []byte, read func(digest string, size int64) ([]byte, error), keys []PublicKey,
	imageDigest string,
) ([]string, error) {
	if len(keys) == 0 {
		return nil, errors.New("no public key to verify with")
	}

	var m struct {
		Layers []struct {
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}

	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: the signature manifest does not parse: %w", ErrCosignVerify, err)
	}

	var (
		by       []string
		problems []string
		signed   int
	)

	for _, l := range m.Layers {
		sig, ok := l.Annotations[AnnotationCosignSignature]
		if !ok || l.Size > MaxCosignPayload {
			continue
		}

		signed++

		payload, err := read(l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("signature payload %s: %w", l.Digest, err)
		}

		for _, k := range keys {
			if err := VerifyCosignPayload(payload, sig, k.Key, imageDigest); err != nil {
				problems = append(problems, strings.TrimPrefix(err.Error(), ErrCosignVerify.Error()+": "))

				continue
			}

			if !slices.Contains(by, k.Fingerprint) {
				by = append(by, k.Fingerprint)
			}
		}
	}

	switch {
	case len(by) > 0:
		return by, nil
	case signed == 0:
		return nil, fmt.Errorf("%w: the signature manifest has no signed simple-signing payload", ErrCosignVerify)
	default:
		return nil, fmt.Errorf("%w: no payload verifies with the %d public key(s) trusted: %s", ErrCosignVerify,
			len(keys), strings.Join(slices.Compact(slices.Sorted(slices.Values(problems))), "; "))
	}
}
