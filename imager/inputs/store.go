// Package inputs keeps the release inputs of builds on local disk: the imager image's boot files (kernel,
// initramfs, systemd-boot, systemd-stub) and the installer-base, extension and overlay images as OCI layouts,
// all pulled from the upstream registry by digest.
//
// Guarantees: an input is pulled once per digest and kept, content-addressed, under <dir>/sha256/<hex>/; every
// byte is checked against the pinned digest while it is read (manifests and layers alike); an input appears under
// its final name only complete (written in <dir>/.tmp, fsynced, renamed), so a crash never leaves a partial one;
// concurrent Fetches of one input share one pull; an input already on disk is served without registry traffic;
// a running pull logs its progress (bytes of the total, rate) every few seconds, and one whose registry sends
// nothing for a minute fails with a *StallError instead of waiting out PullTimeout; and boot files whose
// systemd-stub or systemd-boot is older than efistub.MinMajor are refused, never stored.
package inputs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/siderolabs/talos/pkg/imager/profile"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
)

// Boot file names inside the imager image's usr/install/<arch>/ and inside a stored boot entry.
const (
	Kernel    = "vmlinuz"
	Initramfs = "initramfs.xz"
	SDBoot    = "systemd-boot.efi"
	SDStub    = "systemd-stub.efi"
)

var bootFiles = []string{Kernel, Initramfs, SDBoot, SDStub}

// PullTimeout bounds one pull. Pulls run detached from the callers (a caller that gives up does not cancel a
// pull other Fetches share): a registry gone silent is abandoned after stallTimeout, and this stops one that
// trickles forever.
const PullTimeout = 30 * time.Minute

// fetchParallelism is how many inputs of one Fetch are pulled at once.
const fetchParallelism = 4

// Store is the on-disk store of release inputs.
type Store struct {
	dir      string
	src      release.Source
	log      *slog.Logger
	hostArch string

	mu    sync.Mutex
	calls map[string]*call // by entry path
}

type call struct {
	done chan struct{}
	err  error
}

// Open opens (creating) the store in dir, pulling from src, and removes temporary files a crash left behind.
func Open(dir string, src release.Source, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	s := &Store{dir: dir, src: src, log: log, hostArch: runtime.GOARCH, calls: map[string]*call{}}

	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("open inputs store %s: clear leftovers: %w", dir, err)
	}

	for _, d := range []string{filepath.Join(dir, "sha256"), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open inputs store %s: %w", dir, err)
		}
	}

	return s, nil
}

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

// tmpDir is where pulls are written before they are renamed into place (same filesystem, so rename is atomic).
func (s *Store) tmpDir() string { return filepath.Join(s.dir, ".tmp") }

// entryKind says how an input is stored.
type entryKind int

const (
	kindBoot   entryKind = iota // the four boot files of one architecture, extracted from the imager image
	kindLayout                  // an OCI image layout, one manifest per platform
)

// role says which of Paths an entry fills.
type role int

const (
	roleImager role = iota
	roleInstallerBase
	roleExtension
	roleOverlay
	roleOverlayInstaller
)

// entry is one stored input: <dir>/sha256/<hex>/<name>.
type entry struct {
	what      string // for logs and errors: "imager", "extension siderolabs/i915", ...
	img       recipe.Image
	role      role
	kind      entryKind
	arch      string        // kindBoot: the target architecture whose files are extracted
	platforms []v1.Platform // kindBoot: the one image read; kindLayout: one manifest each
	name      string
}

func (s *Store) path(e entry) string {
	return filepath.Join(s.dir, "sha256", strings.TrimPrefix(e.img.Digest, "sha256:"), e.name)
}

// Fetch makes every input of in available on local disk for a build for the target architecture arch and returns
// where they are. SchematicExtension and SecureBoot are left empty (they are not release inputs).
func (s *Store) Fetch(ctx context.Context, in recipe.Inputs, arch string) (recipe.Paths, error) {
	entries, err := s.plan(in, arch)
	if err != nil {
		return recipe.Paths{}, fmt.Errorf("fetch inputs: %w", err)
	}

	errs := make([]error, len(entries))
	sem := make(chan struct{}, fetchParallelism)

	var wg sync.WaitGroup

	for i, e := range entries {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()

				errs[i] = s.ensure(ctx, e)
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s: %w", e.what, ctx.Err())
			}
		})
	}

	wg.Wait()

	if err := errors.Join(errs...); err != nil {
		return recipe.Paths{}, err
	}

	return s.paths(entries), nil
}

// plan lists the entries of in, in a fixed order: imager, installer base, extensions, overlay.
func (s *Store) plan(in recipe.Inputs, arch string) ([]entry, error) {
	if !validArch.MatchString(arch) {
		return nil, fmt.Errorf("target architecture %q", arch)
	}

	target := v1.Platform{OS: "linux", Architecture: arch}
	host := v1.Platform{OS: "linux", Architecture: s.hostArch}

	// Each platform image of the imager carries the boot files of every architecture: by default read the host's.
	imagerPlatform, err := selectPlatform(in.Imager, host, "")
	if err != nil {
		return nil, fmt.Errorf("imager: %w", err)
	}

	boot := entry{what: "imager", img: in.Imager, role: roleImager, kind: kindBoot, arch: arch, platforms: []v1.Platform{imagerPlatform}}

	entries := []entry{boot}

	if in.InstallerBase != nil {
		e, err := layoutEntry("installer base", roleInstallerBase, *in.InstallerBase, target, "the build targets")
		if err != nil {
			return nil, err
		}

		entries = append(entries, e)
	}

	for _, x := range in.Extensions {
		e, err := layoutEntry("extension "+x.Repository, roleExtension, x, target, "the build targets")
		if err != nil {
			return nil, err
		}

		entries = append(entries, e)
	}

	if in.Overlay != nil {
		// The imager runs the overlay's installer on the build host.
		e, err := layoutEntry("overlay "+in.Overlay.Name, roleOverlay, in.Overlay.Image, host, "the build host is")
		if err != nil {
			return nil, err
		}

		entries = append(entries, e)
	}

	if in.OverlayInstaller != nil {
		// Installer images carry the overlay installer that runs on the target machine.
		e, err := layoutEntry("overlay installer", roleOverlayInstaller, *in.OverlayInstaller, target, "the build targets")
		if err != nil {
			return nil, err
		}

		entries = append(entries, e)
	}

	for i := range entries {
		if err := checkImage(entries[i].img); err != nil {
			return nil, fmt.Errorf("%s: %w", entries[i].what, err)
		}

		entries[i].name = entryName(entries[i])
	}

	return entries, nil
}

// layoutEntry is an OCI layout of img for platform def (or img.Platform, which must be for the same
// architecture): the Talos imager picks the image whose index.json entry names the architecture it wants and
// refuses a layout without one.
func layoutEntry(what string, r role, img recipe.Image, def v1.Platform, mismatch string) (entry, error) {
	p, err := selectPlatform(img, def, mismatch)
	if err != nil {
		return entry{}, fmt.Errorf("%s: %w", what, err)
	}

	return entry{what: what, img: img, role: r, kind: kindLayout, platforms: []v1.Platform{p}}, nil
}

// selectPlatform is img.Platform when set, else def. A set platform must have def's OS and architecture
// (mismatch words the error), unless mismatch is "".
func selectPlatform(img recipe.Image, def v1.Platform, mismatch string) (v1.Platform, error) {
	if img.Platform == "" {
		return def, nil
	}

	p, err := v1.ParsePlatform(img.Platform)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", img.Platform, err)
	}

	if mismatch != "" && (p.OS != def.OS || p.Architecture != def.Architecture) {
		return v1.Platform{}, fmt.Errorf("pinned for %s, but %s %s", img.Platform, mismatch, def)
	}

	return *p, nil
}

var (
	validDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	validArch   = regexp.MustCompile(`^[a-z0-9]+$`)
)

// checkImage refuses anything that could escape the store's directory or is not pinned by digest.
func checkImage(img recipe.Image) error {
	if !validDigest.MatchString(img.Digest) {
		return fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", img.Digest)
	}

	if img.Repository == "" {
		return errors.New("no repository")
	}

	return nil
}

// entryName names an entry inside its digest's directory: the kind and every platform it selects, so the name
// is known before any registry access and a stored entry is found offline.
func entryName(e entry) string {
	slugs := make([]string, len(e.platforms))
	for i, p := range e.platforms {
		slugs[i] = strings.ReplaceAll(p.String(), "/", "-")
	}

	if e.kind == kindBoot {
		return "boot-" + e.arch + "@" + slugs[0]
	}

	return "oci@" + strings.Join(slugs, "+")
}

func (s *Store) paths(entries []entry) recipe.Paths {
	var p recipe.Paths

	for _, e := range entries {
		dir := s.path(e)

		switch e.role {
		case roleImager:
			p.Kernel = filepath.Join(dir, Kernel)
			p.Initramfs = filepath.Join(dir, Initramfs)
			p.SDBoot = filepath.Join(dir, SDBoot)
			p.SDStub = filepath.Join(dir, SDStub)
		case roleInstallerBase:
			p.BaseInstaller = dir
		case roleOverlay:
			p.Overlay = dir
		case roleOverlayInstaller:
			p.OverlayInstaller = dir
		case roleExtension:
			p.Extensions = append(p.Extensions, profile.ContainerAsset{OCIPath: dir})
		}
	}

	return p
}

// ensure makes e present on disk: at once when it already is, else through one shared pull.
func (s *Store) ensure(ctx context.Context, e entry) error {
	final := s.path(e)

	if exists(final) {
		s.log.Debug("input on disk", "input", e.what, "path", final)

		return nil
	}

	s.mu.Lock()

	c, shared := s.calls[final]
	if !shared {
		c = &call{done: make(chan struct{})}
		s.calls[final] = c

		// Detached: a caller hanging up must not fail the other Fetches waiting for this pull.
		pullCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PullTimeout)

		go func() {
			defer cancel()

			c.err = s.pull(pullCtx, e, final)

			s.mu.Lock()
			delete(s.calls, final)
			s.mu.Unlock()
			close(c.done)
		}()
	}

	s.mu.Unlock()

	if shared {
		s.log.Debug("input pull in progress, waiting", "input", e.what, "path", final)
	}

	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", e.what, ctx.Err())
	}
}

// pull writes e into a temporary directory and renames it to final.
func (s *Store) pull(ctx context.Context, e entry, final string) error {
	if exists(final) { // finished by a pull that ended just before this one started
		return nil
	}

	ref, err := s.ref(e.img)
	if err != nil {
		return fmt.Errorf("%s: %w", e.what, err)
	}

	if err := s.verify(ctx, e); err != nil {
		s.log.Warn("input refused", "input", e.what, "ref", ref.String(), "err", err)

		return fmt.Errorf("%s: %w", e.what, err)
	}

	tmp, err := os.MkdirTemp(s.tmpDir(), "pull-*")
	if err != nil {
		return fmt.Errorf("%s: %w", e.what, err)
	}

	defer os.RemoveAll(tmp) // empty after a successful rename; best effort on failure

	start := time.Now()
	work := filepath.Join(tmp, e.name)

	s.log.Info("pulling input", "input", e.what, "ref", ref.String(), "platforms", platformList(e.platforms))

	n, err := s.watched(ctx, e.what, ref, func(ctx context.Context, t *transfer) (int64, error) {
		if e.kind == kindBoot {
			return s.pullBoot(ctx, t, ref, e, work)
		}

		return s.pullLayout(ctx, t, ref, e, work)
	})

	if err == nil {
		err = publish(work, final)
	}

	if err != nil {
		s.log.Warn("pull failed", "input", e.what, "ref", ref.String(), "elapsed", time.Since(start), "err", err)

		return fmt.Errorf("%s %s: %w", e.what, ref, err)
	}

	s.log.Info("pulled input", "input", e.what, "ref", ref.String(), "bytes", n,
		"elapsed", time.Since(start).Round(time.Millisecond), "path", final)

	return nil
}

// verify checks the signature of an extension or overlay image before a byte of it is stored (the source's Trust
// says with which keys). The imager and installer base are pinned by the digest of one platform's image, which has
// no signature of its own: the catalog read verified the signed index that digest was taken from.
func (s *Store) verify(ctx context.Context, e entry) error {
	switch e.role {
	case roleExtension, roleOverlay, roleOverlayInstaller:
		return s.src.Verify(ctx, e.img.Repository, e.img.Digest)
	default:
		return nil
	}
}

func platformList(ps []v1.Platform) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}

	return strings.Join(out, ",")
}

func exists(path string) bool {
	_, err := os.Stat(path)

	return err == nil
}

// publish fsyncs everything under work and renames it to final. If final appeared meanwhile (another process on
// the same directory), that complete copy is kept.
func publish(work, final string) error {
	if err := syncTree(work); err != nil {
		return fmt.Errorf("sync %s: %w", work, err)
	}

	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}

	if err := os.Rename(work, final); err != nil {
		if exists(final) {
			return nil
		}

		return fmt.Errorf("publish %s: %w", final, err)
	}

	return syncPath(parent)
}

// syncTree fsyncs every file and directory under root, children before parents.
func syncTree(root string) error {
	var dirs []string

	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		if d.IsDir() {
			dirs = append(dirs, p)

			return nil
		}

		if d.Type().IsRegular() {
			return syncPath(p)
		}

		return nil
	})
	if err != nil {
		return err
	}

	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncPath(dirs[i]); err != nil {
			return err
		}
	}

	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}

	defer f.Close() // read-only handle

	return f.Sync()
}
