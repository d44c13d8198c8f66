package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/blang/semver/v4"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/release"
)

// overlaysSince is the first Talos version with overlay support; older versions have an empty overlay catalog.
var overlaysSince = semver.MustParse("1.7.0")

// parseVersion accepts a strict semver with or without the "v" prefix, as the official service does on /image,
// /pxe and the catalog routes, and answers Invalid (400, naming the bad part) otherwise.
func parseVersion(s string) (semver.Version, error) {
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

// versionCatalog finds the replicated catalog of a version. Decoded catalogs are kept until the catalog changes:
// every asset and PXE request needs one.
func (n *Node) versionCatalog(ctx context.Context, version string) (release.Version, semver.Version, error) {
	v, err := parseVersion(version)
	if err != nil {
		return release.Version{}, v, err
	}

	c, err := n.catalogAt(ctx, v)

	return c, v, err
}

// catalogAt finds the catalog of version v, or answers NotFound. A version missing here is read from the leader
// (records.go): this node may be behind the log. Either answer is kept until this node's catalog changes.
func (n *Node) catalogAt(ctx context.Context, v semver.Version) (release.Version, error) {
	key := "v" + v.String()
	gen := n.store.CatalogGeneration()

	e, cached := n.catalogs.Get(key)
	if !cached || e.gen != gen {
		c, ok, err := n.store.Catalog(key)
		if err != nil {
			return release.Version{}, fmt.Errorf("read catalog of %s: %w", key, err)
		}

		if !ok {
			// Without a leader the local answer stands: a version this node has never heard of is not served.
			if lc, found, err := n.catalogFromLeader(ctx, key); err == nil {
				c, ok = lc, found
			} else if ctx.Err() != nil {
				return release.Version{}, ctx.Err()
			}
		}

		e = catalogEntry{gen: gen, found: ok, catalog: c}
		n.catalogs.Put(key, e)
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
func (n *Node) Versions(context.Context) ([]string, error) {
	return n.store.Versions()
}

// BrokenVersions lists the versions configured as broken; nil when there are none (the API answers null then).
func (n *Node) BrokenVersions(context.Context) ([]string, error) {
	meta, _, err := n.store.CatalogMeta()
	if err != nil {
		return nil, err
	}

	if len(meta.Broken) == 0 {
		return nil, nil
	}

	return meta.Broken, nil
}

// Extensions lists the official extensions of a version.
func (n *Node) Extensions(ctx context.Context, version string) ([]release.Extension, error) {
	c, _, err := n.versionCatalog(ctx, version)

	return c.Extensions, err
}

// Overlays lists the official overlays of a version; versions before overlay support have none, known or not.
func (n *Node) Overlays(ctx context.Context, version string) ([]release.Overlay, error) {
	v, err := parseVersion(version)
	if err != nil {
		return nil, err
	}

	if v.LT(overlaysSince) {
		return []release.Overlay{}, nil
	}

	c, _, err := n.versionCatalog(ctx, version)

	return c.Overlays, err
}
