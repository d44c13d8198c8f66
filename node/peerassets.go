package node

import (
	"context"
	"fmt"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// peerAssets is what this node serves other members through the peer API (peer.Assets).
type peerAssets struct{ n *Node }

// ForPeer plans what a member asked for and gets or builds it here (one hop: never asking another member).
// Planning reads what this node lacks from the leader (records.go), so it never waits for the log; only a plan that
// differs while this node is behind the asker (a catalog that changed meanwhile) waits for the log to reach the
// asker's index, and is planned again.
func (p peerAssets) ForPeer(ctx context.Context, req peer.AssetRequest) (frontends.Asset, raftstore.AssetRecord,
	error,
) {
	n := p.n
	plan := func() (recipe.Recipe, error) {
		if req.Talosctl {
			return n.catalog.PlanTalosctl(ctx, req.Version, req.Path)
		}

		return n.catalog.Plan(ctx, req.SchematicID, req.Version, req.Path, recipe.ParsePath)
	}

	r, err := plan()
	if err == nil && req.Key != "" && r.Key != req.Key && n.store.AppliedIndex() < req.Index {
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n.store.WaitApplied(waitCtx, req.Index) //nolint:errcheck // planning again reports what still differs
		cancel()

		r, err = plan()
	}

	if err != nil {
		return nil, raftstore.AssetRecord{}, err
	}

	if req.Key != "" && r.Key != req.Key {
		return nil, raftstore.AssetRecord{}, fmt.Errorf("%w: asked for %s, planned %s", peer.ErrStateDiffers,
			req.Key, r.Key)
	}

	a, err := n.assets.Get(ctx, r, true)
	if err != nil {
		return nil, raftstore.AssetRecord{}, err
	}

	rec, ok, _ := n.store.Asset(r.Key)
	if !ok {
		rec = raftstore.AssetRecord{Key: r.Key, Digest: a.Digest(), Size: a.Size(), MediaType: a.MediaType(),
			Filename: a.Filename(), Builder: n.cfg.NodeName}
	}

	return a, rec, nil
}

// Keep copies rec's bytes here and waits until they are stored (an importing member spreading a bundle's blobs).
func (p peerAssets) Keep(ctx context.Context, rec raftstore.AssetRecord, from []string) error {
	return p.n.assets.Keep(ctx, rec, from)
}

// Prefetch keeps a copy of rec's bytes a builder pushed to this holder.
func (p peerAssets) Prefetch(rec raftstore.AssetRecord, from []string) {
	p.n.assets.Prefetch(rec, from)
}
