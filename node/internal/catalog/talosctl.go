package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/blang/semver/v4"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
)

// TalosctlFiles lists the talosctl binaries of a version (frontends.Talosctl), from the replicated catalog: no
// upstream traffic. Like the official service it parses the version tolerantly ("v1.11" is 1.11.0), answers 404
// for a version it does not serve and an empty list before Talos 1.11.0-alpha.3.
func (cat *Catalog) TalosctlFiles(ctx context.Context, version string) ([]string, error) {
	c, v, err := cat.talosctlCatalog(ctx, version)
	if err != nil {
		return nil, err
	}

	if !release.ServesTalosctl(c.Version) {
		return []string{}, nil
	}

	if c.Talosctl == nil {
		return nil, talosctlNotRead(v)
	}

	return c.Talosctl.Names(), nil
}

// PlanTalosctl resolves a talosctl download into its recipe: the version (404 unknown), its talosctl-all image (404
// `version X is not available` without one, as the official service answers), the file (404 naming it).
func (cat *Catalog) PlanTalosctl(ctx context.Context, version, name string) (recipe.Recipe, error) {
	c, v, err := cat.talosctlCatalog(ctx, version)
	if err != nil {
		return recipe.Recipe{}, err
	}

	if !release.ServesTalosctl(c.Version) {
		return recipe.Recipe{}, versionNotAvailable(v)
	}

	switch {
	case c.Talosctl == nil:
		return recipe.Recipe{}, talosctlNotRead(v)
	case len(c.Talosctl.Files) == 0:
		return recipe.Recipe{}, versionNotAvailable(v)
	}

	if _, ok := c.Talosctl.File(name); !ok {
		return recipe.Recipe{}, frontends.NewError(frontends.ClassNotFound,
			fmt.Sprintf("talosctl file %q is not available for version %s (available: %s)", name, v,
				strings.Join(c.Talosctl.Names(), ", ")), nil)
	}

	return recipe.PlanTalosctl(c, name, imager.ExtractorVersion)
}

// talosctlCatalog finds the catalog of a version parsed tolerantly, as the official talosctl routes do.
func (cat *Catalog) talosctlCatalog(ctx context.Context, version string) (release.Version, semver.Version, error) {
	v, err := semver.ParseTolerant(version)
	if err != nil {
		return release.Version{}, v, frontends.NewError(frontends.ClassInvalid,
			fmt.Sprintf("invalid Talos version %q: %v (expected e.g. v1.13.0 or v1.13)", version, err), err)
	}

	c, err := cat.At(ctx, v)

	return c, v, err
}

// talosctlNotRead answers for a version whose talosctl-all image the leader has not read yet (it reads them after
// the rest of the catalog: they are large).
func talosctlNotRead(v semver.Version) error {
	return frontends.NewError(frontends.ClassUnavailable, fmt.Sprintf("the talosctl binaries of version %s have not "+
		"been read from the upstream registry yet; retry shortly", v), nil)
}
