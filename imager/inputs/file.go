package inputs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// ExtractFile writes the root file name of img (pulled by its pinned digest, linux/amd64 when the digest names an
// index) into the directory out, and returns its path. The copy must be size bytes hashing to digest (what the
// release catalog recorded when it read the whole image): layers are read in order, each checked against its own
// digest, until the file as extracted so far matches — later layers are not downloaded, since the catalog already
// vouches for those bytes being the file of the flattened image. Unlike Fetch, nothing is kept in the store: the
// caller keeps the file (an asset in the CAS), and the image is not needed again.
func (s *Store) ExtractFile(ctx context.Context, img recipe.Image, file string, size int64, digest, out string) (string, error) {
	what := img.Repository + " file " + file

	if err := checkImage(img); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}

	if file == "" || path.Base(file) != file || file == "." || file == ".." {
		return "", fmt.Errorf("%s: not a file name at the image root", what)
	}

	ref, err := s.ref(img)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}

	s.log.Info("extracting file", "input", what, "ref", ref.String())

	n, err := s.watched(ctx, what, ref, func(ctx context.Context, t *transfer) (int64, error) {
		return s.pullFile(ctx, t, ref, file, size, digest, out)
	})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, ref, err)
	}

	s.log.Info("extracted file", "input", what, "bytes_read", n, "size", size)

	return filepath.Join(out, file), nil
}

// pullFile extracts file from ref's layers into out until it matches size and digest.
func (s *Store) pullFile(ctx context.Context, t *transfer, ref name.Digest, file string, size int64, digest, out string) (int64, error) {
	img, err := remote.Image(ref, s.remote(ctx, t, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))...)
	if err != nil {
		return 0, err
	}

	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}

	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}

	t.expect(layerBytes(m)) // at most: reading stops at the layer that completes the file

	x := extraction{dir: "", out: out, wanted: map[string]bool{file: true}, found: map[string]bool{}}

	total, complete, err := x.applyLayers(layers, func() (bool, error) {
		if !x.found[file] {
			return false, nil
		}

		return matches(filepath.Join(out, file), size, digest)
	})
	if err != nil || complete {
		return total, err
	}

	if !x.found[file] {
		return total, fmt.Errorf("image has no /%s", file)
	}

	return total, fmt.Errorf("/%s of the image is not the file the catalog recorded (%d bytes, %s)", file, size, digest)
}

// matches reports whether the file at p is size bytes hashing to digest.
func matches(p string, size int64, digest string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}

	defer f.Close() // read-only handle

	h := sha256.New()

	n, err := io.Copy(h, f)
	if err != nil {
		return false, err
	}

	return n == size && "sha256:"+hex.EncodeToString(h.Sum(nil)) == digest, nil
}
