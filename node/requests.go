package node

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// Asset finds or builds the asset at path for a schematic and version (frontends.Assets).
func (n *Node) Asset(ctx context.Context, schematicID, version, path string) (frontends.Asset, error) {
	r, err := n.plan(ctx, schematicID, version, path, recipe.ParsePath)
	if err != nil {
		return nil, err
	}

	return n.assets.get(ctx, r, false)
}

// PXE returns the data of the iPXE script for a `<platform>-<arch>[-secureboot]` path: the command line comes
// from the cmdline asset, built (and cached) like any other. A rack booting at once asks for the same script
// thousands of times, so answers are remembered per request until the catalog or the signing keys change.
func (n *Node) PXE(ctx context.Context, schematicID, version, path string) (frontends.PXEBoot, error) {
	memoKey := schematicID + "/" + version + "/" + path
	stamp := pxeStamp{catalog: n.store.CatalogGeneration(), keys: n.keys.fingerprint()}

	if e, ok := n.pxe.Get(memoKey); ok && e.stamp == stamp {
		return e.boot, nil
	}

	r, err := n.plan(ctx, schematicID, version, path, recipe.ParsePXEPath)
	if err != nil {
		return frontends.PXEBoot{}, err
	}

	a, err := n.assets.get(ctx, r, false)
	if err != nil {
		return frontends.PXEBoot{}, err
	}
	defer a.Close()

	data, err := io.ReadAll(io.LimitReader(a.Content(), 64<<10))
	if err != nil {
		return frontends.PXEBoot{}, fmt.Errorf("read command line: %w", err)
	}

	boot := frontends.PXEBoot{Version: r.Version, Platform: r.Asset.Platform, Arch: r.Asset.Arch,
		SecureBoot: r.Asset.SecureBoot, Cmdline: strings.TrimSpace(string(data))}
	n.pxe.Put(memoKey, pxeEntry{stamp: stamp, boot: boot})

	return boot, nil
}

// pxeStamp is what a remembered PXE answer depends on besides its request (schematics never change).
type pxeStamp struct {
	catalog uint64
	keys    string
}

type pxeEntry struct {
	stamp pxeStamp
	boot  frontends.PXEBoot
}

// plan resolves a request into a recipe in the official service's order, so that a request with several faults
// gets the same answer there and here: schematic (404), version syntax (400), path (400), version availability
// (404), then the build-time checks of the planner (400). Path and planner errors carry the official step prefixes
// (API.md §1.1).
func (n *Node) plan(ctx context.Context, schematicID, version, path string,
	parse func(string) (recipe.Asset, error),
) (recipe.Recipe, error) {
	canonical, err := n.Schematic(ctx, schematicID)
	if err != nil {
		return recipe.Recipe{}, err
	}

	if _, err = parseVersion(version); err != nil {
		return recipe.Recipe{}, err
	}

	a, err := parse(path)
	if err != nil {
		return recipe.Recipe{}, fmt.Errorf("%s: %w", recipe.PathErrorPrefix, err)
	}

	catalog, _, err := n.versionCatalog(ctx, version)
	if err != nil {
		return recipe.Recipe{}, err
	}

	s, ok := n.schematics.Get(schematicID)
	if !ok {
		if s, err = schematic.Unmarshal(canonical); err != nil {
			return recipe.Recipe{}, fmt.Errorf("stored schematic %s does not parse: %w", schematicID, err)
		}

		n.schematics.Put(schematicID, s)
	}

	opts := recipe.PlanOptions{Author: n.author(), Builder: imager.Version}

	if fingerprint := n.keys.fingerprint(); fingerprint != "" {
		opts.SecureBootKeys = fingerprint
	} else if a.SecureBoot {
		return recipe.Recipe{}, frontends.NewError(frontends.ClassUnavailable,
			"secure-boot signing keys are not available yet (the cluster leader creates them); retry shortly", nil)
	}

	r, err := recipe.Plan(a, schematicID, canonical, s, catalog, opts)
	if err != nil {
		return recipe.Recipe{}, fmt.Errorf("%s: %w", recipe.PlanErrorPrefix, err)
	}

	return r, nil
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
