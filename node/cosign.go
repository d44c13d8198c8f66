package node

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/raftstore"
)

// cosignSetting is the Raft setting holding the generated cosign key pair (JSON of signing.ECDSAKey).
const cosignSetting = "cosign-key"

// cosignKeys provides the key installer images are signed with, the same on every node: from a file when
// configured, else generated once by the first leader and replicated through Raft (first committed value wins).
type cosignKeys struct {
	store *raftstore.Store
	log   *slog.Logger

	mu     sync.Mutex
	key    *signing.ECDSAKey
	signer *ecdsa.PrivateKey
	fixed  bool
}

func newCosignKeys(store *raftstore.Store, file string, log *slog.Logger) (*cosignKeys, error) {
	c := &cosignKeys{store: store, log: log}
	if file == "" {
		return c, nil
	}

	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cosign key: %w", err)
	}

	key := &signing.ECDSAKey{PrivatePEM: pem}

	signer, err := key.Signer()
	if err != nil {
		return nil, fmt.Errorf("cosign key %s: %w", file, err)
	}

	if key.PublicPEM, err = publicPEM(&signer.PublicKey); err != nil {
		return nil, err
	}

	c.key, c.signer, c.fixed = key, signer, true

	return c, nil
}

// current returns the key pair, or nils while a generated key has not reached this node yet.
func (c *cosignKeys) current() (*signing.ECDSAKey, *ecdsa.PrivateKey) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.key != nil {
		return c.key, c.signer
	}

	raw, ok, err := c.store.Setting(cosignSetting)
	if err != nil || !ok {
		return nil, nil
	}

	var key signing.ECDSAKey
	if err := json.Unmarshal(raw, &key); err != nil {
		c.log.Error("replicated cosign key does not parse", "error", err)

		return nil, nil
	}

	signer, err := key.Signer()
	if err != nil {
		c.log.Error("replicated cosign key is unusable", "error", err)

		return nil, nil
	}

	c.key, c.signer = &key, signer

	return c.key, c.signer
}

// ensure is a leader duty: generate the key if the cluster has none.
func (c *cosignKeys) ensure(ctx context.Context) error {
	if key, _ := c.current(); key != nil {
		return nil
	}

	key, err := signing.GenerateECDSA()
	if err != nil {
		return err
	}

	raw, err := json.Marshal(key)
	if err != nil {
		return err
	}

	if _, err := c.store.InitSetting(ctx, cosignSetting, raw); err != nil {
		return fmt.Errorf("store cosign key: %w", err)
	}

	c.log.Info("cosign signing key for installer images created (once per cluster)")

	return nil
}
