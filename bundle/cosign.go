package bundle

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// Cosign's simple-signing signatures (the "legacy" tag scheme): a manifest at tag sha256-<hex>.sig whose layers are
// JSON payloads naming the signed digest, each with its base64 signature in an annotation.
const (
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	annotationSignature    = "dev.cosignproject.cosign/signature"
	// maxPayload bounds a signature payload read into memory (cosign's are a few hundred bytes).
	maxPayload = 1 << 20
)

// verifyKey is a public key signatures are checked with.
type verifyKey struct {
	PublicKey
	key crypto.PublicKey
}

// parsePublicKeys reads PEM public keys ("PUBLIC KEY", PKIX), each file possibly holding several.
func parsePublicKeys(pems [][]byte) ([]verifyKey, error) {
	var keys []verifyKey

	for i, data := range pems {
		rest := data
		found := 0

		for {
			var block *pem.Block

			block, rest = pem.Decode(rest)
			if block == nil {
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
			keys = append(keys, verifyKey{
				PublicKey: PublicKey{Fingerprint: "sha256:" + hex.EncodeToString(sum[:]), PEM: string(pem.EncodeToMemory(block))},
				key:       pub,
			})
			found++
		}

		if found == 0 {
			return nil, fmt.Errorf("public key %d: no PUBLIC KEY PEM block", i+1)
		}
	}

	return keys, nil
}

// verifySignature checks the payloads of a signature manifest against the keys: the fingerprints of the keys that
// verified at least one payload, or why none did.
func verifySignature(payloads []signedPayload, keys []verifyKey, imageDigest string) ([]string, error) {
	var (
		by   []string
		errs []string
	)

	for _, k := range keys {
		for _, p := range payloads {
			err := signing.VerifyCosignPayload(p.payload, p.signature, k.key, imageDigest)
			if err == nil {
				by = append(by, k.Fingerprint)

				break
			}

			errs = append(errs, err.Error())
		}
	}

	switch {
	case len(by) > 0:
		return by, nil
	case len(payloads) == 0:
		return nil, errors.New("the signature manifest has no signed simple-signing payload")
	default:
		return nil, fmt.Errorf("no payload verifies with the %d public key(s) given: %s", len(keys),
			strings.Join(dedupe(errs), "; "))
	}
}

type signedPayload struct {
	payload   []byte
	signature string
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]

	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}

	return out
}
