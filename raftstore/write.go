package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgefactory/edgefactory/imager/release"
)

// ErrNotLeader is matched (errors.Is) by every write or membership change attempted on a node that is not the
// leader; errors.As with *NotLeaderError gives the leader to forward to.
var ErrNotLeader = errors.New("not the raft leader")

// ErrLeadershipLost means the leader lost its role before the entry committed: it may or may not commit. Commands
// are idempotent, so retrying on the new leader is safe.
var ErrLeadershipLost = raft.ErrLeadershipLost

// NotLeaderError names the leader as this node currently knows it. Both fields are empty during an election.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the raft leader; no leader is known"
	}
	return fmt.Sprintf("not the raft leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ApplyCommand commits c through Raft and returns the state machine's Result. It is how a leader applies a command a
// follower forwarded. A refused command returns its Result together with an error wrapping ErrRejected. If ctx
// ends first the command may still commit.
func (s *Store) ApplyCommand(ctx context.Context, c Command) (Result, error) {
	data, err := EncodeCommand(c)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	f := s.raft.Apply(data, s.timeout(ctx))
	if err := await(ctx, f); err != nil {
		return Result{}, s.raftErr(err)
	}
	res, ok := f.Response().(Result)
	if !ok {
		return Result{}, fmt.Errorf("unexpected state machine response %T", f.Response())
	}
	return res, res.Err()
}

// Applier commits a command through Raft and returns the state machine's Result: the leader's *Store, or a
// member that forwards its writes to the leader. The typed writes below work through either, so production code
// never builds a Command by hand.
type Applier interface {
	ApplyCommand(ctx context.Context, c Command) (Result, error)
}

// PutSchematic stores a schematic's canonical YAML under its ID. Schematics are write-once: repeating a put is a
// no-op, and different bytes under an existing ID fail with ErrConflict and change nothing.
func PutSchematic(ctx context.Context, a Applier, id string, yaml []byte) error {
	res, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutSchematic, ID: id, YAML: yaml})
	if err == nil && res.Conflict {
		err = ErrConflict
	}
	if err != nil {
		return fmt.Errorf("put schematic %s: %w", id, err)
	}
	return nil
}

// PutCatalog stores (replaces) the catalog of one Talos version.
func PutCatalog(ctx context.Context, a Applier, v release.Version) error {
	if _, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutCatalog, Release: &v}); err != nil {
		return fmt.Errorf("put catalog %s: %w", v.Version, err)
	}
	return nil
}

// RemoveVersion deletes the catalog of one Talos version; removing an absent version is a no-op.
func RemoveVersion(ctx context.Context, a Applier, version string) error {
	if _, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpRemoveVersion, Version: version}); err != nil {
		return fmt.Errorf("remove catalog %s: %w", version, err)
	}
	return nil
}

// PutCatalogMeta replaces the catalog meta record.
func PutCatalogMeta(ctx context.Context, a Applier, m CatalogMeta) error {
	if _, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutCatalogMeta, Meta: &m}); err != nil {
		return fmt.Errorf("put catalog meta: %w", err)
	}
	return nil
}

// PutAsset records a built asset. The first committed record for a recipe key wins; the returned record is the one
// stored. When its Digest differs from rec.Digest the caller's bytes lost the race and must not be served.
func PutAsset(ctx context.Context, a Applier, rec AssetRecord) (AssetRecord, error) {
	res, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutAsset, Asset: &rec})
	if err != nil {
		return AssetRecord{}, fmt.Errorf("put asset %s: %w", rec.Key, err)
	}
	if res.Asset == nil {
		return AssetRecord{}, fmt.Errorf("put asset %s: state machine returned no record", rec.Key)
	}
	return *res.Asset, nil
}

// PutSetting sets (overwrites) a cluster setting.
func PutSetting(ctx context.Context, a Applier, key string, value []byte) error {
	if _, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutSetting, Key: key, Value: value}); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}

// DeleteSetting removes a cluster setting and reports whether it existed.
func DeleteSetting(ctx context.Context, a Applier, key string) (bool, error) {
	res, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpDeleteSetting, Key: key})
	if err != nil {
		return false, fmt.Errorf("delete setting %s: %w", key, err)
	}
	return res.Changed, nil
}

// InitSetting sets a cluster setting only if it is absent and returns the value stored: the first committed value
// wins, so two nodes generating e.g. a signing key at once end up agreeing on one.
func InitSetting(ctx context.Context, a Applier, key string, value []byte) ([]byte, error) {
	res, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpInitSetting, Key: key, Value: value})
	if err != nil {
		return nil, fmt.Errorf("init setting %s: %w", key, err)
	}
	return res.Value, nil
}

// PatchSetting merges a JSON object into the JSON setting under key (RFC 7386 merge patch: a null member removes
// one) and returns the value stored after it.
func PatchSetting(ctx context.Context, a Applier, key string, patch []byte) ([]byte, error) {
	res, err := a.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPatchSetting, Key: key, Value: patch})
	if err != nil {
		return nil, fmt.Errorf("patch setting %s: %w", key, err)
	}
	return res.Value, nil
}

// The same writes on the leader's store itself.

// PutSchematic is PutSchematic on this store (the leader).
func (s *Store) PutSchematic(ctx context.Context, id string, yaml []byte) error {
	return PutSchematic(ctx, s, id, yaml)
}

// PutCatalog is PutCatalog on this store (the leader).
func (s *Store) PutCatalog(ctx context.Context, v release.Version) error {
	return PutCatalog(ctx, s, v)
}

// RemoveVersion is RemoveVersion on this store (the leader).
func (s *Store) RemoveVersion(ctx context.Context, version string) error {
	return RemoveVersion(ctx, s, version)
}

// PutCatalogMeta is PutCatalogMeta on this store (the leader).
func (s *Store) PutCatalogMeta(ctx context.Context, m CatalogMeta) error {
	return PutCatalogMeta(ctx, s, m)
}

// PutAsset is PutAsset on this store (the leader).
func (s *Store) PutAsset(ctx context.Context, rec AssetRecord) (AssetRecord, error) {
	return PutAsset(ctx, s, rec)
}

// PutSetting is PutSetting on this store (the leader).
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	return PutSetting(ctx, s, key, value)
}

// InitSetting is InitSetting on this store (the leader).
func (s *Store) InitSetting(ctx context.Context, key string, value []byte) ([]byte, error) {
	return InitSetting(ctx, s, key, value)
}

// timeout bounds raft's wait to enqueue an operation by ApplyTimeout and by ctx's deadline.
func (s *Store) timeout(ctx context.Context) time.Duration {
	t := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		t = max(min(t, time.Until(dl)), time.Millisecond)
	}
	return t
}

// await waits for a raft future or for ctx; raft futures know nothing of contexts.
func await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raftErr translates raft's errors into this package's.
func (s *Store) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		addr, id := s.raft.LeaderWithID()
		return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return err
}
