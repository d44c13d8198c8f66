package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/raftstore"
)

// A record this node lacks may only be on its way: the leader committed it and the log has not brought it here yet
// (the node just came back, or replication trails by a round trip). Schematics, asset records and version catalogs
// are read from the leader then, instead of waiting for the log: a schematic and an asset record never change once
// written, and a catalog is read as the leader has it, so a copy read from the leader is as good as the replicated
// one. Nothing read this way is written here; the log brings the same record in its time.

// Kinds of record the peer API reads from the leader.
const (
	recordSchematic = "schematic"
	recordAsset     = "asset"
	recordCatalog   = "catalog"
)

// errRecordKind answers a request for a kind of record there is none of.
var errRecordKind = errors.New("unknown record kind")

// localRecord reads a record of kind from this node's state: found, and its JSON encoding.
func (n *Node) localRecord(kind, id string) ([]byte, bool, error) {
	var (
		v     any
		found bool
		err   error
	)

	switch kind {
	case recordSchematic:
		v, found, err = n.store.Schematic(id)
	case recordAsset:
		v, found, err = n.store.Asset(id)
	case recordCatalog:
		v, found, err = n.store.Catalog(id)
	default:
		return nil, false, fmt.Errorf("%w %q", errRecordKind, kind)
	}

	if err != nil || !found {
		return nil, false, err
	}

	raw, err := json.Marshal(v)

	return raw, true, err
}

// leaderRecord reads a record of kind as the leader has it, into out: on the leader, after applying everything
// acknowledged so far; elsewhere from the leader over the peer API. It does not wait for an election; failing for
// want of a leader, it returns an error retryable reports as such.
func (n *Node) leaderRecord(ctx context.Context, kind, id string, out any) (bool, error) {
	if n.store.IsLeader() {
		_, err := n.store.ReadIndex(ctx)
		if err == nil {
			raw, found, err := n.localRecord(kind, id)
			if err != nil || !found {
				return false, err
			}

			return true, json.Unmarshal(raw, out)
		}

		if !retryable(err) {
			return false, err
		}
		// Deposed meanwhile: ask the leader this node knows now.
	}

	base, err := n.leaderURL()
	if err != nil {
		return false, err
	}

	return n.peers.record(ctx, base, kind, id, out)
}

// schematicFromLeader reads schematic id from the leader; see leaderRecord.
func (n *Node) schematicFromLeader(ctx context.Context, id string) ([]byte, bool, error) {
	var yaml []byte
	found, err := n.leaderRecord(ctx, recordSchematic, id, &yaml)

	return yaml, found, err
}

// assetFromLeader reads the asset record of key from the leader, waiting through an election as a write does.
func (n *Node) assetFromLeader(ctx context.Context, key string) (raftstore.AssetRecord, bool, error) {
	var (
		rec   raftstore.AssetRecord
		found bool
	)

	err := n.withLeader(ctx, "read the asset index from the Raft leader", func(ctx context.Context) error {
		var err error
		found, err = n.leaderRecord(ctx, recordAsset, key, &rec)

		return err
	})

	return rec, found, err
}

// catalogFromLeader reads the catalog of version (vX.Y.Z) from the leader; see leaderRecord.
func (n *Node) catalogFromLeader(ctx context.Context, version string) (release.Version, bool, error) {
	var c release.Version
	found, err := n.leaderRecord(ctx, recordCatalog, version, &c)

	return c, found, err
}
