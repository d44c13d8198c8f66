package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	digests "github.com/edgefactory/edgefactory/internal/digest"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/raftstore"
)

// The peer API lives under /_peer/ on the public listener. It is the cluster's own protocol — forwarded Raft
// writes, read barriers, blobs by digest, build-or-fetch by recipe — never public API, and every request carries
// the cluster secret.
const (
	peerPrefix = "/_peer"
	// recordHeader carries the asset index record (JSON) with a streamed asset.
	recordHeader = "X-Edgefactory-Asset"
	// peerTimeout bounds peer calls that answer at once (apply, read index, pull).
	peerTimeout = 15 * time.Second
	// peerSilenceTimeout abandons a peer that sends nothing for this long while a request waits on it: no
	// response (a member that accepts connections but is stuck: stopped, deadlocked, on a dead disk), or no bytes
	// of a body under way. A member building for minutes is not silent: it sends a heartbeat while it builds.
	// The request goes on with the next holder, so a stuck member does not hold a download forever.
	peerSilenceTimeout = 30 * time.Second
)

// errPeerAuth answers requests without the cluster secret.
var errPeerAuth = errors.New("peer API: missing or wrong cluster secret")

// pullRequest asks a member to keep a copy of an asset's bytes.
type pullRequest struct {
	Record raftstore.AssetRecord `json:"record"`
	From   []string              `json:"from"` // member names to fetch from, in order
}

// peerAPI serves the peer routes of this node.
type peerAPI struct {
	n *Node
}

// mount registers the peer routes; without a cluster secret they all answer 403.
func (p *peerAPI) mount(r chi.Router) {
	r.Route(peerPrefix, func(r chi.Router) {
		r.Use(p.authenticate)
		r.Post("/apply", p.apply)
		r.Get("/readindex", p.readIndex)
		r.Get("/records/{kind}/{id}", p.record)
		r.Get("/blobs/{digest}", p.blob)
		r.Get("/assets/{schematic}/{version}/{path}", p.asset)
		r.Get("/talosctl/{version}/{file}", p.talosctl)
		r.Post("/pull", p.pull)
		r.Post("/verify/{digest}", p.verify)
		r.Post("/raft/remove/{id}", p.removeServer)
	})
}

func (p *peerAPI) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := p.n.cfg.ClusterSecret
		got := r.Header.Get("Authorization")

		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+want)) != 1 {
			p.n.metrics.peerAuthFailures.Inc()
			http.Error(w, errPeerAuth.Error(), http.StatusForbidden)

			return
		}

		next.ServeHTTP(w, r)
	})
}

func (p *peerAPI) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, raftstore.MaxCommandSize+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	cmd, err := raftstore.DecodeCommand(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	// One hop: a command forwarded to a node that no longer leads is refused, never forwarded again; the sender
	// retries with the leader it learns of.
	res, err := p.n.store.ApplyCommand(r.Context(), cmd)
	if err == nil {
		p.n.store.PublishCommit() // the sender waits to read its write back
	}

	if err != nil && !errors.Is(err, raftstore.ErrRejected) && !errors.Is(err, raftstore.ErrConflict) {
		status := http.StatusServiceUnavailable
		if errors.Is(err, raftstore.ErrNotLeader) {
			status = http.StatusMisdirectedRequest
		}

		http.Error(w, err.Error(), status)

		return
	}

	writeJSONResponse(w, res)
}

// removeServer takes a leaving member out of the Raft configuration; only the leader does (one hop, like apply).
func (p *peerAPI) removeServer(w http.ResponseWriter, r *http.Request) {
	if err := p.n.raft.removeServer(r.Context(), chi.URLParam(r, "id")); err != nil {
		status := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, raftstore.ErrNotLeader):
			status = http.StatusMisdirectedRequest
		case errors.Is(err, errKeepVoter): // the member stays a voter: asking again changes nothing
			status = http.StatusConflict
		}

		http.Error(w, err.Error(), status)

		return
	}

	writeJSONResponse(w, struct{}{})
}

func (p *peerAPI) readIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := p.n.store.ReadIndex(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)

		return
	}

	writeJSONResponse(w, struct{ Index uint64 }{idx})
}

// record serves a record of the replicated state (records.go) as this leader has it after applying everything
// acknowledged so far: 404 when there is none, 421 when this node does not lead (one hop: the asker retries with
// the leader it learns of).
func (p *peerAPI) record(w http.ResponseWriter, r *http.Request) {
	if _, err := p.n.store.ReadIndex(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)

		return
	}

	raw, found, err := p.n.localRecord(chi.URLParam(r, "kind"), chi.URLParam(r, "id"))
	switch {
	case errors.Is(err, errRecordKind):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "no such record", http.StatusNotFound)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(raw) //nolint:errcheck // the peer hung up
	}
}

// blob serves a stored blob by digest, with Range, so a peer can resume a transfer.
func (p *peerAPI) blob(w http.ResponseWriter, r *http.Request) {
	blob, err := p.n.cas.Open(chi.URLParam(r, "digest"))
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, cas.ErrNotFound) || errors.Is(err, cas.ErrInvalidDigest) {
			status = http.StatusNotFound
		}

		http.Error(w, err.Error(), status)

		return
	}
	defer blob.Close()

	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Sha256", blob.Digest())
	http.ServeContent(w, r, "", time.Time{}, blob.File())
}

// asset gets or builds an asset for a peer and streams it. One hop: it never asks another node to build.
func (p *peerAPI) asset(w http.ResponseWriter, r *http.Request) {
	p.serve(w, r, func(ctx context.Context) (recipe.Recipe, error) {
		return p.n.plan(ctx, chi.URLParam(r, "schematic"), chi.URLParam(r, "version"), chi.URLParam(r, "path"),
			recipe.ParsePath)
	})
}

// talosctl gets (copies out of its image) a talosctl binary for a peer and streams it, as asset does.
func (p *peerAPI) talosctl(w http.ResponseWriter, r *http.Request) {
	p.serve(w, r, func(ctx context.Context) (recipe.Recipe, error) {
		return p.n.planTalosctl(ctx, chi.URLParam(r, "version"), chi.URLParam(r, "file"))
	})
}

// serve plans what a peer asks for, gets or builds it and streams it with its index record. The asker's plan is
// pinned by the query: the key it planned, and its state index. Planning reads what this node lacks from the leader
// (records.go), so it never waits for the log; only a plan that differs while this node is behind the asker (a
// catalog that changed meanwhile) waits for the log to reach the asker's index, and is planned again.
func (p *peerAPI) serve(w http.ResponseWriter, r *http.Request, plan func(context.Context) (recipe.Recipe, error)) {
	ctx := r.Context()
	want := r.URL.Query().Get("key")

	r2, err := plan(ctx)
	if idx, perr := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64); err == nil && want != "" &&
		want != r2.Key && perr == nil && p.n.store.AppliedIndex() < idx {
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p.n.store.WaitApplied(waitCtx, idx) //nolint:errcheck // planning again reports what still differs
		cancel()

		r2, err = plan(ctx)
	}

	if err != nil {
		frontends.WriteError(w, r, p.n.log, err)

		return
	}

	if want != "" && want != r2.Key {
		http.Error(w, fmt.Sprintf("recipe key mismatch: asked for %s, planned %s (state differs)", want, r2.Key),
			http.StatusConflict)

		return
	}

	a, err := p.whileAlive(w, func() (frontends.Asset, error) { return p.n.assets.get(ctx, r2, true) })
	if err != nil {
		frontends.WriteError(w, r, p.n.log, err)

		return
	}
	defer a.Close()

	rec, err := json.Marshal(raftstore.AssetRecord{
		Key: r2.Key, Digest: a.Digest(), Size: a.Size(), MediaType: a.MediaType(), Filename: a.Filename(),
		Builder: p.n.cfg.NodeName,
	})
	if err != nil {
		frontends.WriteError(w, r, p.n.log, err)

		return
	}

	if stored, ok, _ := p.n.store.Asset(r2.Key); ok {
		rec, _ = json.Marshal(stored) //nolint:errchkjson // a record always marshals
	}

	w.Header().Set(recordHeader, string(rec))
	w.Header().Set("Content-Type", "application/octet-stream")
	frontends.ServeAsset(w, r, a)
}

// whileAlive runs get (which may build for minutes) and meanwhile tells the asking peer, three times per silence
// limit, that this node is at it (102 Processing): the asker abandons a member that says nothing, not one that
// builds.
func (p *peerAPI) whileAlive(w http.ResponseWriter, get func() (frontends.Asset, error)) (frontends.Asset, error) {
	type result struct {
		a   frontends.Asset
		err error
	}

	done := make(chan result, 1)

	go func() {
		a, err := get()
		done <- result{a, err}
	}()

	beat := time.NewTicker(p.n.peers.silence / 3)
	defer beat.Stop()

	for {
		select {
		case res := <-done:
			return res.a, res.err
		case <-beat.C:
			w.WriteHeader(http.StatusProcessing)
		}
	}
}

func (p *peerAPI) pull(w http.ResponseWriter, r *http.Request) {
	var req pullRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	if err := digests.Check(req.Record.Digest); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	p.n.assets.prefetch(req.Record, req.From)
	w.WriteHeader(http.StatusOK)
}

func (p *peerAPI) verify(w http.ResponseWriter, r *http.Request) {
	digest := chi.URLParam(r, "digest")

	err := p.n.cas.Verify(digest)
	switch {
	case errors.Is(err, cas.ErrDigestMismatch):
		p.n.log.Error("a stored blob was corrupt and has been removed (a peer noticed)", "digest", digest)
	case err != nil && !errors.Is(err, cas.ErrNotFound):
		http.Error(w, err.Error(), http.StatusInternalServerError)

		return
	}

	w.WriteHeader(http.StatusOK)
}

func writeJSONResponse(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) //nolint:errcheck,errchkjson // the peer hung up
}

// peerAssetPath is the peer API path of a recipe's asset (its normalised path, which the peer parses back into
// the same asset; a talosctl binary's version and name) with the key and state index that pin the asker's plan.
func peerAssetPath(r recipe.Recipe, index uint64) string {
	q := url.Values{"key": {r.Key}, "index": {strconv.FormatUint(index, 10)}}

	if r.Talosctl != nil {
		return "/talosctl/" + url.PathEscape(r.Version) + "/" + url.PathEscape(r.Talosctl.Name) + "?" + q.Encode()
	}

	return "/assets/" + url.PathEscape(r.SchematicID) + "/" + url.PathEscape(r.Version) + "/" +
		url.PathEscape(r.Asset.Path) + "?" + q.Encode()
}
