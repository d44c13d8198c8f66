// Package keys holds the cluster's signing material: the secure-boot keys UKIs are signed with (SecureBoot) and the
// cosign key installer images are signed with (Cosign). Each is the same on every member: loaded from files when
// the operator gives them, otherwise generated once by the first leader and kept in a Raft setting (storedOnce:
// the first committed value wins, every member parses it once). It reads and writes only through raftstore.
//
// Guarantee: private keys never reach a log line or an error message; a stored key that does not parse is
// reported, and never answered by generating another.
package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/edgefactory/edgefactory/raftstore"
)

// storedOnce is a value the cluster makes once and keeps in a Raft setting, such as a signing key: the first
// leader generates it, the first committed value wins, and every node parses that one, once (it never changes).
// A stored value that does not parse (written by an incompatible version) is reported once, and the leader then
// generates nothing: a new value could never win over the stored one.
type storedOnce[T any] struct {
	store *raftstore.Store
	key   string // the Raft setting
	what  string // for messages: "secure-boot keys"
	parse func([]byte) (T, error)
	log   *slog.Logger

	mu     sync.Mutex
	raw    []byte // the setting last parsed
	val    T
	ok     bool
	broken bool // raw does not parse
}

// ErrUnreadable: a key the cluster stored does not parse. What it signs waits for an operator; everything else
// goes on.
var ErrUnreadable = errors.New("the cluster's stored key cannot be read (see the error logged when it was " +
	"read); what it signs is unavailable until it is fixed, e.g. by giving key files")

// get returns the value, or false while none has reached this node or the stored one does not parse.
func (s *storedOnce[T]) get() (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.ok {
		return s.val, true
	}

	var zero T

	raw, stored, err := s.store.Setting(s.key)
	if err != nil || !stored || s.broken && bytes.Equal(raw, s.raw) {
		return zero, false
	}

	s.raw = raw

	val, err := s.parse(raw)
	if err != nil {
		s.broken = true
		s.log.Error("the cluster's stored "+s.what+" do not parse", "error", err)

		return zero, false
	}

	s.val, s.ok, s.broken = val, true, false

	return val, true
}

// ensure is a leader duty: store a value made by generate unless the cluster has one; the stored value wins.
func (s *storedOnce[T]) ensure(ctx context.Context, generate func() ([]byte, error)) error {
	if _, ok := s.get(); ok {
		return nil
	}

	if _, stored, err := s.store.Setting(s.key); err == nil && stored {
		return fmt.Errorf("%s: %w", s.what, ErrUnreadable) // generating another would change nothing
	}

	s.log.Info("generating the cluster's " + s.what + " (once)")

	raw, err := generate()
	if err != nil {
		return fmt.Errorf("generate %s: %w", s.what, err)
	}

	if _, err := s.store.InitSetting(ctx, s.key, raw); err != nil {
		return fmt.Errorf("store %s: %w", s.what, err)
	}

	if _, ok := s.get(); !ok { // another leader's value was stored first, and it does not parse
		return fmt.Errorf("%s: %w", s.what, ErrUnreadable)
	}

	return nil
}
