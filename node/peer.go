package node

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
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

// peerSilence is how long a peer may say nothing before it is abandoned: peerSilenceTimeout unless a test
// shortened it.
func (c Config) peerSilence() time.Duration {
	if c.tune != nil && c.tune.peerSilence > 0 {
		return c.tune.peerSilence
	}

	return peerSilenceTimeout
}

// errPeerSilent ends a request to a peer that said nothing for the silence limit.
var errPeerSilent = errors.New("peer sent nothing")

// errPeerAuth answers requests without the cluster secret.
var errPeerAuth = errors.New("peer API: missing or wrong cluster secret")

// peerClient calls other members' peer APIs.
type peerClient struct {
	secret string
	// quick is for calls answered at once; stream has no overall timeout (a peer may build for minutes) but a
	// connect limit, and open abandons a peer silent for longer than silence (callers do the same on the body).
	quick, stream *http.Client
	silence       time.Duration
}

func newPeerClient(secret string, silence time.Duration) *peerClient {
	dial := (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext

	return &peerClient{
		secret:  secret,
		silence: silence,
		quick: &http.Client{Timeout: peerTimeout, Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		}},
		stream: &http.Client{Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		}},
	}
}

func (c *peerClient) request(ctx context.Context, method, base, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}

	req, err := http.NewRequestWithContext(ctx, method, base+peerPrefix+path, rd)
	if err != nil {
		return nil, err
	}

	req.Header.Set("Authorization", "Bearer "+c.secret)

	if id := frontends.RequestID(ctx); id != "" {
		req.Header.Set("X-Request-ID", id)
	}

	return req, nil
}

// peerError is a failed peer call; Status is 0 when the peer could not be reached.
type peerError struct {
	Peer   string
	Status int
	Msg    string
}

func (e *peerError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("peer %s: %s", e.Peer, e.Msg)
	}

	return fmt.Sprintf("peer %s: %d %s", e.Peer, e.Status, e.Msg)
}

// do sends req and decodes a JSON answer into out (when non-nil).
func (c *peerClient) do(client *http.Client, req *http.Request, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}

	if resp.StatusCode != http.StatusOK {
		return &peerError{Peer: req.URL.Host, Status: resp.StatusCode, Msg: string(bytes.TrimSpace(body))}
	}

	if out == nil {
		return nil
	}

	return json.Unmarshal(body, out)
}

// apply forwards a Raft command to the leader at base.
func (c *peerClient) apply(ctx context.Context, base string, cmd raftstore.Command) (raftstore.Result, error) {
	body, err := raftstore.EncodeCommand(cmd)
	if err != nil {
		return raftstore.Result{}, err
	}

	req, err := c.request(ctx, http.MethodPost, base, "/apply", body)
	if err != nil {
		return raftstore.Result{}, err
	}

	var res raftstore.Result
	if err := c.do(c.quick, req, &res); err != nil {
		return raftstore.Result{}, err
	}

	return res, res.Err()
}

// removeServer asks the leader at base to remove member id from the Raft configuration.
func (c *peerClient) removeServer(ctx context.Context, base, id string) error {
	req, err := c.request(ctx, http.MethodPost, base, "/raft/remove/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// readIndex asks the leader at base for its read index: an applied index covering every acknowledged write.
func (c *peerClient) readIndex(ctx context.Context, base string) (uint64, error) {
	req, err := c.request(ctx, http.MethodGet, base, "/readindex", nil)
	if err != nil {
		return 0, err
	}

	var out struct{ Index uint64 }

	return out.Index, c.do(c.quick, req, &out)
}

// pull asks the member at base to fetch a blob (described by rec) into its store, from the members listed.
func (c *peerClient) pull(ctx context.Context, base string, p pullRequest) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}

	req, err := c.request(ctx, http.MethodPost, base, "/pull", body)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// verify asks the member at base to re-hash its copy of digest (it sent bytes that did not match).
func (c *peerClient) verify(ctx context.Context, base, digest string) error {
	req, err := c.request(ctx, http.MethodPost, base, "/verify/"+digest, nil)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// open starts a streamed download from a peer: a blob from offset, or an asset the peer gets or builds. The caller
// reads and closes the body; the response must be 200 (or 206 for a ranged blob). A peer that answers nothing for
// the silence limit is abandoned; one that builds first keeps the request alive with heartbeats (102 Processing).
func (c *peerClient) open(ctx context.Context, base, path string, offset int64) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	silent := time.AfterFunc(c.silence, func() { cancel(fmt.Errorf("%w for %s", errPeerSilent, c.silence)) })
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(int, textproto.MIMEHeader) error {
			silent.Reset(c.silence)

			return nil
		},
	})

	req, err := c.request(ctx, http.MethodGet, base, path, nil)
	if err != nil {
		cancel(nil)

		return nil, err
	}

	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}

	resp, err := c.stream.Do(req)
	silent.Stop()

	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errPeerSilent) {
			err = cause
		}

		cancel(nil)

		return nil, &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}

	// The body lives on in the caller's hands: the request's context ends when it is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}

	if resp.StatusCode == http.StatusOK && offset == 0 || resp.StatusCode == http.StatusPartialContent && offset > 0 {
		return resp, nil
	}

	defer resp.Body.Close()

	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

	return nil, &peerError{Peer: req.URL.Host, Status: resp.StatusCode, Msg: string(bytes.TrimSpace(msg))}
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()

	return err
}

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
		r.Get("/blobs/{digest}", p.blob)
		r.Get("/assets/{schematic}/{version}/{path}", p.asset)
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
	ctx := r.Context()

	if idx, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64); err == nil {
		// The asker's state was at idx: catch up so the schematic and catalog it planned with are here too.
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p.n.store.WaitApplied(waitCtx, idx) //nolint:errcheck // planning below reports what is missing
		cancel()
	}

	r2, err := p.n.plan(ctx, chi.URLParam(r, "schematic"), chi.URLParam(r, "version"), chi.URLParam(r, "path"),
		recipe.ParsePath)
	if err != nil {
		frontends.WriteError(w, r, p.n.log, err)

		return
	}

	if want := r.URL.Query().Get("key"); want != "" && want != r2.Key {
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

	if err := cas.CheckDigest(req.Record.Digest); err != nil {
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
// the same asset) with the key and state index that pin the asker's plan.
func peerAssetPath(r recipe.Recipe, index uint64) string {
	q := url.Values{"key": {r.Key}, "index": {strconv.FormatUint(index, 10)}}

	return "/assets/" + url.PathEscape(r.SchematicID) + "/" + url.PathEscape(r.Version) + "/" +
		url.PathEscape(r.Asset.Path) + "?" + q.Encode()
}
