// Package assets is the miss path: it finds the verified bytes of an asset by recipe key on this member, on the
// members that hold it, or by building it once cluster-wide (the key's owner on the ring builds; everyone else asks
// the owner), and copies bytes between members with their health remembered (members that sent corrupt bytes,
// copies lost cluster-wide). Blob finds any blob the cluster knows by digest; Ingest stores bytes arriving from
// outside the cluster; Put stores small bytes made here.
//
// Guarantee: no byte reaches a client past what has been verified against the asset's digest at the end of a
// copy (a corrupt copy ends every response short and is never stored); every asset is built at most once per
// recipe key on a member (single flight), and a key already recorded is fetched, never built again, unless its bytes
// are lost cluster-wide (builds are reproducible).
package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Members is what the asset service needs to know about the other members: who builds a key, who should hold it,
// and how to reach a member.
type Members interface {
	Self() string
	// Builders lists the alive members that may build (the cluster's build profile, role build, no degraded
	// tool), in ring order for key on a ring of their own: the one that builds it first.
	Builders(key string) []string
	// CannotBuild says why this member may not build, nil when it may; NoBuilders says why no alive member may.
	CannotBuild() error
	NoBuilders() error
	// Holders places a recipe key's copies on the ring of all alive members (the owner first).
	Holders(key string, n int) []string
	// Members lists alive members, sorted, including this one.
	Members() []string
	// URL is a member's advertised base URL.
	PeerURL(name string) (string, bool)
	// RingVersion changes with every membership change; it is logged with routing decisions.
	RingVersion() uint64
}

// Leader is the way to the Raft leader: writes from any member, and asset records this member may lack.
type Leader interface {
	raftstore.Applier
	// AssetFromLeader reads a key's record as the leader has it (this member may be behind the log), waiting
	// through an election.
	AssetFromLeader(ctx context.Context, key string) (raftstore.AssetRecord, bool, error)
}

// Config is what the asset service is built on.
type Config struct {
	Store    *raftstore.Store // reads of the asset index
	CAS      *cas.Store
	Builder  *imager.Builder
	Members  Members
	Leader   Leader
	Peers    *peer.Client
	Replicas func() int // members holding each asset (the cluster setting in force)
	// Profile is the ID of this member's build profile, recorded with what it builds.
	Profile string
	// Background is the member's lifetime: copies to and from peers end with it.
	Background context.Context //nolint:containedctx // a lifetime, not a request
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock of what a member remembers about copies that went wrong (nil: time.Now; tests move it).
	Now func() time.Time
}

// Service finds an asset by recipe key, along the miss path (docs/architecture.md): the replicated index says which
// bytes a key means; the local CAS may hold them; else they stream from a member that has them (verified, with a
// read-through copy kept here); a key nobody has built is built once, by its owner on the ring, and every other
// member asks the owner (one hop: a member asked by a peer never asks further, it builds).
type Service struct {
	store    *raftstore.Store
	cas      *cas.Store
	builder  *imager.Builder
	cluster  Members
	leader   Leader
	peers    *peer.Client
	replicas func() int // the cluster setting in force
	profile  string     // this member's build profile ID
	metrics  *metrics
	log      *slog.Logger
	bg       context.Context  //nolint:containedctx // the member's lifetime: background transfers end with it
	now      func() time.Time // Config.Now

	flight singleflight.Group // per recipe key: one build, or one request to the owner, per member

	mu       sync.Mutex
	inflight map[string]*transfer // by digest: copies arriving from peers
	bad      map[string]map[string]time.Time
	lost     map[string]time.Time   // by digest: when a copy last failed with no member delivering verified bytes
	failed   map[string]failedBuild // by recipe key: the imager's last failure, if less than failedBuildHold ago

	building building // the builds in flight here, with their stages
	problems problems // recent failed builds and corrupt copies
	// requests counts Get calls; hits those answered from the local store.
	requests, hits atomic.Uint64
}

// New makes the asset service and registers its metrics.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	return &Service{
		store: cfg.Store, cas: cfg.CAS, builder: cfg.Builder, cluster: cfg.Members, leader: cfg.Leader,
		peers: cfg.Peers, replicas: cfg.Replicas, profile: cfg.Profile, metrics: newMetrics(cfg.Registerer, cfg.Builder),
		log: cfg.Logger, bg: cfg.Background, now: cfg.Now, inflight: map[string]*transfer{},
		bad:  map[string]map[string]time.Time{},
		lost: map[string]time.Time{}, failed: map[string]failedBuild{},
	}
}

// Transfers counts the copies arriving from peers now.
func (s *Service) Transfers() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return len(s.inflight)
}

// failedBuildHold is how long the error of a failed build answers requests for the same recipe before it is
// built again. A rack retrying the asset of a broken release or an unreachable mirror would otherwise start a
// build, and a pull from upstream, for every retry of every machine.
const failedBuildHold = 10 * time.Second

type failedBuild struct {
	err  error
	when time.Time
}

// Stored is an asset open for reading from this member's store; it implements frontends.Asset.
type Stored struct {
	blob  *cas.Blob
	rec   raftstore.AssetRecord
	whole bool // answered whole whatever Range asks (see wholeOnly)
}

func (a *Stored) Content() io.ReadSeeker { return a.blob.File() }
func (a *Stored) Size() int64            { return a.rec.Size }
func (a *Stored) Digest() string         { return a.rec.Digest }
func (a *Stored) MediaType() string      { return a.rec.MediaType }
func (a *Stored) Filename() string       { return a.rec.Filename }
func (a *Stored) Close() error           { return a.blob.Close() }
func (a *Stored) WholeOnly() bool        { return a.whole }

// File is the stored file, for readers that need it whole (read it with ReadAt: Content shares its offset).
func (a *Stored) File() *os.File { return a.blob.File() }

var errMiss = errors.New("asset not stored on this node")

// Get returns the asset of r. fromPeer marks a request another node sent (the one-hop rule: build, never forward).
func (s *Service) Get(ctx context.Context, r recipe.Recipe, fromPeer bool) (frontends.Asset, error) {
	s.requests.Add(1)

	rec, known, err := s.store.Asset(r.Key)
	if err != nil {
		return nil, fmt.Errorf("read asset index: %w", err)
	}

	if known {
		if a, err := s.local(rec); err == nil {
			s.metrics.cacheHits.Inc()
			s.hits.Add(1)

			return a, nil
		} else if !errors.Is(err, errMiss) {
			return nil, err
		}

		// Built somewhere, not here: stream it from a member that has it, keeping a verified copy — unless the
		// last try found no member with a verified copy (holders gone, or their copies corrupt and dropped):
		// then build it again here, which gives the same bytes (builds are reproducible).
		if !s.lostRecently(rec.Digest) {
			if t := s.fetch(rec, s.sources(r.Key, rec)); t != nil {
				return s.attach(ctx, t)
			}
		}
	} else if !fromPeer {
		builders := s.cluster.Builders(r.Key)
		if len(builders) == 0 {
			return nil, unavailable(s.cluster.NoBuilders())
		}

		if builders[0] != s.cluster.Self() {
			a, err := s.fromHolders(ctx, r)
			if err == nil {
				return a, nil
			}

			if ctx.Err() != nil {
				return nil, ctx.Err()
			}

			if s.cluster.CannotBuild() != nil {
				return nil, err
			}

			s.log.Warn("no member that may build could deliver it; building here", "key", r.Key[:16],
				"builder", builders[0], "ring", s.cluster.RingVersion(), "error", err)
		}
	}

	if err := s.cluster.CannotBuild(); err != nil {
		if known && !fromPeer {
			// Its bytes are lost: a member that may build makes them again.
			return s.fromHolders(ctx, r)
		}

		return nil, unavailable(err)
	}

	return s.buildHere(ctx, r, known)
}

// unavailable presents a refusal to build as a 503: another member may build, or a change of the cluster's build
// profile, roles or tools would let one.
func unavailable(err error) error {
	return frontends.NewError(frontends.ClassUnavailable, err.Error(), err)
}

// Complete returns r's asset from the local store: when its bytes come from a peer, it waits until the copy here
// is complete and verified (for callers that need the whole file, like installer image assembly).
func (s *Service) Complete(ctx context.Context, r recipe.Recipe) (*Stored, error) {
	a, err := s.Get(ctx, r, false)
	if err != nil {
		return nil, err
	}

	if stored, ok := a.(*Stored); ok {
		return stored, nil
	}

	defer a.Close()

	// A copy arriving from a peer: its last byte can be read before it is stored, so wait for the store itself.
	if t, ok := a.(*transferAsset); ok {
		if err := t.t.stored(ctx); err != nil {
			return nil, fmt.Errorf("copy %s here: %w", r.Asset.Path, err)
		}
	}

	return s.local(raftstore.AssetRecord{Key: r.Key, Digest: a.Digest(), Size: a.Size(), MediaType: a.MediaType(),
		Filename: a.Filename()})
}

// local opens the bytes rec names, if this node has them.
func (s *Service) local(rec raftstore.AssetRecord) (*Stored, error) {
	blob, err := s.cas.Open(rec.Digest)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, errMiss
	}

	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rec.Digest, err)
	}

	return &Stored{blob: blob, rec: rec, whole: s.wholeOnly(rec.Digest)}, nil
}

// buildHere builds r on this node (once, however many requests wait), then serves what the index recorded.
// recorded says the index already has r (its bytes are lost: build them again). Otherwise this node first asks
// the leader for the key's record, since it may be behind the log (just joined, or back from a partition) and the
// key built already: then it fetches those bytes instead. Without a reachable leader it builds nothing, as it could
// not record the build.
func (s *Service) buildHere(ctx context.Context, r recipe.Recipe, recorded bool) (frontends.Asset, error) {
	if err := s.cluster.CannotBuild(); err != nil { // Get routes elsewhere first: this is the last word
		return nil, unavailable(err)
	}

	ch := s.flight.DoChan(r.Key, func() (any, error) {
		ctx := context.WithoutCancel(ctx)

		stage, end := s.building.begin(r, time.Now())
		ended := false

		defer func() {
			if !ended {
				end()
			}
		}()

		if !recorded {
			rec, ok, err := s.leader.AssetFromLeader(ctx, r.Key)
			if err != nil {
				return raftstore.AssetRecord{}, fmt.Errorf("before building %s: %w", r.Asset.Path, err)
			}

			if ok {
				return rec, nil
			}
		}

		ended = true // the build ends the entry, once its copies are pushed

		return s.build(ctx, r, stage, end)
	})

	rec, err := await[raftstore.AssetRecord](ctx, ch)
	if err != nil {
		return nil, err
	}

	a, err := s.local(rec)
	if errors.Is(err, errMiss) {
		// An earlier build of this recipe by another node was recorded first with other bytes: fetch those.
		if t := s.fetch(rec, s.sources(r.Key, rec)); t != nil {
			return s.attach(ctx, t)
		}
	}

	return a, err
}

// recentFailure returns the error of the build of key that failed less than failedBuildHold ago, saying so.
func (s *Service) recentFailure(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	f, ok := s.failed[key]
	if !ok {
		return nil
	}

	age := time.Since(f.when)
	if age >= failedBuildHold {
		delete(s.failed, key)

		return nil
	}

	return fmt.Errorf("%w (this build failed %s ago and is tried again %s after it failed)", f.err,
		age.Round(time.Second), failedBuildHold)
}

// markFailed remembers that the build of key failed with err, and forgets failures older than failedBuildHold.
func (s *Service) markFailed(key string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	for k, f := range s.failed {
		if time.Since(f.when) >= failedBuildHold {
			delete(s.failed, k)
		}
	}

	s.failed[key] = failedBuild{err: err, when: time.Now()}
}

// build runs the imager for r, stores the verified output in the CAS, commits its index record (the first record
// of a key wins cluster-wide) and pushes copies to the key's other holders. It tells stage the step it is at and
// calls end when the build is over: once the copies are pushed, which goes on after it returns.
func (s *Service) build(ctx context.Context, r recipe.Recipe, stage func(string), end func()) (
	_ raftstore.AssetRecord, err error,
) {
	pushing := false

	defer func() {
		if !pushing {
			end()
		}
	}()

	log := s.log.With("key", r.Key[:16], "asset", r.Asset.Path, "version", r.Version, "request_id", frontends.RequestID(ctx),
		"ring", s.cluster.RingVersion())
	if r.SchematicID != "" { // a talosctl binary has none
		log = log.With("schematic", r.SchematicID[:min(16, len(r.SchematicID))])
	}
	start := time.Now()

	if err := s.recentFailure(r.Key); err != nil {
		return raftstore.AssetRecord{}, err
	}

	log.Info("building asset")

	stage(string(imager.StageQueued))

	out, err := s.builder.BuildReporting(ctx, r, imagerStages(stage))

	var full *imager.QueueFullError
	if errors.As(err, &full) {
		s.metrics.builds.WithLabelValues(r.Kind(), "refused").Inc()

		return raftstore.AssetRecord{}, err // not the recipe's failure: nothing to hold against it
	}

	if err != nil {
		s.metrics.builds.WithLabelValues(r.Kind(), "failed").Inc()
		s.problem("build "+r.Asset.Path+" "+r.Version+" ("+r.Key[:16]+")", err)
		attrs := []any{"error", err, "duration", time.Since(start).Round(time.Millisecond)}
		if output := imager.RecentStderr(); len(output) > 0 {
			attrs = append(attrs, "imager_output", output)
		}

		log.Error("build failed", attrs...)

		err = buildError(err)
		s.markFailed(r.Key, err) // the imager's failure only: storing or recording the bytes is retried at once

		return raftstore.AssetRecord{}, err
	}
	defer out.Cleanup()

	stage(StageStoring)

	digest, size, err := s.cas.Import(out.Path, "")
	if err != nil {
		s.metrics.builds.WithLabelValues(r.Kind(), "failed").Inc()
		s.problem("store built "+r.Asset.Path+" ("+r.Key[:16]+")", err)

		return raftstore.AssetRecord{}, fmt.Errorf("store built %s: %w", r.Asset.Path, err)
	}

	s.Found(digest)

	rec, err := raftstore.PutAsset(ctx, s.leader, raftstore.AssetRecord{
		Key:       r.Key,
		Digest:    digest,
		Size:      size,
		MediaType: recipe.MediaType(r.Asset),
		Filename:  r.Asset.Filename(),
		Builder:   s.cluster.Self(),
		Profile:   s.profile,
		Created:   time.Now().UTC(),
	})
	if err != nil {
		s.problem("record built "+r.Asset.Path+" ("+r.Key[:16]+")", err)

		return raftstore.AssetRecord{}, fmt.Errorf("record built %s: %w", r.Asset.Path, err)
	}

	if rec.Digest != digest {
		// A duplicate build (tolerated during a partition): the first record wins, these bytes are dropped.
		s.metrics.buildConflicts.Inc()
		log.Warn("a different build of this recipe was recorded first; keeping the recorded bytes",
			"ours", digest, "recorded", rec.Digest)
	}

	s.metrics.builds.WithLabelValues(r.Kind(), "ok").Inc()
	s.metrics.buildSeconds.WithLabelValues(r.Kind()).Observe(time.Since(start).Seconds())
	log.Info("asset built", "digest", digest, "size", size, "duration", time.Since(start).Round(time.Millisecond))

	if rec.Digest == digest {
		stage(StageCopying)

		pushing = true
		s.push(r.Key, rec, end)
	}

	return rec, nil
}

// problem remembers a failure for the status pages.
func (s *Service) problem(what string, err error) {
	s.problems.add(Problem{Time: time.Now().UTC(), What: what, Error: err.Error()})
}

// buildError presents a failed build to the client with its failing step; the frontend adds the request ID that
// finds the build's log lines.
func buildError(err error) error {
	if frontends.Classify(err) != frontends.ClassInternal {
		return err
	}

	return fmt.Errorf("build failed: %w", err)
}
