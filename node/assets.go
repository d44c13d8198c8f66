package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/schematic"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/raftstore"
)

// assetService finds an asset by recipe key: the replicated index says which bytes the key means, the local CAS
// holds them, and a miss builds them exactly once (per-key single flight; the builder bounds concurrency).
type assetService struct {
	store   *raftstore.Store
	cas     *cas.Store
	builder *imager.Builder
	flight  singleflight.Group
	metrics *metrics
	log     *slog.Logger
	node    string
}

// storedAsset is an asset open for reading from the CAS; it implements frontends.Asset.
type storedAsset struct {
	blob *cas.Blob
	rec  raftstore.AssetRecord
}

func (a *storedAsset) Content() io.ReadSeeker { return a.blob.File() }
func (a *storedAsset) Size() int64            { return a.rec.Size }
func (a *storedAsset) Digest() string         { return a.rec.Digest }
func (a *storedAsset) MediaType() string      { return a.rec.MediaType }
func (a *storedAsset) Filename() string       { return a.rec.Filename }
func (a *storedAsset) Close() error           { return a.blob.Close() }

// get returns the asset of r, building it if no node has.
func (s *assetService) get(ctx context.Context, r recipe.Recipe) (*storedAsset, error) {
	if a, err := s.local(r.Key); err == nil {
		s.metrics.cacheHits.Inc()

		return a, nil
	} else if !errors.Is(err, errMiss) {
		return nil, err
	}

	// Every caller of one key joins one build; the build outlives callers that hang up.
	ch := s.flight.DoChan(r.Key, func() (any, error) {
		return nil, s.build(context.WithoutCancel(ctx), r)
	})

	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
	}

	return s.local(r.Key)
}

var errMiss = errors.New("asset not stored on this node")

// local opens the bytes the index records for key, if this node has them.
func (s *assetService) local(key string) (*storedAsset, error) {
	rec, ok, err := s.store.Asset(key)
	if err != nil {
		return nil, fmt.Errorf("read asset index: %w", err)
	}

	if !ok {
		return nil, errMiss
	}

	blob, err := s.cas.Open(rec.Digest)
	if errors.Is(err, cas.ErrNotFound) {
		return nil, errMiss
	}

	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rec.Digest, err)
	}

	return &storedAsset{blob: blob, rec: rec}, nil
}

// build runs the imager for r, stores the verified output in the CAS and commits its index record.
func (s *assetService) build(ctx context.Context, r recipe.Recipe) error {
	log := s.log.With("key", r.Key[:16], "asset", r.Asset.Path, "version", r.Version, "schematic", r.SchematicID[:16],
		"request_id", frontends.RequestID(ctx))
	start := time.Now()

	log.Info("building asset")

	out, err := s.builder.Build(ctx, r)
	if err != nil {
		s.metrics.builds.WithLabelValues(kindLabel(r), "failed").Inc()
		log.Error("build failed", "error", err, "duration", time.Since(start).Round(time.Millisecond))

		return buildError(err)
	}
	defer out.Cleanup()

	digest, size, err := s.cas.Import(out.Path, "")
	if err != nil {
		s.metrics.builds.WithLabelValues(kindLabel(r), "failed").Inc()

		return fmt.Errorf("store built %s: %w", r.Asset.Path, err)
	}

	rec := raftstore.AssetRecord{
		Key:       r.Key,
		Digest:    digest,
		Size:      size,
		MediaType: recipe.MediaType(r.Asset),
		Filename:  r.Asset.Filename(),
		Builder:   s.node,
		Created:   time.Now().UTC(),
	}

	stored, err := s.store.PutAsset(ctx, rec)
	if err != nil {
		return fmt.Errorf("record built %s: %w", r.Asset.Path, err)
	}

	if stored.Digest != digest {
		// Another build of the same recipe committed first with different bytes: its record wins, ours are dropped.
		s.metrics.buildConflicts.Inc()
		log.Warn("a different build of this recipe was recorded first; keeping the recorded bytes",
			"ours", digest, "recorded", stored.Digest)

		if !s.cas.Has(stored.Digest) {
			return fmt.Errorf("build of %s produced %s but %s was recorded first and is not stored here",
				r.Asset.Path, digest, stored.Digest)
		}
	}

	s.metrics.builds.WithLabelValues(kindLabel(r), "ok").Inc()
	s.metrics.buildSeconds.WithLabelValues(kindLabel(r)).Observe(time.Since(start).Seconds())
	log.Info("asset built", "digest", digest, "size", size, "duration", time.Since(start).Round(time.Millisecond))

	return nil
}

// buildError presents a failed build to the client with its failing step; the frontend adds the request ID that
// finds the build's log lines.
func buildError(err error) error {
	if frontends.Classify(err) != frontends.ClassInternal {
		return err
	}

	return fmt.Errorf("build failed: %w", err)
}

func kindLabel(r recipe.Recipe) string { return r.Asset.Kind.String() }

// Asset finds or builds the asset at path for a schematic and version (frontends.Assets).
func (n *Node) Asset(ctx context.Context, schematicID, version, path string) (frontends.Asset, error) {
	r, err := n.plan(ctx, schematicID, version, path, recipe.ParsePath)
	if err != nil {
		return nil, err
	}

	return n.assets.get(ctx, r)
}

// PXE returns the data of the iPXE script for a `<platform>-<arch>[-secureboot]` path: the command line comes
// from the cmdline asset, built (and cached) like any other.
func (n *Node) PXE(ctx context.Context, schematicID, version, path string) (frontends.PXEBoot, error) {
	r, err := n.plan(ctx, schematicID, version, path, recipe.ParsePXEPath)
	if err != nil {
		return frontends.PXEBoot{}, err
	}

	boot := frontends.PXEBoot{Version: r.Version, Platform: r.Asset.Platform, Arch: r.Asset.Arch,
		SecureBoot: r.Asset.SecureBoot}

	if cmdline, ok := n.cmdlines.get(r.Key); ok {
		boot.Cmdline = cmdline

		return boot, nil
	}

	a, err := n.assets.get(ctx, r)
	if err != nil {
		return frontends.PXEBoot{}, err
	}
	defer a.Close()

	data, err := io.ReadAll(io.LimitReader(a.Content(), 64<<10))
	if err != nil {
		return frontends.PXEBoot{}, fmt.Errorf("read command line: %w", err)
	}

	boot.Cmdline = strings.TrimSpace(string(data))
	n.cmdlines.put(r.Key, boot.Cmdline)

	return boot, nil
}

// plan resolves a request into a recipe: schematic (404), version (400/404), path (400), then the build-time
// checks of the planner (400).
func (n *Node) plan(ctx context.Context, schematicID, version, path string,
	parse func(string) (recipe.Asset, error),
) (recipe.Recipe, error) {
	canonical, err := n.Schematic(ctx, schematicID)
	if err != nil {
		return recipe.Recipe{}, err
	}

	catalog, _, err := n.versionCatalog(version)
	if err != nil {
		return recipe.Recipe{}, err
	}

	a, err := parse(path)
	if err != nil {
		return recipe.Recipe{}, err
	}

	s, err := schematic.Unmarshal(canonical)
	if err != nil {
		return recipe.Recipe{}, fmt.Errorf("stored schematic %s does not parse: %w", schematicID, err)
	}

	opts := recipe.PlanOptions{Author: n.author(), Builder: imager.Version}

	if keys := n.keys.current(); keys != nil {
		opts.SecureBootKeys = keys.Fingerprint()
	} else if a.SecureBoot {
		return recipe.Recipe{}, frontends.NewError(frontends.ClassUnavailable,
			"secure-boot signing keys are not available yet (the cluster leader creates them); retry shortly", nil)
	}

	return recipe.Plan(a, schematicID, canonical, s, catalog, opts)
}

// author is the author of the virtual schematic extension. It is the same on every node (the bytes of an asset
// must not depend on which node built it), so it names the product rather than a node's URL.
func (n *Node) author() string { return "Image Factory (Edge Factory)" }

// SecureBootCertificate returns the certificate secure-boot assets are signed with.
func (n *Node) SecureBootCertificate(context.Context) ([]byte, error) {
	keys := n.keys.current()
	if keys == nil {
		return nil, frontends.NewError(frontends.ClassUnavailable,
			"secure-boot signing keys are not available yet (the cluster leader creates them); retry shortly", nil)
	}

	return keys.SigningCert, nil
}

// smallCache remembers small immutable values by recipe key (a key's bytes never change once recorded), so hot
// paths like PXE scripts skip the CAS. It is bounded crudely: when full it starts over.
type smallCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]string
}

func (c *smallCache) get(key string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	v, ok := c.m[key]

	return v, ok
}

func (c *smallCache) put(key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]string)
	}

	c.m[key] = value
}
