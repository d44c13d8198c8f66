package inspect

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// InstallerReport describes an installer image tarball (docker-save format, as crane.Load reads it).
type InstallerReport struct {
	// Tags are the RepoTags of manifest.json.
	Tags                      []string
	OS, Architecture, Variant string
	Entrypoint, Cmd           []string
	Layers                    []LayerReport
}

// LayerReport describes one image layer, bottom first.
type LayerReport struct {
	Digest, DiffID, MediaType string
	// Size is the layer's size as stored (compressed).
	Size int64
	// Files lists non-directory entries, Dirs directories, both without a leading "/" or "./", in archive order.
	Files, Dirs []string
}

// InstallerTar opens a docker-save tarball holding one image and reports its tag, platform, entrypoint and the
// files of every layer. The config digest and every layer's diff ID are verified against the bytes read.
func InstallerTar(path string) (InstallerReport, error) {
	return installerTar("installer tarball "+path, func() (io.ReadCloser, error) { return os.Open(path) }, nil)
}

// layerVisitor is shown every non-directory entry of every layer, bottom layer first (layer counts from 1), with
// the entry's content, which it may read (or not) before the walk goes on.
type layerVisitor func(layer int, hdr *tar.Header, r io.Reader) error

// installerTar is InstallerTar over any opener; what names the tarball in messages.
func installerTar(what string, opener tarball.Opener, visit layerVisitor) (InstallerReport, error) {
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return InstallerReport{}, fmt.Errorf("%s: manifest.json: %w", what, err)
	}

	if len(manifest) != 1 {
		return InstallerReport{}, malformed("%s: manifest.json lists %d images, want 1", what, len(manifest))
	}

	rep := InstallerReport{Tags: manifest[0].RepoTags}

	var tag *name.Tag

	if len(rep.Tags) > 0 {
		t, err := name.NewTag(rep.Tags[0])
		if err != nil {
			return rep, fmt.Errorf("%s: tag %q: %w", what, rep.Tags[0], markMalformed(err))
		}

		tag = &t
	}

	img, err := tarball.Image(opener, tag)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", what, err)
	}

	cfg, err := installerConfig(img, manifest[0].Config, &rep)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", what, err)
	}

	layers, err := img.Layers()
	if err != nil {
		return rep, fmt.Errorf("%s: layers: %w", what, err)
	}

	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return rep, malformed("%s: %d layers, config lists %d diff IDs", what, len(layers), len(cfg.RootFS.DiffIDs))
	}

	for i, l := range layers {
		var v func(*tar.Header, io.Reader) error
		if visit != nil {
			v = func(h *tar.Header, r io.Reader) error { return visit(i+1, h, r) }
		}

		lr, err := layerReport(l, manifest[0].Layers[i], cfg.RootFS.DiffIDs[i], v)
		if err != nil {
			return rep, fmt.Errorf("%s: layer %d: %w", what, i+1, err)
		}

		rep.Layers = append(rep.Layers, lr)
	}

	return rep, nil
}

// installerConfig reads the config, whose file name in manifest.json is its digest.
func installerConfig(img v1.Image, file string, rep *InstallerReport) (*v1.ConfigFile, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}

	if want, ok := digestFromName(file); ok {
		if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != want {
			return nil, malformed("config digest is sha256:%x, its name %q says otherwise", got, file)
		}
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", markMalformed(err))
	}

	rep.OS, rep.Architecture, rep.Variant = cfg.OS, cfg.Architecture, cfg.Variant
	rep.Entrypoint, rep.Cmd = cfg.Config.Entrypoint, cfg.Config.Cmd

	return cfg, nil
}

var hexDigestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// digestFromName extracts the sha256 a docker-save member is named by: "sha256:<hex>", "<hex>.tar.gz",
// "<hex>.json" or "blobs/sha256/<hex>". Legacy "<id>/layer.tar" names carry no digest.
func digestFromName(file string) (string, bool) {
	base := strings.TrimPrefix(path.Base(file), "sha256:")
	for _, ext := range []string{".tar.gz", ".tar", ".json"} {
		base = strings.TrimSuffix(base, ext)
	}

	return base, hexDigestRE.MatchString(base)
}

// layerReport lists a layer's files and checks its stored bytes against the digest its file name carries and its
// content against the config's diff ID (go-containerregistry computes both from the bytes without comparing).
func layerReport(l v1.Layer, file string, wantDiffID v1.Hash, visit func(*tar.Header, io.Reader) error) (LayerReport, error) {
	var lr LayerReport

	digest, err := l.Digest()
	if err != nil {
		return lr, fmt.Errorf("digest: %w", err)
	}

	diffID, err := l.DiffID()
	if err != nil {
		return lr, fmt.Errorf("diff ID: %w", err)
	}

	mt, err := l.MediaType()
	if err != nil {
		return lr, fmt.Errorf("media type: %w", err)
	}

	if lr.Size, err = l.Size(); err != nil {
		return lr, fmt.Errorf("size: %w", err)
	}

	lr.Digest, lr.DiffID, lr.MediaType = digest.String(), wantDiffID.String(), string(mt)

	if want, ok := digestFromName(file); ok && digest.Hex != want && diffID.Hex != want {
		return lr, malformed("%s hashes to %s, its name says otherwise", file, digest)
	}

	rc, err := l.Uncompressed()
	if err != nil {
		return lr, fmt.Errorf("open: %w", err)
	}
	defer rc.Close()

	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, h))

	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return lr, fmt.Errorf("tar: %w", asTarError(err))
		}

		name := cleanName(hdr.Name)
		if hdr.Typeflag == tar.TypeDir {
			lr.Dirs = append(lr.Dirs, name)

			continue
		}

		lr.Files = append(lr.Files, name)

		if visit != nil {
			if err = visit(hdr, tr); err != nil {
				return lr, fmt.Errorf("%s: %w", name, err)
			}
		}
	}

	// The tar end marker may be followed by padding the reader never asked for: it is part of the diff ID.
	if _, err = io.Copy(h, rc); err != nil {
		return lr, fmt.Errorf("read: %w", err)
	}

	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != lr.DiffID {
		return lr, malformed("content hashes to %s, config says diff ID %s", got, lr.DiffID)
	}

	return lr, nil
}

// HasOnly reports whether the layer's files are exactly names, in any order.
func (l LayerReport) HasOnly(names ...string) bool {
	if len(names) != len(l.Files) {
		return false
	}

	set := map[string]bool{}
	for _, f := range l.Files {
		set[f] = true
	}

	for _, n := range names {
		if !set[strings.TrimPrefix(n, "/")] {
			return false
		}
	}

	return true
}
