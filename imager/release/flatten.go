package release

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// eachRootFile calls use for every regular file at the root of img's flattened filesystem (whiteouts applied,
// later layers win) whose name keep accepts. The registry client checks a blob against its digest when its last
// byte is read, and flattening stops at the end of each layer's tar archive, before that byte: every layer is
// therefore read to its end once flattened, and a layer that is not what its digest says fails the walk.
func eachRootFile(img v1.Image, keep func(name string) bool, use func(name string, r io.Reader) error) error {
	d := &drainedImage{Image: img}

	rc := mutate.Extract(d)
	defer rc.Close() // read-only stream

	tr := tar.NewReader(rc)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return fmt.Errorf("flatten: %w", err)
		}

		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if h.Typeflag != tar.TypeReg || strings.Contains(name, "/") || !keep(name) {
			continue
		}

		if err := use(name, tr); err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}

	// Flattening has ended, so every layer reader has been closed (drained) by now.
	return d.failure()
}

// drainedImage is an image whose layers, read uncompressed, are read to their end when closed; the first failure
// (a digest mismatch, a broken connection) is kept.
type drainedImage struct {
	v1.Image

	mu  sync.Mutex
	err error
}

func (d *drainedImage) Layers() ([]v1.Layer, error) {
	layers, err := d.Image.Layers()
	if err != nil {
		return nil, err
	}

	out := make([]v1.Layer, len(layers))
	for i, l := range layers {
		out[i] = &drainedLayer{Layer: l, img: d}
	}

	return out, nil
}

func (d *drainedImage) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	if d.err == nil {
		d.err = err
	}
}

func (d *drainedImage) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()

	if d.err != nil {
		return fmt.Errorf("verify layers: %w", d.err)
	}

	return nil
}

type drainedLayer struct {
	v1.Layer

	img *drainedImage
}

func (l *drainedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}

	return &drainOnClose{ReadCloser: rc, img: l.img}, nil
}

type drainOnClose struct {
	io.ReadCloser

	img *drainedImage
}

func (r *drainOnClose) Close() error {
	_, err := io.Copy(io.Discard, r.ReadCloser)
	if cerr := r.ReadCloser.Close(); err == nil {
		err = cerr
	}

	if err != nil {
		r.img.fail(err)
	}

	return err
}
