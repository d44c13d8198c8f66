package synthetictest

import (
	"archive/tar"
	"errors"
	"io"
	"path"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayerFiles lists the non-directory entries of an image layer (an installer's, say), without a leading "/" or
// "./", in archive order.
func LayerFiles(t testing.TB, l v1.Layer) []string {
	t.Helper()

	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatalf("open layer: %v", err)
	}

	defer rc.Close()

	var files []string

	tr := tar.NewReader(rc)

	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}

		if err != nil {
			t.Fatalf("read layer: %v", err)
		}

		if hdr.Typeflag != tar.TypeDir {
			files = append(files, strings.TrimPrefix(path.Clean("/"+hdr.Name), "/"))
		}
	}
}
