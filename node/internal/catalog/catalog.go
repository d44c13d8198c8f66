// Package catalog is what the cluster knows of Talos releases and how a request becomes a recipe: the version
// catalogs (extensions, overlays, input image digests, talosctl binaries) replicated through Raft, kept in sync with
// the upstream registry by the leader alone, read here with a decoded copy kept until they change; and planning,
// which turns a schematic, a version and a path into the recipe whose key names an asset's bytes.
//
// Guarantee: followers serve catalogs with no upstream traffic; a version missing here is read from the leader
// before it is "not available" (this member may be behind the log); a version is written whole or not at all, and
// one that leaves the upstream listing is removed only once the registry, asked for it, says it is gone.
package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/imager/schematic"
	"github.com/edgefactory/edgefactory/internal/memo"
	"github.com/edgefactory/edgefactory/raftstore"

	"github.com/blang/semver/v4"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/buildprofile"
	"github.com/edgefactory/edgefactory/imager/release"
)

// Leader reads a version's catalog as the Raft leader has it.
type Leader interface {
	CatalogFromLeader(ctx context.Context, version string) (release.Version, bool, error)
}

// Schematics finds a schematic's canonical YAML (404 when nobody has it).
type Schematics interface {
	Schematic(ctx context.Context, id string) ([]byte, error)
}

// Keys is the cluster's secure-boot signing material, as far as planning needs it.
type Keys interface {
	Fingerprint() string // "" while there are no keys yet
}

// Profile names the build profile the cluster builds with.
type Profile interface {
	// BuildProfile is its ID, architecture and builder; an error when this member does not know them.
	BuildProfile() (buildprofile.Member, error)
}

// Config is what the catalog is built on.
type Config struct {
	Store      *raftstore.Store
	Leader     Leader
	Schematics Schematics
	Keys       Keys
	// Profile is the build profile the cluster builds with: every member plans with its architecture and builder,
	// never its own host's, so that all plan the same recipe keys.
	Profile Profile
	Source  release.Source // the upstream registry the leader reads
	// Refresh is how often the leader lists the upstream versions; Recheck how often a known version is read
	// again in full.
	Refresh, Recheck time.Duration
	Registerer       prometheus.Registerer
	Logger           *slog.Logger
}

// Catalog is the release catalog and the planner.
type Catalog struct {
	store        *raftstore.Store
	leader       Leader
	schematicsBy Schematics
	keys         Keys
	profile      Profile
	sync         *catalogSync

	catalogs   *memo.Memo[string, catalogEntry]         // version → decoded catalog (see Version)
	schematics *memo.Memo[string, *schematic.Schematic] // schematic ID → parsed schematic
}

// New makes the catalog and registers its metrics.
func New(cfg Config) *Catalog {
	return &Catalog{
		store: cfg.Store, leader: cfg.Leader, schematicsBy: cfg.Schematics, keys: cfg.Keys, profile: cfg.Profile,
		sync: newCatalogSync(cfg.Source, cfg.Store, cfg.Refresh, cfg.Recheck, newMetrics(cfg.Registerer),
			cfg.Logger),
		catalogs:   memo.New[string, catalogEntry](1_000),
		schematics: memo.New[string, *schematic.Schematic](10_000),
	}
}

// Sync is the leader's duty: bring the replicated catalog in line with the upstream registry once. It returns
// the time until the next round: the refresh interval, or the shorter retry after a failure.
func (cat *Catalog) Sync(ctx context.Context) (time.Duration, error) {
	err := cat.sync.syncOnce(ctx)
	cat.sync.setLastError(err)

	refresh, retry := cat.sync.intervals()
	if err != nil {
		return retry, err
	}

	return refresh, nil
}

// Retry is how soon a leader duty that failed is tried again.
func (cat *Catalog) Retry() time.Duration { return cat.sync.retryInterval() }

// SetPolicy sets what the cluster settings say of the catalog: the minimum and broken versions the next round of
// Sync brings the catalog in line with (hiding and removing versions, or reading ones no longer excluded), and the
// interval between rounds (0 keeps it).
func (cat *Catalog) SetPolicy(minVersion string, broken []string, refresh time.Duration) {
	cat.sync.setPolicy(policy{minVersion: minVersion, broken: slices.Clone(broken), refresh: refresh})
}

// LastSyncError is the failure of the last round of Sync on this member, if it failed (readiness says it).
func (cat *Catalog) LastSyncError() error { return cat.sync.lastError() }

// Generation changes whenever the catalog may have changed (for answers cached against it).
func (cat *Catalog) Generation() uint64 { return cat.store.CatalogGeneration() }

// Image reports whether repo is an extension or overlay image of a version this member knows.
func (cat *Catalog) Image(repo string) bool {
	versions, err := cat.store.Versions()
	if err != nil {
		return false
	}

	for _, v := range versions {
		c, ok, err := cat.store.Catalog(v)
		if err != nil || !ok {
			continue
		}

		for _, e := range c.Extensions {
			if e.Name == repo {
				return true
			}
		}

		for _, o := range c.Overlays {
			if o.Image == repo {
				return true
			}
		}
	}

	return false
}

// overlaysSince is the first Talos version with overlay support; older versions have an empty overlay catalog.
var overlaysSince = semver.MustParse("1.7.0")

// ParseVersion accepts a strict semver with or without the "v" prefix, as the official service does on /image,
// /pxe and the catalog routes, and answers Invalid (400, naming the bad part) otherwise.
func ParseVersion(s string) (semver.Version, error) {
	v, err := semver.Parse(strings.TrimPrefix(s, "v"))
	if err != nil {
		return semver.Version{}, frontends.NewError(frontends.ClassInvalid,
			fmt.Sprintf("invalid Talos version %q: %v (expected vMAJOR.MINOR.PATCH, e.g. v1.13.0)", s, err), err)
	}

	return v, nil
}

// catalogEntry is a decoded catalog and the catalog generation it was read at.
type catalogEntry struct {
	gen     uint64
	found   bool
	catalog release.Version
}

// Version finds the replicated catalog of a version. Decoded catalogs are kept until the catalog changes:
// every asset and PXE request needs one.
func (cat *Catalog) Version(ctx context.Context, version string) (release.Version, semver.Version, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return release.Version{}, v, err
	}

	c, err := cat.At(ctx, v)

	return c, v, err
}

// At finds the catalog of version v, or answers NotFound. A version missing here is read from the leader
// (records.go): this node may be behind the log. Either answer is kept until this node's catalog changes.
func (cat *Catalog) At(ctx context.Context, v semver.Version) (release.Version, error) {
	key := "v" + v.String()
	gen := cat.store.CatalogGeneration()

	e, cached := cat.catalogs.Get(key)
	if !cached || e.gen != gen {
		c, ok, err := cat.store.Catalog(key)
		if err != nil {
			return release.Version{}, fmt.Errorf("read catalog of %s: %w", key, err)
		}

		if !ok {
			// Without a leader the local answer stands: a version this node has never heard of is not served.
			if lc, found, err := cat.leader.CatalogFromLeader(ctx, key); err == nil {
				c, ok = lc, found
			} else if ctx.Err() != nil {
				return release.Version{}, ctx.Err()
			}
		}

		e = catalogEntry{gen: gen, found: ok, catalog: c}
		cat.catalogs.Put(key, e)
	}

	if !e.found {
		return release.Version{}, versionNotAvailable(v)
	}

	return e.catalog, nil
}

// versionNotAvailable is the official answer for a version the factory does not serve (no "v" in the text).
func versionNotAvailable(v semver.Version) error {
	return frontends.NewError(frontends.ClassNotFound, fmt.Sprintf("version %s is not available", v), nil)
}

// Versions lists the available versions, ascending.
func (cat *Catalog) Versions(context.Context) ([]string, error) {
	return cat.store.Versions()
}

// BrokenVersions lists the versions configured as broken; nil when there are none (the API answers null then).
func (cat *Catalog) BrokenVersions(context.Context) ([]string, error) {
	meta, _, err := cat.store.CatalogMeta()
	if err != nil {
		return nil, err
	}

	if len(meta.Broken) == 0 {
		return nil, nil
	}

	return meta.Broken, nil
}

// Extensions lists the official extensions of a version.
func (cat *Catalog) Extensions(ctx context.Context, version string) ([]release.Extension, error) {
	c, _, err := cat.Version(ctx, version)

	return c.Extensions, err
}

// Overlays lists the official overlays of a version; versions before overlay support have none, known or not.
func (cat *Catalog) Overlays(ctx context.Context, version string) ([]release.Overlay, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return nil, err
	}

	if v.LT(overlaysSince) {
		return []release.Overlay{}, nil
	}

	c, _, err := cat.Version(ctx, version)

	return c.Overlays, err
}
