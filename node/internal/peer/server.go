package peer

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Store is the Raft side the server answers for: *raftstore.Store. ApplyCommand commits only on the leader (one
// hop: a command forwarded to a member that no longer leads is refused, never forwarded again).
type Store interface {
	ApplyCommand(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error)
	PublishCommit()
	ReadIndex(ctx context.Context) (uint64, error)
	Record(kind, id string) ([]byte, bool, error)
}

// Membership takes leaving members out of the Raft configuration, on the leader: raftstore.ErrNotLeader elsewhere,
// ErrKeepVoter for a voter the quorum needs.
type Membership interface {
	RemoveServer(ctx context.Context, id string) error
}

// Blobs is this member's own store of blobs: *cas.Store.
type Blobs interface {
	Open(digest string) (*cas.Blob, error)
	Verify(digest string) error
}

// Assets gets assets for members and keeps copies they push.
type Assets interface {
	// ForPeer gets or builds what a member asked for, never asking another member (one hop), with the asset's
	// index record. ErrStateDiffers when this member plans another recipe key than the asker.
	ForPeer(ctx context.Context, req AssetRequest) (frontends.Asset, raftstore.AssetRecord, error)
	// Prefetch copies rec's bytes here in the background unless they are here, from the members listed first.
	Prefetch(rec raftstore.AssetRecord, from []string)
	// Keep is Prefetch waiting until the bytes are stored and verified.
	Keep(ctx context.Context, rec raftstore.AssetRecord, from []string) error
}

// Builds says which builds run on this member now.
type Builds interface {
	BuildOf(key string) (BuildState, bool)
}

// ServerConfig is what a server is built on.
type ServerConfig struct {
	Secret string // without it (and without MutualTLS) every call answers 403
	// MutualTLS: the server runs on the cluster port (node/internal/clusterport), and a call is a member's when its
	// connection presented a certificate of the cluster CA (checked in the handshake); no secret is asked.
	MutualTLS  bool
	Store      Store
	Membership Membership
	Blobs      Blobs
	Assets     Assets
	Builds     Builds
	// Silence is the askers' silence limit: a member building for them says it is at it three times per limit.
	Silence    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server answers the peer API of this member.
type Server struct {
	cfg          ServerConfig
	authFailures prometheus.Counter
}

// errAuth answers requests without the cluster secret.
var errAuth = errors.New("peer API: missing or wrong cluster secret")

// NewServer makes the server and registers its metrics.
func NewServer(cfg ServerConfig) *Server {
	s := &Server{cfg: cfg, authFailures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgefactory_peer_auth_failures_total",
		Help: "Peer API requests refused: a missing or wrong cluster secret, or no member certificate.",
	})}
	cfg.Registerer.MustRegister(s.authFailures)

	return s
}

// Mount registers the peer routes.
func (s *Server) Mount(r chi.Router) {
	r.Route(Prefix, func(r chi.Router) {
		r.Use(s.authenticate)
		r.Post("/apply", s.apply)
		r.Get("/readindex", s.readIndex)
		r.Get("/records/{kind}/{id}", s.record)
		r.Get("/blobs/{digest}", s.blob)
		r.Get("/assets/{schematic}/{version}/{path}", s.asset)
		r.Get("/talosctl/{version}/{file}", s.talosctl)
		r.Post("/pull", s.pull)
		r.Post("/verify/{digest}", s.verify)
		r.Post("/raft/remove/{id}", s.removeServer)
		r.Get("/builds/{key}", s.build)
	})
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.MutualTLS {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				s.authFailures.Inc()
				http.Error(w, "peer API: a member certificate of the cluster CA is needed", http.StatusForbidden)

				return
			}

			next.ServeHTTP(w, r)

			return
		}

		want := s.cfg.Secret
		got := r.Header.Get("Authorization")

		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+want)) != 1 {
			s.authFailures.Inc()
			http.Error(w, errAuth.Error(), http.StatusForbidden)

			return
		}

		next.ServeHTTP(w, r)
	})
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
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

	res, err := s.cfg.Store.ApplyCommand(r.Context(), cmd)
	if err == nil {
		s.cfg.Store.PublishCommit() // the sender waits to read its write back
	}

	// A refused or conflicting command is an answer (in the result), not a failure of the call.
	if err != nil && !errors.Is(err, raftstore.ErrRejected) && !errors.Is(err, raftstore.ErrConflict) {
		status := http.StatusServiceUnavailable
		if errors.Is(err, raftstore.ErrNotLeader) {
			status = http.StatusMisdirectedRequest
		}

		http.Error(w, err.Error(), status)

		return
	}

	writeJSON(w, res)
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Membership.RemoveServer(r.Context(), chi.URLParam(r, "id")); err != nil {
		status := http.StatusServiceUnavailable

		switch {
		case errors.Is(err, raftstore.ErrNotLeader):
			status = http.StatusMisdirectedRequest
		case errors.Is(err, ErrKeepVoter): // asking again changes nothing
			status = http.StatusConflict
		}

		http.Error(w, err.Error(), status)

		return
	}

	writeJSON(w, struct{}{})
}

func (s *Server) readIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := s.cfg.Store.ReadIndex(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)

		return
	}

	writeJSON(w, struct{ Index uint64 }{idx})
}

// record serves a record of the replicated state as this leader has it once it has applied everything
// acknowledged so far: 404 when there is none, 421 when this member does not lead.
func (s *Server) record(w http.ResponseWriter, r *http.Request) {
	if _, err := s.cfg.Store.ReadIndex(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)

		return
	}

	raw, found, err := s.cfg.Store.Record(chi.URLParam(r, "kind"), chi.URLParam(r, "id"))

	switch {
	case errors.Is(err, raftstore.ErrRecordKind):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "no such record", http.StatusNotFound)
	default:
		writeJSON(w, raw)
	}
}

// blob serves a stored blob by digest, with Range, so a member can resume a copy.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	blob, err := s.cfg.Blobs.Open(chi.URLParam(r, "digest"))
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, cas.ErrNotFound) || errors.Is(err, digest.ErrInvalid) {
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

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, AssetRequest{SchematicID: chi.URLParam(r, "schematic"), Version: chi.URLParam(r, "version"),
		Path: chi.URLParam(r, "path")})
}

func (s *Server) talosctl(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, AssetRequest{Version: chi.URLParam(r, "version"), Path: chi.URLParam(r, "file"), Talosctl: true})
}

// serve gets or builds what a member asks for and streams it with its index record.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, req AssetRequest) {
	req.Key = r.URL.Query().Get("key")
	req.Index, _ = strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)

	type result struct {
		a   frontends.Asset
		rec raftstore.AssetRecord
		err error
	}

	done := make(chan result, 1)

	go func() {
		a, rec, err := s.cfg.Assets.ForPeer(r.Context(), req)
		done <- result{a, rec, err}
	}()

	// A build may take minutes: say, three times per silence limit, that this member is at it.
	beat := time.NewTicker(s.cfg.Silence / 3)
	defer beat.Stop()

	var res result

wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-beat.C:
			w.WriteHeader(http.StatusProcessing)
		}
	}

	switch {
	case errors.Is(res.err, ErrStateDiffers):
		http.Error(w, res.err.Error(), http.StatusConflict)

		return
	case res.err != nil:
		frontends.WriteError(w, r, s.cfg.Logger, res.err)

		return
	}
	defer res.a.Close()

	rec, err := json.Marshal(res.rec)
	if err != nil {
		frontends.WriteError(w, r, s.cfg.Logger, err)

		return
	}

	w.Header().Set(recordHeader, string(rec))
	w.Header().Set("Content-Type", "application/octet-stream")
	frontends.ServeAsset(w, r, res.a)
}

// build answers whether this member builds a recipe key now: its stage and start, or 404.
func (s *Server) build(w http.ResponseWriter, r *http.Request) {
	b, ok := s.cfg.Builds.BuildOf(chi.URLParam(r, "key"))
	if !ok {
		http.Error(w, "no build of this key in flight here", http.StatusNotFound)

		return
	}

	writeJSON(w, b)
}

func (s *Server) pull(w http.ResponseWriter, r *http.Request) {
	var req PullRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	if err := digest.Check(req.Record.Digest); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	if r.URL.Query().Get("wait") == "" {
		s.cfg.Assets.Prefetch(req.Record, req.From)
		w.WriteHeader(http.StatusOK)

		return
	}

	if err := s.cfg.Assets.Keep(r.Context(), req.Record, req.From); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)

		return
	}

	w.WriteHeader(http.StatusOK)
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	d := chi.URLParam(r, "digest")

	err := s.cfg.Blobs.Verify(d)
	switch {
	case errors.Is(err, cas.ErrDigestMismatch):
		s.cfg.Logger.Error("a stored blob was corrupt and has been removed (a peer noticed)", "digest", d)
	case err != nil && !errors.Is(err, cas.ErrNotFound):
		http.Error(w, err.Error(), http.StatusInternalServerError)

		return
	}

	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) //nolint:errcheck,errchkjson // the peer hung up
}
