// Package imager turns a recipe into bytes: it fetches the recipe's release inputs, writes the schematic extension
// and secure-boot keys beside them, and runs the Talos imager (github.com/siderolabs/talos/pkg/imager) on the
// recipe's profile, in a worker process at Config.Nice (see worker.go). A talosctl recipe is no build: its binary is
// copied out of the release's talosctl-all image (see talosctl.go), without the imager and without a build slot.
//
// Guarantees: at most Config.Concurrency builds run at once (the others wait their turn); a build is detached from
// its caller (a caller that gives up stops waiting, the build goes on until done or Config.Timeout) and leaves
// nothing behind in TmpDir except the Output handed to a caller, which Output.Cleanup removes; builds are
// reproducible where the Talos imager is (SOURCE_DATE_EPOCH is fixed process-wide); every error names the step
// that failed ("fetch inputs: ...", "build iso: ..."); no process of a build outlives it.
package imager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/imager/inputs"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/signing"
)

// Defaults of Config.
const (
	DefaultConcurrency = 2
	DefaultTimeout     = 20 * time.Minute
	DefaultQueueDepth  = 64
)

// QueueFullError refuses a build when QueueDepth builds already wait for a slot.
type QueueFullError struct {
	Queued int
	// After is how long the client should wait before asking again.
	After time.Duration
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("build queue full: %d builds already wait for a build slot; ask again in %s", e.Queued,
		e.After)
}

// Unavailable marks the refusal as a 503 (frontends.Classify).
func (e *QueueFullError) Unavailable() bool { return true }

// RetryAfter is the wait the answer's Retry-After names.
func (e *QueueFullError) RetryAfter() time.Duration { return e.After }

// queueFullRetry is the Retry-After of a refused build: about how long a synthetic-to-real build takes a slot.
const queueFullRetry = 30 * time.Second

// abandonGrace is how long a caller still waits after the build's timeout for the imager to notice it.
const abandonGrace = 30 * time.Second

// Version names this builder and the Talos imager it drives. It is part of every recipe key, so changing how
// assets are built (or upgrading Talos' imager) must change it: old cached bytes then stop matching new requests.
const Version = "edgefactory-builder/1 talos-imager/v1.13.0"

// Config configures a Builder.
type Config struct {
	// TmpDir holds the builds' working directories and is the process's TMPDIR (the Talos imager puts its own
	// scratch files in TMPDIR). It must be on the data directory's filesystem so outputs can be renamed into the CAS.
	TmpDir string
	// Concurrency limits simultaneous builds; 0 means DefaultConcurrency.
	Concurrency int
	// QueueDepth bounds the builds waiting for a slot: past it a build is refused at once with a QueueFullError
	// (a 503 with Retry-After to the client) rather than waiting without bound; 0 means DefaultQueueDepth.
	QueueDepth int
	// Timeout bounds one build from the moment it gets its slot; 0 means DefaultTimeout.
	Timeout time.Duration
	// Inputs provides the release inputs.
	Inputs *inputs.Store
	// SecureBoot returns the signing material for secure-boot assets at the time of a build (a cluster may create
	// its keys after the builder starts); nil, or a nil result, disables them.
	SecureBoot func() *signing.SecureBootKeys
	// Logger receives build logs and the imager's progress lines; nil discards them.
	Logger *slog.Logger
	// RequestID, when set, names the request a build runs for in its logs.
	RequestID func(context.Context) string
	// Nice is the CPU niceness (1-19) of the build workers and the tools they run, so that serving goes first on a
	// busy node; 0 runs them at the node's own priority.
	Nice int
}

// Output is a finished build: the file at Path (inside TmpDir) is the caller's to move, typically into the CAS
// (which also punches holes into raw disk images). Cleanup then removes the build's directory and whatever is
// still in it; it may be called more than once.
type Output struct {
	Path    string
	Size    int64
	Cleanup func()
}

// Builder runs builds.
type Builder struct {
	cfg  Config
	log  *slog.Logger
	slot chan struct{}

	ctx    context.Context //nolint:containedctx // cancelled by Close: ends every build
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	queued  int
	running int
	started int64 // builds begun, for Stats
}

// New makes a Builder. It sets SOURCE_DATE_EPOCH and TMPDIR for the whole process: the Talos imager reads both
// from the environment. One process can therefore host Builders of one TmpDir only.
func New(cfg Config) (*Builder, error) {
	if cfg.Inputs == nil {
		return nil, errors.New("new builder: no inputs store")
	}

	if cfg.TmpDir == "" {
		return nil, errors.New("new builder: no TmpDir")
	}

	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}

	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}

	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}

	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	tmp, err := filepath.Abs(cfg.TmpDir)
	if err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}

	cfg.TmpDir = tmp

	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}

	if err := setProcessEnv(tmp, cfg.Logger); err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())

	return &Builder{
		cfg:    cfg,
		log:    cfg.Logger,
		slot:   make(chan struct{}, cfg.Concurrency),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Stats are the numbers of builds running and waiting for a slot, and of builds started since the builder was made
// (each run of the imager or talosctl copy counted once when it begins, whatever its outcome).
type Stats struct {
	Running, Queued int
	Started         int64
}

// Stats reports the current load.
func (b *Builder) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()

	return Stats{Running: b.running, Queued: b.queued, Started: b.started}
}

// Close cancels every build and waits until each has stopped and cleaned up. Builds started later fail.
func (b *Builder) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cancel()
	b.mu.Unlock()

	b.wg.Wait()

	return nil
}

// start runs fn as a build goroutine unless the Builder is closed.
func (b *Builder) start(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()

	if b.closed {
		return false
	}

	b.wg.Go(fn)

	return true
}

type result struct {
	out *Output
	err error
}

// Build builds r. It waits for a free slot (giving up when ctx ends), then runs the build detached from ctx: if
// ctx ends meanwhile, Build returns at once and the build finishes on its own and removes its output.
func (b *Builder) Build(ctx context.Context, r recipe.Recipe) (*Output, error) {
	return b.BuildReporting(ctx, r, nil)
}

// BuildReporting is Build telling report (when not nil) each stage the build reaches, from the goroutines that
// run it, one after the other; it may be called after BuildReporting returned, until the detached build ends.
func (b *Builder) BuildReporting(ctx context.Context, r recipe.Recipe, report Report) (*Output, error) {
	if report == nil {
		report = func(Stage) {}
	}

	log := b.log.With("recipe", r.Key, "asset", r.Asset.Path, "version", r.Version)
	if b.cfg.RequestID != nil {
		if id := b.cfg.RequestID(ctx); id != "" {
			log = log.With("request_id", id)
		}
	}

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build %s: %w", r.Asset.Path, err)
	}

	// Copying a talosctl binary out of its image is network and disk work only: it never waits behind image builds.
	slot := r.Talosctl == nil
	if slot {
		if err := b.acquire(ctx, log, report); err != nil {
			return nil, err
		}
	}

	// Values (request ID, trace) stay; cancellation does not: others may be waiting for this build.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.Timeout)
	stopOnClose := context.AfterFunc(b.ctx, cancel)

	res := make(chan result) // unbuffered: a result nobody takes is cleaned up by the build itself
	gone := make(chan struct{})

	started := b.start(func() {
		if slot {
			defer b.release()
		}

		b.mu.Lock()
		b.started++
		b.mu.Unlock()

		defer cancel()
		defer stopOnClose()

		out, err := b.run(bctx, r, log, report)

		select {
		case res <- result{out, err}:
		case <-gone:
			if out != nil {
				log.Info("build finished after its caller left: output discarded")
				out.Cleanup()
			}
		}
	})
	if !started {
		stopOnClose()
		cancel()

		if slot {
			b.release()
		}

		return nil, errors.New("builder closed")
	}

	// The imager should stop soon after the timeout; should it not, the caller does not wait for it.
	overdue := make(chan struct{})
	stopOverdue := context.AfterFunc(bctx, func() {
		if errors.Is(bctx.Err(), context.DeadlineExceeded) {
			time.AfterFunc(abandonGrace, func() { close(overdue) })
		}
	})

	defer stopOverdue()

	select {
	case rr := <-res:
		return rr.out, rr.err
	case <-ctx.Done():
		close(gone)

		return nil, fmt.Errorf("build %s: caller stopped waiting: %w", r.Asset.Path, ctx.Err())
	case <-overdue:
		close(gone)

		return nil, fmt.Errorf("build %s: still running %s after its %s timeout", r.Asset.Path, abandonGrace, b.cfg.Timeout)
	}
}

// acquire takes a build slot, waiting (and saying so) when all are busy.
func (b *Builder) acquire(ctx context.Context, log *slog.Logger, report Report) error {
	if b.ctx.Err() != nil {
		return errors.New("builder closed")
	}

	select {
	case b.slot <- struct{}{}:
		b.count(1, 0)

		return nil
	default:
	}

	if !b.enqueue() {
		st := b.Stats()
		log.Warn("build refused: the build queue is full", "running", st.Running, "queued", st.Queued)

		return &QueueFullError{Queued: st.Queued, After: queueFullRetry}
	}

	report(StageQueued)
	st := b.Stats()
	log.Info("build queued: all slots busy", "running", st.Running, "queued", st.Queued)

	start := time.Now()

	select {
	case b.slot <- struct{}{}:
		b.count(1, -1)
		log.Info("build slot acquired", "waited", time.Since(start).Round(time.Millisecond))

		return nil
	case <-ctx.Done():
		b.count(0, -1)

		return fmt.Errorf("wait for a build slot: %w", ctx.Err())
	case <-b.ctx.Done():
		b.count(0, -1)

		return errors.New("builder closed")
	}
}

// release frees a slot. When no build of the process runs any more, count removes the scratch files a killed tool
// left in TmpDir (TMPDIR is shared by all builds, so whose they are cannot be told while builds run); its lock
// keeps a new build from starting meanwhile.
func (b *Builder) release() {
	b.count(-1, 0)
	<-b.slot
}

// enqueue counts one more build waiting for a slot, unless QueueDepth already do.
func (b *Builder) enqueue() bool {
	b.mu.Lock()
	defer b.mu.Unlock()

	if b.queued >= b.cfg.QueueDepth {
		return false
	}

	b.queued++

	return true
}

func (b *Builder) count(running, queued int) {
	b.mu.Lock()
	b.running += running
	b.queued += queued
	b.mu.Unlock()

	if running == 0 {
		return
	}

	envMu.Lock()
	defer envMu.Unlock()

	envRunning += running
	if envRunning == 0 && envScratch != "" {
		sweep(envScratch, false, true, b.log)
	}
}
