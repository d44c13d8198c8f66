package imager

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pinInstallerCreated rewrites an installer tarball with its image config's "created" time set to SOURCE_DATE_EPOCH.
// The Talos imager stamps time.Now() there (pkg/imager/out.go), the one thing that differs between two builds of
// one installer recipe; everything else, layers included, is already reproducible.
func pinInstallerCreated(path string) error {
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return fmt.Errorf("read installer tarball manifest: %w", err)
	}

	if len(manifest) != 1 || len(manifest[0].RepoTags) == 0 {
		return fmt.Errorf("installer tarball holds %d images, want one tagged image", len(manifest))
	}

	tag, err := name.NewTag(manifest[0].RepoTags[0])
	if err != nil {
		return fmt.Errorf("installer tag: %w", err)
	}

	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		return fmt.Errorf("read installer tarball: %w", err)
	}

	epoch, err := strconv.ParseInt(SourceDateEpoch, 10, 64)
	if err != nil {
		return err
	}

	pinned, err := mutate.CreatedAt(img, v1.Time{Time: time.Unix(epoch, 0).UTC()})
	if err != nil {
		return fmt.Errorf("pin installer created time: %w", err)
	}

	tmp := path + ".pinned"
	if err := tarball.WriteToFile(tmp, tag, pinned); err != nil {
		os.Remove(tmp) // best effort

		return fmt.Errorf("write installer tarball: %w", err)
	}

	return os.Rename(tmp, path)
}
