// Package synthetic builds a stand-in Talos release and publishes it to an OCI registry.
//
// ghcr.io is out of reach here, so tests, `make run` and air-gapped labs use this release instead: the same
// repository names, tags and file layout as the real one (imager, installer-base, extension and overlay images and
// their catalogs, talosctl-all with stand-in binaries, for several Talos versions, each a linux/amd64 +
// linux/arm64 index), made from a Debian kernel, busybox and systemd-boot (see Parts). Each version also has tiny
// stand-ins for the images a Talos cluster of that version pulls (ClusterImageList: kubelet, etcd, kube-apiserver,
// ..., kept under their original names, registry.k8s.io/kube-apiserver as a repository path), which its stand-in
// `talosctl images default` prints as the real one does. Every image is signed with cosign's legacy tag scheme
// (sha256-<digest>.sig in its repository) by a fixed lab key, public and worthless as a secret (PublicKeyPEM,
// `edgefactory synthetic public-key`), so that inputs are verified in tests and labs as from ghcr.io.
//
// Guarantee: the release is deterministic (fixed timestamps, stable compression, RFC 6979 signatures), so pushing it
// twice, anywhere, yields the same digests, signatures included; and, built from real parts, what the Talos imager
// makes of it boots and prints BootMarker.
package synthetic

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blang/semver/v4"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// DefaultNamespace is the registry namespace of the release's repositories, as on ghcr.io.
const DefaultNamespace = "siderolabs"

// DefaultVersions are the Talos versions the release carries unless Options.Versions says otherwise.
var DefaultVersions = []string{"v1.12.0", "v1.13.0"}

// Options configure a synthetic release. The zero value is usable: namespace "siderolabs", DefaultVersions, parts
// from DefaultPartsDir, plain HTTPS only for non-local registries, logs discarded.
type Options struct {
	Namespace string
	Versions  []string     // "v"-prefixed semver
	Parts     *Parts       // nil: LoadParts(DefaultPartsDir())
	Insecure  bool         // plain HTTP to the registry (loopback registries are plain HTTP anyway)
	Logger    *slog.Logger // nil: discard
	// BlobDir, for a registry that runs for long (dev, synthetic serve): Start keeps the registry's blobs in files
	// under it instead of in memory, and the release is built for this push alone instead of being kept for later
	// pushes in the process (as tests want). Either way, a server would otherwise carry the whole release, tens of
	// megabytes, in its heap for life, and every garbage collection would have to scan it.
	BlobDir string

	// transport carries the push (Start marks its requests, see pushHeader); nil is go-containerregistry's default.
	transport http.RoundTripper
}

func (o Options) complete() (Options, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}

	if len(o.Versions) == 0 {
		o.Versions = DefaultVersions
	}

	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	if o.Parts == nil {
		p, err := LoadParts(DefaultPartsDir(), o.Logger)
		if err != nil {
			return o, err
		}

		o.Parts = p
	}

	for _, v := range o.Versions {
		if _, err := parseVersion(v); err != nil {
			return o, err
		}
	}

	return o, nil
}

func parseVersion(v string) (semver.Version, error) {
	if !strings.HasPrefix(v, "v") {
		return semver.Version{}, fmt.Errorf("version %q: want a v-prefixed semver such as v1.13.0", v)
	}

	sv, err := semver.Parse(strings.TrimPrefix(v, "v"))
	if err != nil {
		return semver.Version{}, fmt.Errorf("version %q: %w", v, err)
	}

	return sv, nil
}

// Pushed is one published multi-arch image and its cosign signature.
type Pushed struct {
	Repository string            `json:"repository"` // without registry, e.g. "siderolabs/imager"
	Tag        string            `json:"tag"`
	Digest     string            `json:"digest"`    // of the index
	Platforms  map[string]string `json:"platforms"` // architecture → manifest digest
	Signature  Signature         `json:"signature"` // of the index, in the same repository
}

// Ref is the image's tag reference in registry.
func (p Pushed) Ref(registry string) string { return registry + "/" + p.Repository + ":" + p.Tag }

// Pinned is the image's digest reference in registry.
func (p Pushed) Pinned(registry string) string { return registry + "/" + p.Repository + "@" + p.Digest }

// SignatureRef is the tag reference of the image's cosign signature in registry.
func (p Pushed) SignatureRef(registry string) string {
	return registry + "/" + p.Repository + ":" + p.Signature.Tag
}

// VersionImages are the images of one Talos version.
type VersionImages struct {
	Version           string   `json:"version"`
	Imager            Pushed   `json:"imager"`
	InstallerBase     Pushed   `json:"installerBase"`
	ExtensionsCatalog Pushed   `json:"extensionsCatalog"`
	OverlaysCatalog   Pushed   `json:"overlaysCatalog"`
	Extensions        []Pushed `json:"extensions"` // catalog order
	Overlays          []Pushed `json:"overlays"`
	// Talosctl is the talosctl-all image (TalosctlFiles), for versions from v1.11.0 on; nil before.
	Talosctl *Pushed `json:"talosctl,omitempty"`
	// Cluster are the images a Talos cluster of the version pulls, in the order its `talosctl images default` lists
	// them (ClusterImageList).
	Cluster []ClusterImage `json:"cluster"`
}

// Manifest reports what Push published.
type Manifest struct {
	Registry  string          `json:"registry"`
	Namespace string          `json:"namespace"`
	Versions  []VersionImages `json:"versions"`
}

// Version returns the images of one version.
func (m *Manifest) Version(v string) (VersionImages, bool) {
	for _, vi := range m.Versions {
		if vi.Version == v {
			return vi, true
		}
	}

	return VersionImages{}, false
}

// Images lists every published image once, sorted by repository and tag. (Each has its signature besides.)
func (m *Manifest) Images() []Pushed {
	seen := map[string]Pushed{}

	for _, vi := range m.Versions {
		images := append([]Pushed{vi.Imager, vi.InstallerBase, vi.ExtensionsCatalog, vi.OverlaysCatalog},
			append(slices.Clone(vi.Extensions), vi.Overlays...)...)
		if vi.Talosctl != nil {
			images = append(images, *vi.Talosctl)
		}

		for _, c := range vi.Cluster {
			images = append(images, c.Image)
		}

		for _, p := range images {
			seen[p.Repository+":"+p.Tag] = p
		}
	}

	out := make([]Pushed, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}

	slices.SortFunc(out, func(a, b Pushed) int {
		return strings.Compare(a.Repository+":"+a.Tag, b.Repository+":"+b.Tag)
	})

	return out
}

// Push builds the release (or, without BlobDir, reuses one built earlier in this process from the same parts) and
// pushes every image to registry ("host:port"), dependencies first, each followed by its cosign signature. One log
// line per image.
func Push(ctx context.Context, registry string, opts Options) (*Manifest, error) {
	opts, err := opts.complete()
	if err != nil {
		return nil, err
	}

	start := time.Now()

	build := cachedBuild
	if opts.BlobDir != "" {
		build = buildRelease
	}

	rel, err := build(opts)
	if err != nil {
		return nil, fmt.Errorf("build synthetic release: %w", err)
	}

	opts.Logger.Info("pushing synthetic Talos release", "registry", registry, "namespace", opts.Namespace,
		"versions", opts.Versions, "images", len(rel.items), "real_parts", opts.Parts.Real(), "build", time.Since(start))

	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}

	// One pusher for the whole release: it talks to each repository through one writer, set up once.
	var pushOpts []remote.Option
	if opts.transport != nil {
		pushOpts = append(pushOpts, remote.WithTransport(opts.transport))
	}

	pusher, err := remote.NewPusher(pushOpts...)
	if err != nil {
		return nil, fmt.Errorf("push to %s: %w", registry, err)
	}

	for _, it := range rel.items {
		ref, err := name.NewTag(it.pushed.Ref(registry), nameOpts...)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", it.pushed.Ref(registry), err)
		}

		t := time.Now()

		if err := pusher.Push(ctx, ref, it.index); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}

		if err := pushSignature(ctx, pusher, ref.Context(), it.sig); err != nil {
			return nil, fmt.Errorf("push the signature of %s: %w", ref, err)
		}

		opts.Logger.Info("pushed", "image", ref.String(), "digest", it.pushed.Digest, "elapsed", time.Since(t))
	}

	return &Manifest{Registry: registry, Namespace: opts.Namespace, Versions: slices.Clone(rel.versions)}, nil
}

// release is a built (not yet pushed) synthetic release.
type release struct {
	items    []item // unique by repository:tag, dependencies first
	versions []VersionImages
}

type item struct {
	pushed Pushed
	index  v1.ImageIndex
	sig    signing.CosignParts
}

// releases caches built releases for the life of the process: tests start many registries from the same parts.
var releases sync.Map // key string → *releaseOnce

type releaseOnce struct {
	once sync.Once
	rel  *release
	err  error
}

func cachedBuild(opts Options) (*release, error) {
	key := opts.Namespace + "|" + strings.Join(opts.Versions, ",") + "|" + opts.Parts.sum
	v, _ := releases.LoadOrStore(key, &releaseOnce{})
	r := v.(*releaseOnce) //nolint:forcetypeassert // only *releaseOnce is stored

	r.once.Do(func() { r.rel, r.err = buildRelease(opts) })

	return r.rel, r.err
}

func newItem(repo, tag string, idx v1.ImageIndex) (item, error) {
	d, err := idx.Digest()
	if err != nil {
		return item{}, fmt.Errorf("%s:%s digest: %w", repo, tag, err)
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return item{}, fmt.Errorf("%s:%s index: %w", repo, tag, err)
	}

	platforms := map[string]string{}

	for _, m := range im.Manifests {
		if m.Platform != nil {
			platforms[m.Platform.Architecture] = m.Digest.String()
		}
	}

	sig, err := sign(repo, d.String())
	if err != nil {
		return item{}, err
	}

	return item{pushed: Pushed{Repository: repo, Tag: tag, Digest: d.String(), Platforms: platforms,
		Signature: Signature{Tag: sig.Tag, Digest: sig.Manifest.Digest}}, index: idx, sig: sig}, nil
}

// itemSet collects images in push order, once per repository:tag.
type itemSet struct {
	items []item
	byRef map[string]int
}

func (s *itemSet) add(it item) (Pushed, error) {
	ref := it.pushed.Repository + ":" + it.pushed.Tag

	if i, ok := s.byRef[ref]; ok {
		if s.items[i].pushed.Digest != it.pushed.Digest {
			return Pushed{}, fmt.Errorf("%s built twice with different content", ref)
		}

		return s.items[i].pushed, nil
	}

	if s.byRef == nil {
		s.byRef = map[string]int{}
	}

	s.byRef[ref] = len(s.items)
	s.items = append(s.items, it)

	return it.pushed, nil
}
