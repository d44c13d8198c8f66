package catalog

import (
	"context"
	"fmt"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// Plan resolves a request into a recipe in the official service's order, so that a request with several faults
// gets the same answer there and here: schematic (404), version syntax (400), path (400), version availability
// (404), then the build-time checks of the planner (400). Path and planner errors carry the official step prefixes
// (docs/api.md §1.1).
func (cat *Catalog) Plan(ctx context.Context, schematicID, version, path string,
	parse func(string) (recipe.Asset, error),
) (recipe.Recipe, error) {
	canonical, err := cat.schematicsBy.Schematic(ctx, schematicID)
	if err != nil {
		return recipe.Recipe{}, err
	}

	if _, err = ParseVersion(version); err != nil {
		return recipe.Recipe{}, err
	}

	a, err := parse(path)
	if err != nil {
		return recipe.Recipe{}, fmt.Errorf("%s: %w", recipe.PathErrorPrefix, err)
	}

	catalog, _, err := cat.Version(ctx, version)
	if err != nil {
		return recipe.Recipe{}, err
	}

	s, ok := cat.schematics.Get(schematicID)
	if !ok {
		if s, err = schematic.Unmarshal(canonical); err != nil {
			return recipe.Recipe{}, fmt.Errorf("stored schematic %s does not parse: %w", schematicID, err)
		}

		cat.schematics.Put(schematicID, s)
	}

	profile, err := cat.profile.BuildProfile()
	if err != nil {
		return recipe.Recipe{}, frontends.NewError(frontends.ClassUnavailable, "plan "+path+": "+err.Error(), err)
	}

	opts := recipe.PlanOptions{Author: author, Builder: profile.Builder, HostArch: profile.Arch}

	if fingerprint := cat.keys.Fingerprint(); fingerprint != "" {
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
const author = "Image Factory (Edge Factory)"
