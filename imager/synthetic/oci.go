package synthetic

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the only timestamp in the synthetic release (tar headers, image configs): the SOURCE_DATE_EPOCH the
// official image factory uses. One fixed time makes every push of the same release produce the same digests.
var Epoch = time.Unix(1559424892, 0).UTC()

// entry is one file of an image layer. Paths are relative ("usr/bin/installer").
type entry struct {
	path string
	mode int64
	data []byte
	link string // symlink target; data is ignored
}

func file(p string, mode int64, data []byte) entry { return entry{path: p, mode: mode, data: data} }

func text(p string, mode int64, s string) entry { return file(p, mode, []byte(s)) }

func symlink(p, target string) entry { return entry{path: p, mode: 0o777, link: target} }

// tarBytes writes entries as a tar stream, each preceded by its missing parent directories (the Talos imager's
// extension and overlay extraction needs parents before children). Owner root, time Epoch.
func tarBytes(entries []entry) ([]byte, error) {
	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}

	hdr := func(name string, typ byte, mode, size int64, link string) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: typ, Name: name, Linkname: link, Mode: mode, Size: size,
			ModTime: Epoch, Format: tar.FormatPAX,
		})
	}

	for _, e := range entries {
		for _, dir := range parents(e.path) {
			if seen[dir] {
				continue
			}

			seen[dir] = true

			if err := hdr(dir+"/", tar.TypeDir, 0o755, 0, ""); err != nil {
				return nil, fmt.Errorf("tar dir %s: %w", dir, err)
			}
		}

		var err error

		switch {
		case e.link != "":
			err = hdr(e.path, tar.TypeSymlink, e.mode, 0, e.link)
		default:
			if err = hdr(e.path, tar.TypeReg, e.mode, int64(len(e.data)), ""); err == nil {
				_, err = tw.Write(e.data)
			}
		}

		if err != nil {
			return nil, fmt.Errorf("tar %s: %w", e.path, err)
		}
	}

	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar close: %w", err)
	}

	return buf.Bytes(), nil
}

// parents lists the ancestors of a relative path, outermost first: "a/b/c" → ["a", "a/b"].
func parents(p string) []string {
	var out []string

	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}

	return out
}

// layer builds a gzip-compressed OCI layer. It compresses once, here: handing tarball an already compressed stream
// keeps it from compressing again on every read. The gzip header carries no name or time, so bytes are stable.
func layer(entries []entry) (v1.Layer, error) {
	raw, err := tarBytes(entries)
	if err != nil {
		return nil, err
	}

	var gz bytes.Buffer

	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}

	if _, err = zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}

	if err = zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}

	data := gz.Bytes()

	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}

	return l, nil
}

// image builds a linux/<arch> OCI image from layers, with a fixed creation time and one history entry per layer.
func image(arch string, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)

	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: Epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}

	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "edgefactory synthetic release"},
		})
	}

	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}

	return img, nil
}

// multiArch builds one image per architecture (in Architectures order) and the OCI index over them, each entry
// carrying its platform, as the Talos imager requires.
func multiArch(build func(arch string) (v1.Image, error)) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)

	for _, arch := range Architectures {
		img, err := build(arch)
		if err != nil {
			return nil, fmt.Errorf("%s image: %w", arch, err)
		}

		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        plainImage{img},
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}

	return idx, nil
}

// plainImage hides go-containerregistry's habit of writing the config media type as artifactType into index
// entries: images built by docker/buildkit (like the real release) carry no artifactType.
type plainImage struct{ v1.Image }

func (plainImage) ArtifactType() (string, error) { return "", nil }

// sameForAll builds a multi-arch index whose images share the same layers (only the config's architecture differs).
func sameForAll(cfg v1.Config, layers ...v1.Layer) (v1.ImageIndex, error) {
	return multiArch(func(arch string) (v1.Image, error) { return image(arch, cfg, layers...) })
}
