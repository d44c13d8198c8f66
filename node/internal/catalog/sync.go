package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/raftstore"
)

// catalogSync keeps the replicated catalog equal to what the upstream registry publishes. Only the Raft leader
// runs it, so followers serve catalog endpoints with zero upstream traffic. A version is written whole or not at
// all; one whose catalog cannot be read is logged and retried on the next, shorter, round. Its talosctl binaries
// (from the large talosctl-all image) are read after every version's catalog, and written on their own.
type catalogSync struct {
	src      release.Source
	store    *raftstore.Store
	refresh  time.Duration
	recheck  time.Duration
	retry    time.Duration
	metrics  *metrics
	log      *slog.Logger
	readConc int

	mu        sync.Mutex
	policy    *policy // set by SetPolicy, taken into src by the next round
	lastErr   error
	checkedAt map[string]time.Time // when each known version was last read in full
}

func newCatalogSync(src release.Source, store *raftstore.Store, refresh, recheck time.Duration, m *metrics,
	log *slog.Logger,
) *catalogSync {
	return &catalogSync{
		src: src, store: store, refresh: refresh, recheck: recheck, retry: min(30*time.Second, refresh),
		metrics: m, log: log, readConc: 4, checkedAt: map[string]time.Time{},
	}
}

// policy is what the cluster settings say of the catalog.
type policy struct {
	minVersion string
	broken     []string
	refresh    time.Duration
}

// setPolicy records the policy the next round follows.
func (s *catalogSync) setPolicy(p policy) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.policy = &p

	if p.refresh > 0 {
		s.refresh, s.retry = p.refresh, min(30*time.Second, p.refresh)
	}
}

// takePolicy moves a policy set since the last round into the source the round reads.
func (s *catalogSync) takePolicy() {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.policy != nil {
		s.src.MinVersion, s.src.Broken = s.policy.minVersion, s.policy.broken
		s.policy = nil
	}
}

// intervals returns the refresh and retry intervals in force.
func (s *catalogSync) intervals() (refresh, retry time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.refresh, s.retry
}

func (s *catalogSync) retryInterval() time.Duration {
	_, retry := s.intervals()

	return retry
}

func (s *catalogSync) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.lastErr
}

// setLastError records the outcome of the latest round for readiness reports.
func (s *catalogSync) setLastError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.lastErr = err
}

// syncOnce lists upstream versions and brings the replicated catalog in line. It returns an error when anything
// is left to retry; everything it could read is written.
func (s *catalogSync) syncOnce(ctx context.Context) error {
	start := time.Now()

	s.takePolicy()

	versions, err := s.src.ListVersions(ctx)
	if err != nil {
		s.metrics.catalogSyncs.WithLabelValues("failed").Inc()
		s.log.Error("list upstream versions failed; will retry", "registry", s.src.Registry, "retry_in", s.retryInterval(),
			"error", err)

		return fmt.Errorf("list versions: %w", err)
	}

	known, err := s.store.Versions()
	if err != nil {
		return fmt.Errorf("read replicated versions: %w", err)
	}

	due := s.due(versions, known)
	errs := s.readVersions(ctx, due)
	errs = append(errs, s.removeGone(ctx, versions, known)...)

	if err := s.writeMeta(ctx); err != nil {
		errs = append(errs, err)
	}

	// Before talosctl: the node reports ready from here, and its metrics should agree with what it serves.
	if now, err := s.store.Versions(); err == nil {
		s.metrics.catalogVersions.Set(float64(len(now)))
	}

	// Last, as talosctl-all images are large: the catalog above is served (and the node ready) meanwhile.
	errs = append(errs, s.readTalosctls(ctx, due)...)

	result := "ok"
	if len(errs) > 0 {
		result = "partial"
	}

	s.metrics.catalogSyncs.WithLabelValues(result).Inc()

	if len(errs) == 0 {
		if err := s.recordSuccess(ctx, time.Now()); err != nil {
			errs = append(errs, err)
		}
	}

	s.log.Info("catalog synchronised with upstream", "versions", len(versions), "failed", len(errs),
		"duration", time.Since(start).Round(time.Millisecond))

	return errors.Join(errs...)
}

// removeGone removes the known versions that are no longer to be served: at once those now broken or below the
// minimum version (the operator said so), and those missing from the listing only once the registry, asked for the
// version itself, says it does not have it. A listing is not proof: a mirror being synced or garbage-collected, or
// a pull-through cache that lists only what it has cached, lists less than it serves, and removing those versions
// would make every node refuse assets that booted machines a minute ago.
func (s *catalogSync) removeGone(ctx context.Context, listed, known []string) []error {
	var errs []error

	if len(listed) == 0 && len(known) > 0 {
		s.log.Warn("the upstream registry lists no Talos version; each known one is checked before it is removed",
			"registry", s.src.Registry, "known", len(known))
	}

	for _, v := range known {
		if slices.Contains(listed, v) {
			continue
		}

		why := "broken or below the minimum version"

		if s.src.Listed(v) {
			published, err := s.src.Published(ctx, v)
			if err != nil {
				s.log.Warn("version missing from the upstream listing, and it could not be checked: kept", "version", v,
					"error", err)
				errs = append(errs, err)

				continue
			}

			if published {
				s.log.Debug("version missing from the upstream listing but still published: kept", "version", v)

				continue
			}

			why = "no longer published upstream"
		}

		s.log.Info("removing version: "+why, "version", v)

		if err := s.store.RemoveVersion(ctx, v); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", v, err))
		}
	}

	return errs
}

// due picks the versions to read in full: new ones, and known ones whose last full read is older than recheck.
func (s *catalogSync) due(upstream, known []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()

	var out []string

	for _, v := range upstream {
		if !slices.Contains(known, v) || time.Since(s.checkedAt[v]) > s.recheck {
			out = append(out, v)
		}
	}

	return out
}

// readVersions reads catalogs with bounded parallelism and writes each that changed.
func (s *catalogSync) readVersions(ctx context.Context, versions []string) []error {
	return s.eachVersion(versions, func(v string) error {
		err := s.readVersion(ctx, v)
		if err != nil {
			s.log.Error("read version catalog failed; will retry", "version", v, "retry_in", s.retryInterval(), "error", err)
		}

		return err
	})
}

// eachVersion runs read for every version, readConc at a time, and returns the errors.
func (s *catalogSync) eachVersion(versions []string, read func(v string) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.readConc)
	)

	for _, v := range versions {
		sem <- struct{}{}

		wg.Go(func() {
			defer func() { <-sem }()

			if err := read(v); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}

	wg.Wait()

	return errs
}

func (s *catalogSync) readVersion(ctx context.Context, v string) error {
	fresh, err := s.src.ReadVersion(ctx, v)
	if err != nil {
		return fmt.Errorf("read %s: %w", v, err)
	}

	old, ok, err := s.store.Catalog(v)
	if err != nil {
		return fmt.Errorf("read replicated catalog of %s: %w", v, err)
	}

	fresh.Talosctl = old.Talosctl // read on its own, after every catalog (see readTalosctls)

	if !ok || !reflect.DeepEqual(old, fresh) {
		if err := s.store.PutCatalog(ctx, fresh); err != nil {
			return fmt.Errorf("write catalog of %s: %w", v, err)
		}

		s.log.Info("version catalog written", "version", v, "extensions", len(fresh.Extensions),
			"overlays", len(fresh.Overlays), "replaced", ok)
	}

	s.mu.Lock()
	s.checkedAt[v] = time.Now()
	s.mu.Unlock()

	return nil
}

// writeMeta records the broken-version list (and, by existing, that the catalog was read once).
func (s *catalogSync) writeMeta(ctx context.Context) error {
	have, ok, err := s.store.CatalogMeta()
	if err != nil {
		return fmt.Errorf("read catalog meta: %w", err)
	}

	want := raftstore.CatalogMeta{Broken: normalizeVersions(s.src.Broken), LastSync: have.LastSync}

	if ok && slices.Equal(have.Broken, want.Broken) {
		return nil
	}

	if err := s.store.PutCatalogMeta(ctx, want); err != nil {
		return fmt.Errorf("write catalog meta: %w", err)
	}

	return nil
}

// lastSyncEvery is how often at most a successful round records its time in the catalog meta: each record is a
// Raft write, and a new catalog generation (remembered plans are made again).
const lastSyncEvery = time.Minute

// recordSuccess records in the replicated catalog meta that a round read everything (what /cluster shows as the
// last successful sync, on every member), unless one did less than lastSyncEvery ago.
func (s *catalogSync) recordSuccess(ctx context.Context, now time.Time) error {
	meta, _, err := s.store.CatalogMeta()
	if err != nil {
		return fmt.Errorf("read catalog meta: %w", err)
	}

	if now.Sub(meta.LastSync) < lastSyncEvery {
		return nil
	}

	meta.LastSync = now.UTC()
	meta.Broken = normalizeVersions(s.src.Broken)

	if err := s.store.PutCatalogMeta(ctx, meta); err != nil {
		return fmt.Errorf("record the catalog sync: %w", err)
	}

	return nil
}

// normalizeVersions renders versions "v"-prefixed as the API lists them.
func normalizeVersions(in []string) []string {
	var out []string

	for _, v := range in {
		if p, err := ParseVersion(v); err == nil {
			out = append(out, "v"+p.String())
		}
	}

	return out
}
