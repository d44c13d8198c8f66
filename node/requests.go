package node

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/edgefactory/edgefactory/node/internal/catalog"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
)

// Asset finds or builds the asset at path for a schematic and version (frontends.Assets).
func (n *Node) Asset(ctx context.Context, schematicID, version, path string) (frontends.Asset, error) {
	r, err := n.catalog.Plan(ctx, schematicID, version, path, recipe.ParsePath)
	if err != nil {
		return nil, err
	}

	return n.assets.Get(ctx, r, false)
}

// PXE returns the data of the iPXE script for a `<platform>-<arch>[-secureboot]` path: the command line comes
// from the cmdline asset, built (and cached) like any other. A rack booting at once asks for the same script
// thousands of times, so answers are remembered per request until the catalog or the signing keys change.
func (n *Node) PXE(ctx context.Context, schematicID, version, path string) (frontends.PXEBoot, error) {
	memoKey := schematicID + "/" + version + "/" + path
	stamp := pxeStamp{catalog: n.store.CatalogGeneration(), keys: n.keys.Fingerprint()}

	if e, ok := n.pxe.Get(memoKey); ok && e.stamp == stamp {
		return e.boot, nil
	}

	r, err := n.catalog.Plan(ctx, schematicID, version, path, recipe.ParsePXEPath)
	if err != nil {
		return frontends.PXEBoot{}, err
	}

	a, err := n.assets.Get(ctx, r, false)
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

// SecureBootCertificate returns the certificate secure-boot assets are signed with.
func (n *Node) SecureBootCertificate(context.Context) ([]byte, error) {
	keys := n.keys.Current()
	if keys == nil {
		return nil, frontends.NewError(frontends.ClassUnavailable,
			"secure-boot signing keys are not available yet (the cluster leader creates them); retry shortly", nil)
	}

	return keys.SigningCert, nil
}

// TalosctlFile finds one talosctl binary (frontends.Talosctl). It is an asset like any other: copied out of the
// talosctl-all image once, by the owner of its recipe key, kept in the CAS and fetched from holders by the others.
func (n *Node) TalosctlFile(ctx context.Context, version, name string) (frontends.Asset, error) {
	r, err := n.catalog.PlanTalosctl(ctx, version, name)
	if err != nil {
		return nil, err
	}

	return n.assets.Get(ctx, r, false)
}

// TalosctlFiles lists the talosctl binaries of a version (frontends.Talosctl).
func (n *Node) TalosctlFiles(ctx context.Context, version string) ([]string, error) {
	return n.catalog.TalosctlFiles(ctx, version)
}

// RegistryMirrorPatch points machines of a Talos version at the members for the registries of that version's
// imported images (frontends.Mirrors). The version is checked as the catalog routes check it.
func (n *Node) RegistryMirrorPatch(ctx context.Context, version string) ([]byte, error) {
	v, err := catalog.ParseVersion(version)
	if err != nil {
		return nil, err
	}

	var endpoints []string

	for _, m := range n.cluster.Members() {
		if u, ok := n.cluster.URL(m); ok {
			endpoints = append(endpoints, u)
		}
	}

	return n.registry.MirrorPatch(ctx, "v"+v.String(), endpoints)
}
