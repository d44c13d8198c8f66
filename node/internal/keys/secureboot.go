package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Files are PEM files of the secure-boot signing key (PKCS#1), its certificate and the PCR key.
type Files struct {
	Key, Cert, PCRKey string
}

// Configured reports whether any file is given.
func (f Files) Configured() bool { return f.Key != "" || f.Cert != "" || f.PCRKey != "" }

// secureBootSetting is the Raft setting holding generated secure-boot keys (JSON of signing.SecureBootKeys).
const secureBootSetting = "secureboot-keys"

// SecureBoot provides the secure-boot signing material, identical on every node: loaded from files when the operator
// configured them, otherwise generated once by the first leader and replicated through Raft. Private keys never
// reach a log line or an API response.
type SecureBoot struct {
	fixed  *secureBootKeys // from files; nil when generated
	bits   int
	stored storedOnce[*secureBootKeys]
}

// secureBootKeys are the keys with their fingerprint, computed once: it is on every request's path.
type secureBootKeys struct {
	*signing.SecureBootKeys
	fp string
}

func withFingerprint(keys *signing.SecureBootKeys) *secureBootKeys {
	return &secureBootKeys{SecureBootKeys: keys, fp: keys.Fingerprint()}
}

func NewSecureBoot(store *raftstore.Store, files Files, bits int, log *slog.Logger) (*SecureBoot, error) {
	k := &SecureBoot{bits: bits, stored: storedOnce[*secureBootKeys]{store: store, key: secureBootSetting,
		what: "secure-boot keys", log: log, parse: func(raw []byte) (*secureBootKeys, error) {
			var keys signing.SecureBootKeys
			if err := json.Unmarshal(raw, &keys); err != nil {
				return nil, err
			}

			return withFingerprint(&keys), nil
		}}}

	if files.Configured() {
		keys, err := signing.Load(files.Key, files.Cert, files.PCRKey)
		if err != nil {
			return nil, fmt.Errorf("secure-boot keys from files: %w", err)
		}

		k.fixed = withFingerprint(keys)
		log.Info("secure-boot keys loaded from files", "fingerprint", k.fixed.fp)
	}

	return k, nil
}

// keys returns the keys, or nil while generated keys have not reached this node yet.
func (k *SecureBoot) keys() *secureBootKeys {
	if k.fixed != nil {
		return k.fixed
	}

	keys, _ := k.stored.get()

	return keys
}

// current returns the keys, or nil while generated keys have not reached this node yet.
func (k *SecureBoot) Current() *signing.SecureBootKeys {
	if keys := k.keys(); keys != nil {
		return keys.SecureBootKeys
	}

	return nil
}

// fingerprint is the fingerprint of the current keys, "" while there are none.
func (k *SecureBoot) Fingerprint() string {
	if keys := k.keys(); keys != nil {
		return keys.fp
	}

	return ""
}

// ensure is a leader duty: generate the keys if the cluster has none. The first committed value wins, so two
// leaders in quick succession cannot leave nodes with different keys.
func (k *SecureBoot) Ensure(ctx context.Context) error {
	if k.fixed != nil {
		return nil
	}

	return k.stored.ensure(ctx, func() ([]byte, error) {
		keys, err := signing.Generate(signing.Options{SigningBits: k.bits})
		if err != nil {
			return nil, err
		}

		return json.Marshal(keys)
	})
}
