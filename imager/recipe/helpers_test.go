package recipe_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// digest is a stand-in "sha256:<hex>" digest named after what it pins.
func digest(what string) string {
	sum := sha256.Sum256([]byte(what))

	return "sha256:" + hex.EncodeToString(sum[:])
}

func pinned(repo string) release.Image {
	return release.Image{
		Repository: repo,
		Index:      digest(repo + " index"),
		Arch:       map[string]string{"amd64": digest(repo + " amd64"), "arm64": digest(repo + " arm64")},
	}
}

func extension(name, tag string) release.Extension {
	return release.Extension{Name: name, Ref: "ghcr.io/" + name + ":" + tag, Digest: digest(name)}
}

// catalog is a Talos version's catalog with a few real extension names, including alias targets.
func catalog(version string) release.Version {
	return release.Version{
		Version:       version,
		Imager:        pinned("siderolabs/imager"),
		InstallerBase: pinned("siderolabs/installer-base"),
		Extensions: []release.Extension{
			extension("siderolabs/amd-ucode", "20240115"),
			extension("siderolabs/intel-ucode", "20240312"),
			extension("siderolabs/gasket-driver", "97aeba5-v1.13.0"),
			extension("siderolabs/i915", "20240115-v1.13.0"),
			extension("siderolabs/nvidia-container-toolkit-lts", "570.124.06-v1.17.5"),
		},
		Overlays: []release.Overlay{{
			Name:   "rpi_generic",
			Image:  "siderolabs/sbc-raspberrypi",
			Ref:    "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.7",
			Digest: digest("siderolabs/sbc-raspberrypi"),
		}},
	}
}

// parsed is a schematic as the store hands it to Plan.
type parsed struct {
	s         *schematic.Schematic
	canonical []byte
	id        string
}

func parseSchematic(t *testing.T, yaml string) parsed {
	t.Helper()

	s, canonical, id, err := schematic.Normalize([]byte(yaml))
	require.NoError(t, err)

	return parsed{s: s, canonical: canonical, id: id}
}

func mustParse(t *testing.T, path string) recipe.Asset {
	t.Helper()

	a, err := recipe.ParsePath(path)
	require.NoError(t, err)

	return a
}

var planOpts = recipe.PlanOptions{
	SecureBootKeys: "sha256:keys",
	Author:         "Image Factory (https://factory.example)",
	Builder:        "edgefactory test / talos imager v1.13.0",
	HostArch:       "amd64",
}

func plan(t *testing.T, path, yaml, version string, opts recipe.PlanOptions) (recipe.Recipe, error) {
	t.Helper()

	p := parseSchematic(t, yaml)

	return recipe.Plan(mustParse(t, path), p.id, p.canonical, p.s, catalog(version), opts)
}

func mustPlan(t *testing.T, path, yaml, version string) recipe.Recipe {
	t.Helper()

	r, err := plan(t, path, yaml, version, planOpts)
	require.NoError(t, err)

	return r
}
