package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// DefaultJobs is how many blobs, or images, are copied at once unless Options.Jobs says otherwise.
const DefaultJobs = 4

// Options say what Mirror copies, from where and to where (the flags of `edgefactory mirror`).
type Options struct {
	// From is where the release is read, REGISTRY[/NAMESPACE]: DefaultFrom, or a mirror of it. It maps the origin
	// DefaultFrom, so an image of the release is still named ghcr.io/siderolabs/… in the bundle.
	From string
	// Versions are the Talos versions: a comma-separated list ("v1.12.0,v1.13.0"), or a semver range over the tags
	// of <From>/imager (">=v1.12.0", ">=1.12.0 <1.14.0"; a range takes pre-releases only when it names one).
	Versions string
	// Extensions and Overlays select the catalogs' images by name: nil takes none, "all" every one.
	Extensions []string
	Overlays   []string
	// Talosctl adds <ns>/talosctl-all:<v> (Talos 1.11 and later).
	Talosctl bool
	// ClusterImages adds what the version's `talosctl images default` prints (run from its talosctl-all image).
	ClusterImages bool
	// ExtraImages are more images by full reference.
	ExtraImages []string
	// SourceMap entries ORIGIN=REGISTRY[/PREFIX] say where images of an origin are read instead of the origin
	// ("registry.k8s.io=127.0.0.1:5000/registry.k8s.io": a pull-through cache or the synthetic registry).
	SourceMap []string
	// To is the target: a directory (an OCI layout), FILE.tar (built in FILE.tar.partial/, written when complete),
	// or docker://REGISTRY[/PREFIX] (every image pushed under its repository path, without the origin's host).
	To string
	// Insecure talks plain HTTP to every registry (loopback and private addresses always are).
	Insecure bool
	// PublicKeys (PEM) check every cosign signature found: an image whose signature does not verify is refused.
	PublicKeys [][]byte
	// RequireSignatures refuses images without a signature (a verified one when PublicKeys are given).
	RequireSignatures bool
	// IPXEDir, when set, is a directory holding the iPXE binaries (undionly.kpxe, ipxe.efi, ipxe-arm64.efi, all
	// three; VERSION, when present, says where they come from): the bundle carries them for network boot. A
	// registry target refuses it.
	IPXEDir string

	Jobs int // blobs or images copied at once; 0 means DefaultJobs

	// Progress receives the progress report (nil: none): a bar when ProgressBar (a terminal), otherwise a line
	// every ProgressInterval (0: DefaultProgressInterval).
	Progress         io.Writer
	ProgressBar      bool
	ProgressInterval time.Duration

	Logger    *slog.Logger      // nil: discard
	Transport http.RoundTripper // nil: go-containerregistry's default
	Tool      string            // recorded in bundle.json, e.g. "edgefactory v0.3.0"
}

// Result tells what Mirror did.
type Result struct {
	Target   string
	Manifest *Manifest // bundle.json as written (for a registry target, what was pushed)
	Images   int       // images copied
	Fetched  int64     // bytes read from registries
	Copied   int64     // bytes copied from local files (the iPXE binaries)
	Reused   int64     // bytes already there (the bundle's directory, an earlier bundle, the target registry)
	Elapsed  time.Duration
}

// Error is returned when some images (or parts of the release) could not be copied; the others were.
type Error struct {
	Failures []Failure
	Copied   int
}

func (e *Error) Error() string {
	var b strings.Builder

	fmt.Fprintf(&b, "%d not copied (%d images copied):", len(e.Failures), e.Copied)

	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  %s: %s", f.What, f.Error)
	}

	return b.String()
}

// targetKind is what Options.To names.
type targetKind int

const (
	targetDir targetKind = iota
	targetTar
	targetRegistry
)

// mirror is one run.
type mirror struct {
	opts     Options
	log      *slog.Logger
	kind     targetKind
	root     string // the store's directory
	dest     string // registry target: REGISTRY[/PREFIX]
	from     string // REGISTRY/NAMESPACE
	versions versionSpec
	smap     sourceMap
	keys     []signing.PublicKey
	store    *store
	client   *client
	prog     *progress
	start    time.Time
	ipxe     *IPXE // the iPXE binaries stored, when Options.IPXEDir
}

// Mirror copies what opts say into opts.To. Images that cannot be copied do not stop the others: the error is
// then an *Error naming each, and the target holds the rest (a directory's bundle.json lists what is missing; a tar
// target keeps its work directory, FILE.tar.partial, for the next run and writes no tar). A rerun, or a run after
// an interruption, fetches only what is missing or fails its digest.
func Mirror(ctx context.Context, opts Options) (*Result, error) {
	m, err := prepare(opts)
	if err != nil {
		return nil, err
	}

	var seed *Bundle

	if m.kind == targetTar {
		if _, err := os.Stat(m.opts.To); err == nil {
			if seed, err = Open(m.opts.To); err != nil {
				m.log.Warn("the existing bundle cannot be read: it will be replaced", "bundle", m.opts.To, "error", err)
			} else {
				defer seed.Close()
			}
		}
	}

	scratch := m.kind == targetRegistry
	if scratch {
		if m.root, err = os.MkdirTemp("", "edgefactory-mirror-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(m.root) // scratch
	}

	if m.store, err = openStore(m.root, seed, m.log); err != nil {
		return nil, err
	}
	defer m.store.close()

	m.client = newClient(m.opts.Transport, m.opts.Insecure, m.store)

	return m.run(ctx)
}

// prepare checks the options, before any network or disk work.
func prepare(opts Options) (*mirror, error) {
	m := &mirror{opts: opts, log: opts.Logger, start: time.Now()}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}

	if m.opts.From == "" {
		m.opts.From = DefaultFrom
	}

	if m.opts.Jobs <= 0 {
		m.opts.Jobs = DefaultJobs
	}

	reg, ns, err := splitFrom(m.opts.From)
	if err != nil {
		return nil, err
	}

	m.from = reg + "/" + ns

	if m.smap, err = parseSourceMap(m.from, m.opts.SourceMap); err != nil {
		return nil, err
	}

	if m.versions, err = parseVersions(m.opts.Versions); err != nil {
		return nil, err
	}

	if m.versions.list == nil && m.versions.rng == nil && len(m.opts.ExtraImages) == 0 && m.opts.IPXEDir == "" {
		return nil, errors.New("nothing to mirror: give --versions (v1.12.0,v1.13.0 or '>=v1.12.0'), " +
			"--extra-image or --ipxe-dir")
	}

	for _, e := range m.opts.ExtraImages {
		if _, err := parseOrigin(e); err != nil {
			return nil, fmt.Errorf("--extra-image: %w", err)
		}
	}

	if m.keys, err = signing.ParsePublicKeys(m.opts.PublicKeys...); err != nil {
		return nil, err
	}

	if err := m.parseTarget(); err != nil {
		return nil, err
	}

	if m.opts.IPXEDir != "" {
		if m.kind == targetRegistry {
			return nil, fmt.Errorf("--ipxe-dir with --to %s: a registry has no place for loose files; carry the "+
				"iPXE binaries in a bundle (--to DIR or FILE.tar)", m.opts.To)
		}

		if err := checkIPXEDir(m.opts.IPXEDir); err != nil {
			return nil, err
		}
	}

	m.prog = newProgress("mirror", "images", m.opts.Progress, m.opts.ProgressBar, m.opts.ProgressInterval)

	return m, nil
}

// parseTarget reads Options.To.
func (m *mirror) parseTarget() error {
	to := m.opts.To

	switch {
	case to == "":
		return errors.New("--to: say where the bundle goes: DIR, FILE.tar or docker://REGISTRY[/PREFIX]")
	case strings.HasPrefix(to, "docker://"):
		m.kind = targetRegistry
		m.dest = strings.Trim(strings.TrimPrefix(to, "docker://"), "/")

		if m.dest == "" {
			return fmt.Errorf("--to %q: no registry after docker://", to)
		}

		if err := checkRepoPrefix(m.dest); err != nil {
			return fmt.Errorf("--to %q: %w", to, err)
		}

		return nil
	case strings.Contains(to, "://"):
		return fmt.Errorf("--to %q: only docker:// names a registry; a bundle goes to DIR or FILE.tar", to)
	case strings.HasSuffix(to, ".tar"):
		m.kind = targetTar
		m.root = to + ".partial"

		if st, err := os.Stat(filepath.Dir(to)); err != nil || !st.IsDir() {
			return fmt.Errorf("--to %q: directory %s does not exist", to, filepath.Dir(to))
		}

		if st, err := os.Stat(to); err == nil && !st.Mode().IsRegular() {
			return fmt.Errorf("--to %q: exists and is not a file", to)
		}

		return nil
	default:
		m.kind = targetDir
		m.root = to

		st, err := os.Stat(to)

		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil
		case err != nil:
			return fmt.Errorf("--to %q: %w", to, err)
		case !st.IsDir():
			return fmt.Errorf("--to %q: exists and is not a directory (a tar bundle's name ends in .tar)", to)
		}

		entries, err := os.ReadDir(to)
		if err != nil {
			return fmt.Errorf("--to %q: %w", to, err)
		}

		if len(entries) > 0 {
			if _, err := os.Stat(filepath.Join(to, LayoutFile)); err != nil {
				if _, err := os.Stat(filepath.Join(to, tmpDir)); err != nil {
					return fmt.Errorf("--to %q: a directory that is neither empty nor a bundle", to)
				}
			}
		}

		return nil
	}
}

func (m *mirror) run(ctx context.Context) (*Result, error) {
	t0 := time.Now()
	p := m.plan(ctx)
	m.log.Info("planned", "images", len(p.items), "elapsed", time.Since(t0))

	if err := ctx.Err(); err != nil {
		return nil, m.interrupted(err)
	}

	m.prog.printf("mirror: %d images of %s (%d versions: %s) to %s", len(p.items), m.from, len(p.versions),
		strings.Join(p.versions, " "), m.opts.To)

	t0 = time.Now()
	images := m.resolveAll(ctx, p.items)

	if err := ctx.Err(); err != nil {
		return nil, m.interrupted(err)
	}

	m.log.Info("manifests read", "images", len(images), "elapsed", time.Since(t0))
	t0 = time.Now()

	var reused int64

	if m.kind == targetRegistry {
		reused = m.pushAll(ctx, images)
	} else {
		reused = m.copyAll(ctx, images)
	}

	if err := ctx.Err(); err != nil {
		return nil, m.interrupted(err)
	}

	m.log.Info("blobs copied", "elapsed", time.Since(t0))

	var copied int64

	if m.opts.IPXEDir != "" {
		x, n, there, err := m.copyIPXE(ctx)

		switch {
		case ctx.Err() != nil:
			return nil, m.interrupted(ctx.Err())
		case err != nil:
			p.failures = append(p.failures, Failure{What: "iPXE binaries of " + m.opts.IPXEDir, Error: err.Error()})
		default:
			m.ipxe, copied, reused = x, n, reused+there
		}
	}

	res, err := m.finish(p, images, reused)
	if res != nil {
		res.Copied = copied
	}

	return res, err
}

// interrupted explains an interruption: what is kept, and that a rerun resumes.
func (m *mirror) interrupted(err error) error {
	m.prog.end()

	if m.kind == targetRegistry {
		return fmt.Errorf("interrupted (%w): rerun to resume, blobs already pushed are not sent again", err)
	}

	return fmt.Errorf("interrupted (%w): what was fetched is kept in %s, rerun to resume", err, m.root)
}

// Summary is a one-line account of what was mirrored, for people.
func (r *Result) Summary() string {
	mf := r.Manifest

	ipxe := ""
	if x := mf.IPXE; x != nil {
		ipxe = fmt.Sprintf(" and the iPXE binaries (%d files, %s, %s)", len(x.Files), humanize.IBytes(uint64(x.Bytes())),
			orUnknown(x.Source))
	}

	copied := ""
	if r.Copied > 0 {
		copied = ", " + humanize.IBytes(uint64(r.Copied)) + " copied from files"
	}

	return fmt.Sprintf("%d images (%d blobs, %s)%s in %s: %s fetched%s, %s already there, %s", r.Images, mf.Blobs,
		humanize.IBytes(uint64(mf.Bytes)), ipxe, r.Target, humanize.IBytes(uint64(r.Fetched)), copied,
		humanize.IBytes(uint64(r.Reused)), r.Elapsed.Round(time.Millisecond))
}

// sortedVersions sorts versions ascending by semver.
func sortedVersions(vs []string) []string {
	out := slices.Clone(vs)
	slices.SortFunc(out, compareVersions)

	return slices.Compact(out)
}
