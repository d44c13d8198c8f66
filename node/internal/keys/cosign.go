package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/raftstore"
)

// cosignSetting is the Raft setting holding the generated cosign key pair (JSON of signing.ECDSAKey).
const cosignSetting = "cosign-key"

// Cosign provides the key installer images are signed with, the same on every node: from a file when
// configured, else generated once by the first leader and replicated through Raft (first committed value wins).
type Cosign struct {
	fixed  *cosignKey // from the file; nil when generated
	stored storedOnce[*cosignKey]
}

// cosignKey is the key pair and its parsed signer.
type cosignKey struct {
	key    *signing.ECDSAKey
	signer *ecdsa.PrivateKey
}

func NewCosign(store *raftstore.Store, file string, log *slog.Logger) (*Cosign, error) {
	c := &Cosign{stored: storedOnce[*cosignKey]{store: store, key: cosignSetting, what: "cosign key", log: log,
		parse: func(raw []byte) (*cosignKey, error) {
			var key signing.ECDSAKey
			if err := json.Unmarshal(raw, &key); err != nil {
				return nil, err
			}

			signer, err := key.Signer()
			if err != nil {
				return nil, err
			}

			return &cosignKey{key: &key, signer: signer}, nil
		}}}
	if file == "" {
		return c, nil
	}

	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cosign key: %w", err)
	}

	key := &signing.ECDSAKey{PrivatePEM: raw}

	signer, err := key.Signer()
	if err != nil {
		return nil, fmt.Errorf("cosign key %s: %w", file, err)
	}

	if key.PublicPEM, err = publicPEM(&signer.PublicKey); err != nil {
		return nil, err
	}

	c.fixed = &cosignKey{key: key, signer: signer}

	return c, nil
}

// current returns the key pair, or nils while a generated key has not reached this node yet.
func (c *Cosign) Current() (*signing.ECDSAKey, *ecdsa.PrivateKey) {
	k := c.fixed
	if k == nil {
		k, _ = c.stored.get()
	}

	if k == nil {
		return nil, nil
	}

	return k.key, k.signer
}

// ensure is a leader duty: generate the key if the cluster has none.
func (c *Cosign) Ensure(ctx context.Context) error {
	if c.fixed != nil {
		return nil
	}

	return c.stored.ensure(ctx, func() ([]byte, error) {
		key, err := signing.GenerateECDSA()
		if err != nil {
			return nil, err
		}

		return json.Marshal(key)
	})
}

// publicPEM encodes a public key as PKIX PEM, the form `cosign verify --key` reads.
func publicPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}

	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
