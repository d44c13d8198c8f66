package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/raftstore"
)

// secureBootSetting is the Raft setting holding generated secure-boot keys (JSON of signing.SecureBootKeys).
const secureBootSetting = "secureboot-keys"

// keyRing provides the secure-boot signing material, identical on every node: loaded from files when the operator
// configured them, otherwise generated once by the first leader and replicated through Raft. Private keys never
// reach a log line or an API response.
type keyRing struct {
	store *raftstore.Store
	fixed *signing.SecureBootKeys // from files; nil when generated
	bits  int
	log   *slog.Logger

	mu     sync.Mutex
	raw    []byte // the setting last parsed
	parsed *signing.SecureBootKeys
	fp     string // fingerprint of fixed or parsed, computed once: it is on every request's path
}

func newKeyRing(store *raftstore.Store, files SecureBootFiles, bits int, log *slog.Logger) (*keyRing, error) {
	k := &keyRing{store: store, bits: bits, log: log}

	if files.configured() {
		keys, err := signing.Load(files.Key, files.Cert, files.PCRKey)
		if err != nil {
			return nil, fmt.Errorf("secure-boot keys from files: %w", err)
		}

		k.fixed, k.fp = keys, keys.Fingerprint()
		log.Info("secure-boot keys loaded from files", "fingerprint", keys.Fingerprint())
	}

	return k, nil
}

// current returns the keys, or nil while generated keys have not reached this node yet. Keys never change once
// stored (the first committed value wins), so after the first successful read they come from memory.
func (k *keyRing) current() *signing.SecureBootKeys {
	if k.fixed != nil {
		return k.fixed
	}

	k.mu.Lock()
	parsed := k.parsed
	k.mu.Unlock()

	if parsed != nil {
		return parsed
	}

	raw, ok, err := k.store.Setting(secureBootSetting)
	if err != nil || !ok {
		return nil
	}

	k.mu.Lock()
	defer k.mu.Unlock()

	if !bytes.Equal(raw, k.raw) {
		var keys signing.SecureBootKeys
		if err := json.Unmarshal(raw, &keys); err != nil {
			k.log.Error("replicated secure-boot keys do not parse", "error", err)

			return nil
		}

		k.raw, k.parsed, k.fp = raw, &keys, keys.Fingerprint()
	}

	return k.parsed
}

// fingerprint is the fingerprint of the current keys, "" while there are none.
func (k *keyRing) fingerprint() string {
	if k.current() == nil {
		return ""
	}

	k.mu.Lock()
	defer k.mu.Unlock()

	return k.fp
}

// ensure is a leader duty: generate the keys if the cluster has none. The first committed value wins, so two
// leaders in quick succession cannot leave nodes with different keys.
func (k *keyRing) ensure(ctx context.Context) error {
	if k.fixed != nil || k.current() != nil {
		return nil
	}

	if _, stored, err := k.store.Setting(secureBootSetting); err == nil && stored {
		return errUnreadableKeys // generating more would change nothing: the stored keys win
	}

	k.log.Info("generating the cluster's secure-boot signing keys (once)")

	keys, err := signing.Generate(signing.Options{SigningBits: k.bits})
	if err != nil {
		return fmt.Errorf("generate secure-boot keys: %w", err)
	}

	raw, err := json.Marshal(keys)
	if err != nil {
		return err
	}

	if _, err := k.store.InitSetting(ctx, secureBootSetting, raw); err != nil {
		return fmt.Errorf("store secure-boot keys: %w", err)
	}

	stored := k.current()
	if stored == nil { // another leader's keys were stored first, and they do not parse
		return errUnreadableKeys
	}

	k.log.Info("secure-boot signing keys stored", "fingerprint", stored.Fingerprint())

	return nil
}

// errUnreadableKeys: the cluster's stored secure-boot keys do not parse (written by an incompatible version?).
// Secure-boot assets wait for an operator; everything else goes on.
var errUnreadableKeys = errors.New("the cluster's stored secure-boot keys cannot be read (see the error logged " +
	"when they were read); secure-boot assets are unavailable until they are fixed, e.g. by giving key files")
