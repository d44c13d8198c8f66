package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/raftstore"
)

// A record this node lacks may only be on its way: the leader committed it and the log has not brought it here yet
// (the node just came back, or replication trails by a round trip). Schematics, asset records and version catalogs
// are read from the leader then, instead of waiting for the log: a schematic and an asset record never change once
// written, and a catalog is read as the leader has it, so a copy read from the leader is as good as the replicated
// one. Nothing read this way is written here; the log brings the same record in its time.

// leaderRecord reads a record of kind (raftstore.Record*) as the leader has it, as stored: on the leader, after
// applying everything acknowledged so far; elsewhere from the leader over the peer API. It does not wait for an
// election; failing for want of a leader, it returns an error retryable reports as such.
func (c *Cluster) leaderRecord(ctx context.Context, kind, id string) ([]byte, bool, error) {
	if c.staleReads {
		return c.store.Record(kind, id)
	}

	if c.store.IsLeader() {
		_, err := c.store.ReadIndex(ctx)
		if err == nil {
			return c.store.Record(kind, id)
		}

		if !retryable(err) {
			return nil, false, err
		}
		// Deposed meanwhile: ask the leader this node knows now.
	}

	base, err := c.leaderURL()
	if err != nil {
		return nil, false, err
	}

	return c.peers.Record(ctx, base, kind, id)
}

// ConfirmRead returns once this member has applied every write acknowledged before it was called (the leader's
// read index), so that what it then reads from its own replica is linearizable: no older than a write any member
// has already answered for. Replicas lag the leader by the replication delay, and a member cut off from its quorum
// (or a deposed leader that has not noticed yet) would otherwise answer with what it had: a read confirmed here
// either sees the latest acknowledged write or fails. Like a write it waits through an election, and answers
// Unavailable (503) when no leader is reachable.
func (c *Cluster) ConfirmRead(ctx context.Context) error {
	if c.staleReads {
		return nil
	}

	return c.withLeader(ctx, "confirm a read with the Raft leader", func(ctx context.Context) error {
		idx, err := c.leaderReadIndex(ctx)
		if err != nil {
			return err
		}

		if err := c.store.WaitApplied(ctx, idx); err != nil {
			return frontends.NewError(frontends.ClassUnavailable, fmt.Sprintf(
				"node %s has not applied the Raft log as far as the leader's read index %d yet", c.name, idx), err)
		}

		return nil
	})
}

// leaderJSON reads a JSON record from the leader into out; see leaderRecord.
func (c *Cluster) leaderJSON(ctx context.Context, kind, id string, out any) (bool, error) {
	raw, found, err := c.leaderRecord(ctx, kind, id)
	if err != nil || !found {
		return false, err
	}

	if err := json.Unmarshal(raw, out); err != nil {
		return false, fmt.Errorf("decode the leader's %s record %s: %w", kind, id, err)
	}

	return true, nil
}

// SchematicFromLeader reads schematic id from the leader; see leaderRecord.
func (c *Cluster) SchematicFromLeader(ctx context.Context, id string) ([]byte, bool, error) {
	return c.leaderRecord(ctx, raftstore.RecordSchematic, id)
}

// AssetFromLeader reads the asset record of key from the leader, waiting through an election as a write does.
func (c *Cluster) AssetFromLeader(ctx context.Context, key string) (raftstore.AssetRecord, bool, error) {
	var (
		rec   raftstore.AssetRecord
		found bool
	)

	err := c.withLeader(ctx, "read the asset index from the Raft leader", func(ctx context.Context) error {
		var err error
		found, err = c.leaderJSON(ctx, raftstore.RecordAsset, key, &rec)

		return err
	})

	return rec, found, err
}

// CatalogFromLeader reads the catalog of version (vX.Y.Z) from the leader; see leaderRecord.
func (c *Cluster) CatalogFromLeader(ctx context.Context, version string) (release.Version, bool, error) {
	var v release.Version
	found, err := c.leaderJSON(ctx, raftstore.RecordCatalog, version, &v)

	return v, found, err
}
