package inputs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgefactory/edgefactory/imager/efistub"
	"github.com/edgefactory/edgefactory/imager/recipe"
)

// Annotations written on every index.json entry of a stored layout. The Talos imager reads neither (it takes the
// installer's image reference from the profile's ContainerAsset.ImageRef); they record what was pulled.
const (
	AnnotationRefName   = "org.opencontainers.image.ref.name" // the pinned upstream reference
	AnnotationImageName = "io.containerd.image.name"          // the same, where containerd tools look
)

// ref is the pinned reference of img in the upstream registry. Pulling by digest makes go-containerregistry check
// the manifest against it; the manifest in turn pins every blob, which is checked as it is read.
func (s *Store) ref(img recipe.Image) (name.Digest, error) {
	var opts []name.Option
	if s.src.Insecure {
		opts = append(opts, name.Insecure)
	}

	d, err := name.NewDigest(s.src.Registry+"/"+img.Repository+"@"+img.Digest, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("reference: %w", err)
	}

	return d, nil
}

// remote is the options of a pull whose traffic t counts.
func (s *Store) remote(ctx context.Context, t *transfer, extra ...remote.Option) []remote.Option {
	base := s.src.Transport
	if base == nil {
		base = remote.DefaultTransport
	}

	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(t.roundTripper(base)),
	}

	return append(opts, extra...)
}

// pullBoot extracts usr/install/<arch>/{vmlinuz,initramfs.xz,systemd-boot.efi,systemd-stub.efi} of the imager
// image into dir, and refuses a systemd-stub or systemd-boot that is too old to be safe.
func (s *Store) pullBoot(ctx context.Context, t *transfer, ref name.Digest, e entry, dir string) (int64, error) {
	img, err := remote.Image(ref, s.remote(ctx, t, remote.WithPlatform(e.platforms[0]))...)
	if err != nil {
		return 0, err
	}

	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}

	t.expect(layerBytes(m)) // extraction reads every layer and nothing else

	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}

	n, err := extractFiles(img, "usr/install/"+e.arch, bootFiles, dir)
	if err != nil {
		return n, err
	}

	if err := efistub.CheckStub(filepath.Join(dir, SDStub)); err != nil {
		return n, fmt.Errorf("refusing the imager's UKI stub (never build with it): %w", err)
	}

	if err := efistub.CheckBoot(filepath.Join(dir, SDBoot)); err != nil {
		return n, fmt.Errorf("refusing the imager's systemd-boot: %w", err)
	}

	return n, nil
}

// pullLayout writes an OCI layout into dir with one index.json entry per platform of e, each carrying its
// platform (the Talos imager skips entries without one). A digest that names a single image serves every
// platform asked for: the recipe pinned exactly that image.
func (s *Store) pullLayout(ctx context.Context, t *transfer, ref name.Digest, e entry, dir string) (int64, error) {
	desc, err := remote.Get(ref, s.remote(ctx, t)...)
	if err != nil {
		return 0, err
	}

	// Every manifest first, so the progress of the blobs is measured against their total.
	imgs := make([]v1.Image, len(e.platforms))

	var total, blobs int64

	for i, p := range e.platforms {
		if imgs[i], err = platformImage(desc, p); err != nil {
			return 0, err
		}

		n, raw, err := imageSize(imgs[i])
		if err != nil {
			return 0, err
		}

		total += n
		blobs += n - raw
	}

	t.expect(blobs)

	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return 0, err
	}

	annotations := map[string]string{AnnotationRefName: ref.String(), AnnotationImageName: ref.String()}

	for i, p := range e.platforms {
		if err := lp.AppendImage(imgs[i], layout.WithPlatform(p), layout.WithAnnotations(annotations)); err != nil {
			return 0, fmt.Errorf("write %s image: %w", p, err)
		}
	}

	return total, nil
}

// platformImage picks p's image from an index, or returns the single image desc names.
func platformImage(desc *remote.Descriptor, p v1.Platform) (v1.Image, error) {
	switch {
	case desc.MediaType.IsImage():
		return desc.Image()
	case !desc.MediaType.IsIndex():
		return nil, fmt.Errorf("media type %s is neither an image nor an index", desc.MediaType)
	}

	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}

	for _, m := range im.Manifests {
		if m.Platform != nil && m.MediaType.IsImage() && m.Platform.Satisfies(p) {
			return idx.Image(m.Digest)
		}
	}

	return nil, fmt.Errorf("no %s image in the index", p)
}

// layerBytes is the compressed size of a manifest's layers.
func layerBytes(m *v1.Manifest) int64 {
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}

	return n
}

// imageSize is the bytes of the image's manifest, config and layers as stored, and of its manifest alone.
func imageSize(img v1.Image) (total, manifest int64, err error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, 0, err
	}

	raw, err := img.RawManifest()
	if err != nil {
		return 0, 0, err
	}

	return int64(len(raw)) + m.Config.Size + layerBytes(m), int64(len(raw)), nil
}
