package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/edgefactory/edgefactory/frontends/status"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/internal/peer"
)

// The states of an asset, as GET /ui/api/asset-status answers them (frontends/status).
const (
	AssetCached   = status.AssetCached
	AssetBuilding = status.AssetBuilding
	AssetNotBuilt = status.AssetNotBuilt
)

// AssetStatus is the answer of GET /ui/api/asset-status.
type AssetStatus = status.Asset

// ownerAskTimeout bounds the question to the key's owner whether it builds it.
const ownerAskTimeout = 2 * time.Second

// AssetStatus plans an asset as /image does (an invalid path is the same error) and says whether it is cached,
// being built (here, or by the key's owner, asked over the peer API) or not built. It never builds anything.
func (n *Node) AssetStatus(ctx context.Context, schematicID, version, path string) (AssetStatus, error) {
	r, err := n.catalog.Plan(ctx, schematicID, version, path, recipe.ParsePath)
	if err != nil {
		return AssetStatus{}, err
	}

	st := AssetStatus{State: AssetNotBuilt, Key: r.Key}

	rec, known, err := n.store.Asset(r.Key)
	if err != nil {
		return AssetStatus{}, err
	}

	if known {
		st.State, st.Member = AssetCached, rec.Builder
		if n.cas.Has(rec.Digest) {
			st.Member = n.cfg.NodeName
		}

		return st, nil
	}

	if b, ok := n.assets.BuildOf(r.Key); ok {
		return building(st, n.cfg.NodeName, b.Stage, b.Started), nil
	}

	builders := n.cluster.Builders(r.Key)
	if len(builders) == 0 {
		return st, nil
	}

	owner := builders[0] // the member that builds it

	st.Member = owner

	base, ok := n.cluster.PeerURL(owner)
	if owner == n.cfg.NodeName || !ok {
		return st, nil
	}

	askCtx, cancel := context.WithTimeout(ctx, ownerAskTimeout)
	defer cancel()

	b, found, err := n.peers.Build(askCtx, base, r.Key)
	if err != nil {
		n.log.Debug("asset status: the key's owner did not say whether it builds it", "owner", owner, "error", err)
	}

	if found {
		return building(st, owner, b.Stage, b.Started), nil
	}

	// Built a moment ago: the owner has finished, but this member's copy of the log may not yet hold the record.
	// The leader's says cached (records are immutable, so its copy is as good as ours).
	if rec, ok, err := n.cluster.AssetFromLeader(askCtx, r.Key); err == nil && ok {
		st.State, st.Member = AssetCached, rec.Builder
	}

	return st, nil
}

func building(st AssetStatus, member, stage string, started time.Time) AssetStatus {
	st.State, st.Member, st.Stage, st.Started = AssetBuilding, member, stage, started.UTC()
	st.ElapsedSeconds = elapsedSeconds(started, time.Now())

	return st
}

// assetStatus serves GET /ui/api/asset-status?schematic=&version=&path=.
func (n *Node) assetStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	schematicID, version, path := q.Get("schematic"), q.Get("version"), q.Get("path")

	if schematicID == "" || version == "" || path == "" {
		frontends.WriteError(w, r, n.log, frontends.NewError(frontends.ClassInvalid,
			"asset status: the query needs schematic, version and path", nil))

		return
	}

	st, err := n.AssetStatus(r.Context(), schematicID, version, path)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st) //nolint:errcheck,errchkjson // the client hung up
}

// peerBuilds tells members which builds run here (peer.Builds).
type peerBuilds struct{ n *Node }

func (p peerBuilds) BuildOf(key string) (peer.BuildState, bool) {
	b, ok := p.n.assets.BuildOf(key)
	if !ok {
		return peer.BuildState{}, false
	}

	return peer.BuildState{Key: b.Key, Member: p.n.cfg.NodeName, Stage: b.Stage, Started: b.Started}, true
}
