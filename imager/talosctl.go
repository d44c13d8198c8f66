package imager

import (
	"context"
	"fmt"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// ExtractorVersion names how talosctl binaries are made — copied, byte for byte, out of the release's talosctl-all
// image — in their recipe keys. It is not Version: upgrading the Talos imager changes no talosctl binary.
const ExtractorVersion = "edgefactory-extract/1"

// extract copies r's talosctl binary out of its image into dir, checked against the catalog's size and digest. The
// Talos imager takes no part.
func (b *Builder) extract(ctx context.Context, r recipe.Recipe, dir string) (string, error) {
	f := r.Talosctl

	path, err := b.cfg.Inputs.ExtractFile(ctx, f.Image, f.Name, f.Size, f.Digest, dir)
	if err != nil {
		return "", timedOut(ctx, b.cfg.Timeout, fmt.Errorf("extract %s: %w", f.Name, err))
	}

	return path, nil
}
