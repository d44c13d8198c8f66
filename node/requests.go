package node

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

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

	a, err := n.assets.get(ctx, r, false)
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
