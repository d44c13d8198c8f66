package recipe

import (
	"fmt"

	"github.com/edgefactory/edgefactory/imager/release"
)

// TalosctlFile pins one talosctl binary: the talosctl-all image it is copied out of (by digest) and what the catalog
// says its bytes are.
type TalosctlFile struct {
	Image Image  `json:"image"`
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	// Digest is "sha256:<hex>" of the file as the catalog recorded it: the copy must hash to it.
	Digest string `json:"digest"`
}

// PlanTalosctl turns a file of a version's talosctl listing into the recipe that copies it out of the talosctl-all
// image; builder names the extractor (it is hashed into the key, as Builder is for built assets). The key thus
// covers the version, the file name and the image digest. The caller answers names the catalog does not list; here
// they are an error.
func PlanTalosctl(v release.Version, name, builder string) (Recipe, error) {
	f, ok := v.Talosctl.File(name)
	if !ok {
		return Recipe{}, fmt.Errorf("plan talosctl file %q: not in the catalog of %s", name, v.Version)
	}

	r := Recipe{
		Version: v.Version,
		Asset:   Asset{Path: name},
		Talosctl: &TalosctlFile{
			Image:  Image{Repository: v.Talosctl.Repository, Digest: v.Talosctl.Image, Tag: v.Version},
			Name:   f.Name,
			Size:   f.Size,
			Digest: f.Digest,
		},
		Builder: builder,
	}

	key, err := r.ComputeKey()
	if err != nil {
		return Recipe{}, fmt.Errorf("plan %s: %w", name, err)
	}

	r.Key = key

	return r, nil
}

// Kind names what the recipe makes, for logs and metrics: the output kind of a built asset ("iso", "installer"), or
// "talosctl".
func (r Recipe) Kind() string {
	if r.Talosctl != nil {
		return "talosctl"
	}

	return r.Asset.Kind.String()
}
