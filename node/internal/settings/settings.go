// Package settings keeps the cluster settings (frontends/settings: catalog policy, replicas, catalog interval,
// cache budget, low-space watermark, build profile) in Raft under one key, changes them with a merge the log applies atomically,
// and hands every member the settings in force as they change.
//
// A member starts with its own flags and config as the settings; the leader records them once as the cluster's
// initial values (Ensure), and from then on every member follows what Raft holds, whichever member leads. A field a
// later version adds is recorded from the leader's configuration the first time a leader of that version runs.
package settings

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	api "github.com/edgefactory/edgefactory/frontends/settings"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Key is the Raft setting the document lives under.
const Key = "cluster/settings"

// Reader reads this member's replica of the Raft settings.
type Reader interface {
	Setting(key string) ([]byte, bool, error)
}

// Config is what the keeper needs.
type Config struct {
	Store Reader
	// Leader commits writes (the leader's store, or a member forwarding to it).
	Leader raftstore.Applier
	// Confirm returns once Store holds every change acknowledged before it was called (the Raft leader's read
	// index), or fails when that cannot be known (no leader reachable); Read calls it first. Nil: Read answers
	// from Store as it is.
	Confirm func(context.Context) error
	// Initial are this member's configured values: in force until Raft holds the cluster's, and recorded by Ensure.
	Initial api.Settings
	// Poll is how often the replica is read for changes (default 500 ms: a bbolt read).
	Poll time.Duration
	// Apply is called with the settings in force whenever they change; the member moves
	// its catalog policy, replicas and cache limits with them.
	Apply func(api.Settings)
	// Check, when set, refuses a change checked by api.Parse that the member knows to be wrong (a build profile no
	// member ever ran with).
	Check  func(change map[string]any) error
	Logger *slog.Logger
}

// Keeper follows the cluster settings on one member.
type Keeper struct {
	cfg Config

	adopting sync.Mutex // one adopt at a time, so Apply sees changes in order

	mu   sync.Mutex
	cur  api.Settings
	seen []byte // the stored document cur was read from
}

// New returns a keeper whose settings in force are cfg.Initial until Raft says otherwise.
func New(cfg Config) *Keeper {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}

	return &Keeper{cfg: cfg, cur: cfg.Initial}
}

// Settings returns the settings in force on this member.
func (k *Keeper) Settings() api.Settings {
	k.mu.Lock()
	defer k.mu.Unlock()

	s := k.cur
	s.BrokenVersions = slices.Clone(s.BrokenVersions)

	return s
}

// Read returns the cluster's settings as of now, for a client to see: every change acknowledged before the call,
// through whichever member (linearizable), rather than what this member adopted at its last poll or what a member
// cut off from its quorum still holds. It fails, Unavailable, when no Raft leader can confirm the replica.
func (k *Keeper) Read(ctx context.Context) (api.Settings, error) {
	if k.cfg.Confirm != nil {
		if err := k.cfg.Confirm(ctx); err != nil {
			return api.Settings{}, err
		}
	}

	raw, ok, err := k.cfg.Store.Setting(Key)
	if err != nil {
		return api.Settings{}, fmt.Errorf("read cluster settings: %w", err)
	}

	if !ok { // a new cluster whose leader has not recorded them yet: this member's own values are in force
		return k.Settings(), nil
	}

	return k.decode(raw)
}

// Replicas is the replica count in force (asked on every placement, so without a copy of the whole document).
func (k *Keeper) Replicas() int {
	k.mu.Lock()
	defer k.mu.Unlock()

	return k.cur.Replicas
}

// Change merges a change checked by api.Parse into the cluster's document, recording who made it, and returns the
// settings after it as this member now holds them.
func (k *Keeper) Change(ctx context.Context, change map[string]any, who string) (api.Settings, error) {
	if k.cfg.Check != nil {
		if err := k.cfg.Check(change); err != nil {
			return api.Settings{}, err
		}
	}

	patch := maps.Clone(change)
	patch["changedBy"] = who
	patch["changedAt"] = time.Now().UTC().Truncate(time.Second)

	raw, err := json.Marshal(patch)
	if err != nil {
		return api.Settings{}, fmt.Errorf("encode settings change: %w", err)
	}

	stored, err := raftstore.PatchSetting(ctx, k.cfg.Leader, Key, raw)
	if err != nil {
		return api.Settings{}, err
	}

	// Read your writes: the answer (and this member's GET after it) shows the change once this member's replica
	// holds it, a moment after the leader committed it.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	for !k.holds(stored) {
		select {
		case <-wait.Done():
			return k.decode(stored)
		case <-time.After(20 * time.Millisecond):
			k.Refresh()
		}
	}

	return k.Settings(), nil
}

// holds reports whether the settings in force were read from the stored document given.
func (k *Keeper) holds(stored []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()

	return bytes.Equal(k.seen, stored)
}

// decode reads a stored document over this member's own values (for fields Raft does not hold yet).
func (k *Keeper) decode(stored []byte) (api.Settings, error) {
	s := k.cfg.Initial
	s.BrokenVersions = slices.Clone(s.BrokenVersions)
	err := json.Unmarshal(stored, &s)

	return s, err
}

// Ensure records this member's configured values as the cluster's for every field Raft does not hold yet (all of
// them when the cluster is new). The leader calls it; a field an operator set is never touched.
func (k *Keeper) Ensure(ctx context.Context) error {
	init, err := json.Marshal(k.cfg.Initial)
	if err != nil {
		return fmt.Errorf("encode initial settings: %w", err)
	}

	have, ok, err := k.cfg.Store.Setting(Key)
	if err != nil {
		return fmt.Errorf("read cluster settings: %w", err)
	}

	if !ok {
		if _, err := raftstore.InitSetting(ctx, k.cfg.Leader, Key, init); err != nil {
			return err
		}

		k.cfg.Logger.Info("cluster settings recorded from this member's configuration", "settings", string(init))

		return nil
	}

	missing, err := missingFields(have, init)
	if err != nil || len(missing) == 0 {
		return err
	}

	raw, err := json.Marshal(missing)
	if err != nil {
		return fmt.Errorf("encode initial settings: %w", err)
	}

	if _, err := raftstore.PatchSetting(ctx, k.cfg.Leader, Key, raw); err != nil {
		return err
	}

	k.cfg.Logger.Info("cluster settings: new fields recorded from this member's configuration",
		"settings", string(raw))

	return nil
}

// missingFields returns the fields of init the stored document lacks.
func missingFields(stored, init []byte) (map[string]json.RawMessage, error) {
	var have, want map[string]json.RawMessage
	if err := json.Unmarshal(stored, &have); err != nil {
		return nil, fmt.Errorf("decode cluster settings: %w", err)
	}

	if err := json.Unmarshal(init, &want); err != nil {
		return nil, fmt.Errorf("decode initial settings: %w", err)
	}

	for name := range have {
		delete(want, name)
	}

	delete(want, "changedBy")
	delete(want, "changedAt")

	return want, nil
}

// Run follows the replica until ctx ends, calling Apply after every change (the member starts under its own
// configuration, which Initial is).
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.cfg.Poll)
	defer t.Stop()

	for {
		k.Refresh()

		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the replica now and adopts a changed document.
func (k *Keeper) Refresh() {
	raw, ok, err := k.cfg.Store.Setting(Key)
	if err != nil {
		k.cfg.Logger.Error("read cluster settings", "error", err)

		return
	}

	if ok {
		k.adopt(raw)
	}
}

// adopt makes the stored document the settings in force if it differs from the one they came from, and applies
// them; it returns the settings in force.
func (k *Keeper) adopt(stored []byte) api.Settings {
	k.adopting.Lock()
	defer k.adopting.Unlock()

	k.mu.Lock()

	if bytes.Equal(stored, k.seen) {
		s := k.cur
		k.mu.Unlock()

		return s
	}

	next, err := k.decode(stored)
	if err != nil {
		k.mu.Unlock()
		k.cfg.Logger.Error("cluster settings in Raft do not decode; keeping those in force", "error", err)

		return k.Settings()
	}

	prev := k.cur
	k.cur, k.seen = next, bytes.Clone(stored)
	k.mu.Unlock()

	if !equal(prev, next) {
		k.cfg.Logger.Info("cluster settings in force", "by", next.ChangedBy, "min_version", next.MinVersion,
			"broken_versions", next.BrokenVersions, "replicas", next.Replicas, "catalog_interval",
			next.CatalogInterval, "cache_budget", next.CacheBudget, "low_space_watermark", next.LowSpaceWatermark,
			"build_profile", next.BuildProfile)

		if k.cfg.Apply != nil {
			k.cfg.Apply(next)
		}
	}

	return next
}

// equal compares the settings themselves, not who changed them.
func equal(a, b api.Settings) bool {
	return a.MinVersion == b.MinVersion && slices.Equal(a.BrokenVersions, b.BrokenVersions) &&
		a.Replicas == b.Replicas && a.CatalogInterval == b.CatalogInterval && a.CacheBudget == b.CacheBudget &&
		a.LowSpaceWatermark == b.LowSpaceWatermark && a.BuildProfile == b.BuildProfile
}
