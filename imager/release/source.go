package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"go.yaml.in/yaml/v4"
)

// Source is the upstream registry a release is read from: ghcr.io, or a mirror (plain HTTP when Insecure).
type Source struct {
	Registry   string   // "ghcr.io", "127.0.0.1:5000"
	Namespace  string   // "" means "siderolabs"
	Insecure   bool     // plain HTTP
	MinVersion string   // oldest listed version; "" means DefaultMinVersion
	Broken     []string // versions never listed

	// Timeout bounds each call whose context has no deadline; 0 means 2 minutes (catalog images are small).
	Timeout time.Duration
	// Transport is the HTTP transport; nil means go-containerregistry's default (30 s dial, keep-alives).
	Transport http.RoundTripper
	// Trust checks the signature of every image read (Verify); nil checks none.
	Trust *Trust
}

func (s Source) namespace() string {
	if s.Namespace == "" {
		return "siderolabs"
	}

	return s.Namespace
}

// Repository is the repository path (without registry) of a release component, e.g. "siderolabs/imager".
func (s Source) Repository(component string) string { return s.namespace() + "/" + component }

// withTimeout bounds a read whose context has no deadline by s.Timeout (2 minutes when unset).
func (s Source) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := s.Timeout
	if t == 0 {
		t = 2 * time.Minute
	}

	return timeoutUnlessDeadline(ctx, t)
}

// timeoutUnlessDeadline bounds ctx by t unless it has a deadline of its own.
func timeoutUnlessDeadline(ctx context.Context, t time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}

	return context.WithTimeout(ctx, t)
}

func (s Source) remote(ctx context.Context, extra ...remote.Option) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}

	return append(opts, extra...)
}

func (s Source) ref(repoPath, tagOrDigest string) (name.Reference, error) {
	var opts []name.Option
	if s.Insecure {
		opts = append(opts, name.Insecure)
	}

	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}

	return name.ParseReference(s.Registry+"/"+repoPath+sep+tagOrDigest, append(opts, name.StrictValidation)...)
}

// ListVersions lists the Talos versions the registry offers: the tags of <ns>/imager, filtered by FilterVersions.
func (s Source) ListVersions(ctx context.Context) ([]string, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()

	repoPath := s.Repository("imager")

	var opts []name.Option
	if s.Insecure {
		opts = append(opts, name.Insecure)
	}

	repo, err := name.NewRepository(s.Registry+"/"+repoPath, opts...)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}

	tags, err := remote.List(repo, s.remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, err)
	}

	return FilterVersions(tags, s.minVersion(), s.Broken), nil
}

// minVersion is the oldest version listed.
func (s Source) minVersion() string {
	if s.MinVersion == "" {
		return DefaultMinVersion
	}

	return s.MinVersion
}

// Listed reports whether version would be listed at all: at or above the minimum version and not broken.
func (s Source) Listed(version string) bool {
	return len(FilterVersions([]string{version}, s.minVersion(), s.Broken)) == 1
}

// Published reports whether the registry still has the imager image of version, asked for directly: a mirror may
// list only some of its tags (a pull-through cache lists what it has cached) and serve the others all the same.
// It is false only when the registry says the tag is unknown; any other failure is an error.
func (s Source) Published(ctx context.Context, version string) (bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()

	ref, err := s.ref(s.Repository("imager"), version)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", version, err)
	}

	_, err = remote.Head(ref, s.remote(ctx)...)
	if notFound(err) {
		return false, nil
	}

	if err != nil {
		return false, fmt.Errorf("check %s: %w", ref, err)
	}

	return true, nil
}

// notFound reports whether the registry said it does not have the image (or the repository).
func notFound(err error) bool {
	var terr *transport.Error

	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// ReadVersion reads the complete catalog of one Talos version: input image digests, official extensions and
// overlays. All or nothing: any failure is an error naming what failed, never a partial Version.
func (s Source) ReadVersion(ctx context.Context, version string) (Version, error) {
	sv, err := parseVersion(version)
	if err != nil {
		return Version{}, fmt.Errorf("read version %q: %w", version, err)
	}

	ctx, cancel := s.withTimeout(ctx)
	defer cancel()

	tag := "v" + sv.String()
	out := Version{Version: tag}

	if out.Imager, err = s.readImage(ctx, "imager", tag); err != nil {
		return Version{}, err
	}

	installer := "installer-base"
	if !coreAtLeast(sv, 1, 10, 0) {
		installer = "installer"
	}

	if out.InstallerBase, err = s.readImage(ctx, installer, tag); err != nil {
		return Version{}, err
	}

	if out.Extensions, err = s.readExtensions(ctx, tag); err != nil {
		return Version{}, err
	}

	out.Overlays = []Overlay{}

	if coreAtLeast(sv, 1, 7, 0) {
		if out.Overlays, err = s.readOverlays(ctx, tag); err != nil {
			return Version{}, err
		}
	}

	return out, nil
}

// readImage pins a multi-arch image: its index digest and the manifest digest of every architecture.
func (s Source) readImage(ctx context.Context, component, tag string) (Image, error) {
	repoPath := s.Repository(component)
	what := repoPath + ":" + tag

	ref, err := s.ref(repoPath, tag)
	if err != nil {
		return Image{}, fmt.Errorf("read %s: %w", what, err)
	}

	desc, err := remote.Get(ref, s.remote(ctx)...)
	if err != nil {
		return Image{}, fmt.Errorf("read %s: %w", what, err)
	}

	if !desc.MediaType.IsIndex() {
		return Image{}, fmt.Errorf("read %s: %s is not a multi-architecture index", what, desc.MediaType)
	}

	idx, err := desc.ImageIndex()
	if err != nil {
		return Image{}, fmt.Errorf("read %s: %w", what, err)
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return Image{}, fmt.Errorf("read %s index: %w", what, err)
	}

	if err := s.Verify(ctx, repoPath, desc.Digest.String()); err != nil {
		return Image{}, fmt.Errorf("read %s: %w", what, err)
	}

	img := Image{Repository: repoPath, Index: desc.Digest.String(), Arch: map[string]string{}}

	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" {
			if _, dup := img.Arch[m.Platform.Architecture]; !dup {
				img.Arch[m.Platform.Architecture] = m.Digest.String()
			}
		}
	}

	for _, arch := range Architectures {
		if img.Arch[arch] == "" {
			return Image{}, fmt.Errorf("read %s: no linux/%s image in the index", what, arch)
		}
	}

	return img, nil
}

// maxCatalogFile bounds what is read of a catalog file: the real ones are a few kilobytes.
const maxCatalogFile = 16 << 20

// amd64Image is the linux/amd64 image of repoPath@digest (catalog images carry the same files for every arch).
func (s Source) amd64Image(ctx context.Context, repoPath, digest string) (v1.Image, error) {
	byDigest, err := s.ref(repoPath, digest)
	if err != nil {
		return nil, err
	}

	return remote.Image(byDigest, s.remote(ctx, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))...)
}

// readCatalogFiles fetches a catalog image by tag then by digest (its amd64 image), flattens it and returns the
// wanted root files that exist.
func (s Source) readCatalogFiles(ctx context.Context, repoPath, tag string, wanted ...string) (map[string][]byte, error) {
	ref, err := s.ref(repoPath, tag)
	if err != nil {
		return nil, err
	}

	desc, err := remote.Head(ref, s.remote(ctx)...)
	if err != nil {
		return nil, err
	}

	digest := desc.Digest.String()

	if err := s.Verify(ctx, repoPath, digest); err != nil {
		return nil, err
	}

	img, err := s.amd64Image(ctx, repoPath, digest)
	if err != nil {
		return nil, err
	}

	files := map[string][]byte{}

	err = eachRootFile(img, func(name string) bool { return slices.Contains(wanted, name) },
		func(name string, r io.Reader) error {
			data, err := io.ReadAll(io.LimitReader(r, maxCatalogFile))
			files[name] = data

			return err
		})
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", repoPath, digest, err)
	}

	return files, nil
}

// readExtensions reads <ns>/extensions:<tag>: image-digests (the list, in file order) and descriptions.yaml.
func (s Source) readExtensions(ctx context.Context, tag string) ([]Extension, error) {
	repoPath := s.Repository("extensions")

	files, err := s.readCatalogFiles(ctx, repoPath, tag, "image-digests", "descriptions.yaml")
	if err == nil && files["image-digests"] == nil {
		err = errors.New("failed to find image-digests file")
	}

	if err != nil {
		return nil, fmt.Errorf("read extensions catalog %s:%s: %w", repoPath, tag, err)
	}

	descs := map[string]struct {
		Author      string `yaml:"author"`
		Description string `yaml:"description"`
	}{}

	if d := files["descriptions.yaml"]; d != nil {
		if err := yaml.Unmarshal(d, &descs); err != nil {
			return nil, fmt.Errorf("read extensions catalog %s:%s: descriptions.yaml: %w", repoPath, tag, err)
		}
	}

	exts := []Extension{}

	for line := range strings.SplitSeq(string(files["image-digests"]), "\n") {
		line = strings.TrimSpace(line)

		refPart, digest, ok := strings.Cut(line, "@")
		if !ok {
			continue
		}

		repo, imageTag, err := splitImageRef(refPart)
		if err != nil {
			return nil, fmt.Errorf("read extensions catalog %s:%s: line %q: %w", repoPath, tag, line, err)
		}

		exts = append(exts, Extension{
			Name:        repo,
			Ref:         s.Registry + "/" + repo + ":" + imageTag,
			Digest:      digest,
			Author:      descs[line].Author,
			Description: descs[line].Description,
		})
	}

	return exts, nil
}

// readOverlays reads <ns>/overlays:<tag>: overlays.yaml.
func (s Source) readOverlays(ctx context.Context, tag string) ([]Overlay, error) {
	repoPath := s.Repository("overlays")

	files, err := s.readCatalogFiles(ctx, repoPath, tag, "overlays.yaml")
	if err == nil && files["overlays.yaml"] == nil {
		err = errors.New("failed to find overlays.yaml file")
	}

	if err != nil {
		return nil, fmt.Errorf("read overlays catalog %s:%s: %w", repoPath, tag, err)
	}

	var doc struct {
		Overlays []struct {
			Name   string `yaml:"name"`
			Image  string `yaml:"image"`
			Digest string `yaml:"digest"`
		} `yaml:"overlays"`
	}

	if err := yaml.Unmarshal(files["overlays.yaml"], &doc); err != nil {
		return nil, fmt.Errorf("read overlays catalog %s:%s: overlays.yaml: %w", repoPath, tag, err)
	}

	overlays := make([]Overlay, 0, len(doc.Overlays))

	for _, o := range doc.Overlays {
		repo, _, err := splitImageRef(o.Image)
		if err != nil {
			return nil, fmt.Errorf("read overlays catalog %s:%s: overlay %q: %w", repoPath, tag, o.Name, err)
		}

		overlays = append(overlays, Overlay{Name: o.Name, Image: repo, Ref: o.Image, Digest: o.Digest})
	}

	return overlays, nil
}

// splitImageRef splits "<registry>/<repo>[:<tag>]" into the repository path (without registry) and the tag.
func splitImageRef(ref string) (repo, tag string, err error) {
	registry, rest, ok := strings.Cut(ref, "/")
	if !ok || registry == "" || rest == "" {
		return "", "", fmt.Errorf("image %q: want <registry>/<repository>[:<tag>]", ref)
	}

	repo = rest
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		repo, tag = rest[:i], rest[i+1:]
	}

	return repo, tag, nil
}
