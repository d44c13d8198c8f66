package inputs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// extractFiles writes the named files of directory dir (slash-separated, relative to the image root) of img's
// flattened filesystem into out, and returns the compressed bytes read. Layers apply in order, so a later layer
// replaces a file and its whiteouts remove it. Every layer is read to its end and hashed, and the hash must be the
// layer's digest: the manifest (checked against the pinned digest) thus vouches for every byte written.
func extractFiles(img v1.Image, dir string, names []string, out string) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}

	x := extraction{dir: path.Clean(dir), out: out, wanted: map[string]bool{}, found: map[string]bool{}}
	for _, n := range names {
		x.wanted[n] = true
	}

	total, _, err := x.applyLayers(layers, nil)
	if err != nil {
		return total, err
	}

	var missing []string

	for _, n := range names {
		if !x.found[n] {
			missing = append(missing, n)
		}
	}

	if len(missing) > 0 {
		return total, fmt.Errorf("image has no %s in /%s", strings.Join(missing, ", "), x.dir)
	}

	return total, nil
}

// applyLayers applies layers in order, each verified, until done (nil: never) says the extraction is complete; stopped
// tells whether done did.
func (x *extraction) applyLayers(layers []v1.Layer, done func() (bool, error)) (total int64, stopped bool, err error) {
	for i, l := range layers {
		n, err := x.layer(l)
		total += n

		if err != nil {
			return total, false, fmt.Errorf("layer %d: %w", i, err)
		}

		if done == nil {
			continue
		}

		if stopped, err = done(); err != nil || stopped {
			return total, stopped, err
		}
	}

	return total, false, nil
}

type extraction struct {
	dir    string
	out    string
	wanted map[string]bool // base names in dir
	found  map[string]bool // present after the layers applied so far
}

func (x *extraction) layer(l v1.Layer) (int64, error) {
	want, err := l.Digest()
	if err != nil {
		return 0, err
	}

	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}

	defer rc.Close() // read-only stream

	h := sha256.New()
	counted := &countingReader{r: io.TeeReader(rc, h)}

	if err := x.untar(counted); err != nil {
		return counted.n, err
	}

	// The tar stream may end before the blob does (padding, trailers): the digest covers the whole blob.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return counted.n, err
	}

	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); want.String() != got {
		return counted.n, fmt.Errorf("digest mismatch: layer %s read as %s", want, got)
	}

	return counted.n, nil
}

// untar applies one layer's tar stream (gzip, zstd or uncompressed) to the extraction.
func (x *extraction) untar(r io.Reader) error {
	br := bufio.NewReader(r)

	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}

	var tr *tar.Reader

	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}

		defer zr.Close() // nothing to flush

		tr = tar.NewReader(zr)
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return err
		}

		defer zr.Close()

		tr = tar.NewReader(zr)
	default:
		tr = tar.NewReader(br)
	}

	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}

		if err != nil {
			return err
		}

		if err := x.apply(hdr, tr); err != nil {
			return err
		}
	}
}

// apply handles one tar entry: a wanted file is written, a whiteout or opaque marker removes what it hides.
func (x *extraction) apply(hdr *tar.Header, r io.Reader) error {
	p := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	parent, base := path.Split(p)
	parent = strings.TrimSuffix(parent, "/")

	switch {
	case base == ".wh..wh..opq":
		// Everything below parent from lower layers is hidden.
		if parent == x.dir || isBelow(x.dir, parent) {
			x.removeAll()
		}

		return nil
	case strings.HasPrefix(base, ".wh."):
		hidden := path.Join(parent, strings.TrimPrefix(base, ".wh."))
		if hidden == x.dir || isBelow(x.dir, hidden) {
			x.removeAll()
		} else if parent == x.dir && x.wanted[path.Base(hidden)] {
			x.remove(path.Base(hidden))
		}

		return nil
	case parent != x.dir || !x.wanted[base]:
		return nil
	case hdr.Typeflag != tar.TypeReg:
		return fmt.Errorf("/%s is not a regular file (tar type %q)", p, hdr.Typeflag)
	}

	flags := os.O_CREATE | os.O_TRUNC | os.O_WRONLY
	f, err := os.OpenFile(filepath.Join(x.out, base), flags, 0o644) //nolint:gosec // public release content, for tools
	if err != nil {
		return err
	}

	if _, err := io.Copy(f, r); err != nil {
		f.Close() // already failing

		return fmt.Errorf("write %s: %w", base, err)
	}

	if err := f.Close(); err != nil {
		return err
	}

	x.found[base] = true

	return nil
}

// isBelow reports whether p is strictly inside dir.
func isBelow(p, dir string) bool {
	return dir == "" && p != "" || strings.HasPrefix(p, dir+"/")
}

func (x *extraction) remove(name string) {
	os.Remove(filepath.Join(x.out, name)) // may not exist
	delete(x.found, name)
}

func (x *extraction) removeAll() {
	for name := range x.found {
		x.remove(name)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)

	return n, err
}
