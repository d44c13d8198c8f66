package imager

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/reporter"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// TestConcurrencyLimit: with one slot, two builds run one after the other; with two, side by side.
func TestConcurrencyLimit(t *testing.T) {
	f := getFixture(t)
	r := f.plan(t, "metal-amd64-uki.efi", "")

	for _, tc := range []struct {
		slots   int
		overlap bool
	}{{slots: 1, overlap: false}, {slots: 2, overlap: true}} {
		b, logs := f.newBuilder(t, func(c *Config) { c.Concurrency = tc.slots })

		var wg sync.WaitGroup

		for range 2 {
			wg.Go(func() {
				out, err := b.Build(context.Background(), r)
				if !assertNoError(t, err) {
					return
				}

				out.Cleanup()
			})
		}

		wg.Wait()

		// The order of "started" and "done" in the log is the order they happened in.
		var order []string

		for _, rec := range logs.base().all() {
			if rec.msg == "build started" || rec.msg == "build done" {
				order = append(order, rec.msg)
			}
		}

		if tc.overlap {
			require.Equal(t, []string{"build started", "build started", "build done", "build done"}, order)
			require.Empty(t, logs.records("build queued: all slots busy"))
		} else {
			require.Equal(t, []string{"build started", "build done", "build started", "build done"}, order)
			require.Len(t, logs.records("build queued: all slots busy"), 1)
			require.Len(t, logs.records("build slot acquired"), 1)
		}

		require.Equal(t, Stats{Started: 2}, b.Stats(), "both builds ran, and nothing runs or waits now")
	}
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()

	if err != nil {
		t.Errorf("build: %v", err)

		return false
	}

	return true
}

// TestQueuedCallerLeaves: a caller that gives up while queued never starts a build.
func TestQueuedCallerLeaves(t *testing.T) {
	f := getFixture(t)
	b, logs := f.newBuilder(t, func(c *Config) { c.Concurrency = 1 })
	iso := f.plan(t, "metal-amd64.iso", "")

	first := make(chan error, 1)

	go func() {
		out, err := b.Build(context.Background(), iso)
		if err == nil {
			out.Cleanup()
		}
		first <- err
	}()

	require.Eventually(t, func() bool { return b.Stats().Running == 1 }, 10*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	_, err := b.Build(ctx, f.plan(t, "kernel-amd64", ""))
	require.ErrorContains(t, err, "wait for a build slot")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, Stats{Running: 1, Started: 1}, b.Stats(), "the caller that left started nothing")

	require.NoError(t, <-first)
	require.Len(t, logs.records("build started"), 1, "the queued build never started")
}

// TestBuildFailuresCleanUp: every failure names its step, and leaves TmpDir as it found it.
func TestBuildFailuresCleanUp(t *testing.T) {
	f := getFixture(t)
	missing := "sha256:" + strings.Repeat("0", 64)

	// Inputs on disk first, so the timeout strikes inside the imager.
	iso := f.plan(t, "metal-amd64.iso", "")
	_, err := f.store.Fetch(context.Background(), iso.Inputs, "amd64")
	require.NoError(t, err)

	tests := []struct {
		name   string
		path   string
		mutate func(r *recipe.Recipe)
		config func(c *Config)
		errHas []string
	}{
		{name: "extension digest not in the registry", path: "initramfs-amd64.xz",
			mutate: func(r *recipe.Recipe) { r.Inputs.Extensions[0].Digest = missing },
			errHas: []string{"fetch inputs: ", "extension siderolabs/hello-world-service", missing}},
		{name: "secure boot disabled", path: "metal-amd64-secureboot-uki.efi",
			config: func(c *Config) { c.SecureBoot = nil },
			errHas: []string{"secure-boot keys: secure boot is disabled"}},
		{name: "recipe planned with other keys", path: "metal-amd64-secureboot-uki.efi",
			mutate: func(r *recipe.Recipe) { r.SecureBootKeys = "feedface" },
			errHas: []string{"secure-boot keys: recipe planned with keys \"feedface\""}},
		{name: "schematic unreadable", path: "metal-amd64-uki.efi",
			mutate: func(r *recipe.Recipe) { r.Schematic = []byte("customization: [") },
			errHas: []string{"profile: "}},
		{name: "imager fails", path: "cmdline-metal-amd64",
			mutate: func(r *recipe.Recipe) { r.Asset.Platform = "no-such-platform" },
			errHas: []string{"build cmdline: "}},
		{name: "timeout", path: "metal-amd64.iso",
			config: func(c *Config) { c.Timeout = 500 * time.Millisecond },
			errHas: []string{"build iso: ", "build timeout 500ms"}},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, logs := f.newBuilder(t, tc.config)
			r := f.plan(t, tc.path, "")

			if tc.mutate != nil {
				tc.mutate(&r)
			}

			out, err := b.Build(context.Background(), r)
			require.Error(t, err)
			require.Nil(t, out)

			for _, want := range tc.errHas {
				require.ErrorContains(t, err, want)
			}

			require.NoError(t, b.Close())
			require.Empty(t, f.leftovers(t))
			require.Len(t, logs.records("build failed"), 1)
		})
	}
}

// TestCallerLeaves: a caller that stops waiting gets an error at once; the build goes on (others may want it),
// then discards its output.
func TestCallerLeaves(t *testing.T) {
	f := getFixture(t)
	b, logs := f.newBuilder(t, nil)
	r := f.plan(t, "metal-amd64.iso", "")

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)

	start := time.Now()
	_, err := b.Build(ctx, r)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "caller stopped waiting")
	require.Less(t, time.Since(start), 2*time.Second, "Build returns when its caller leaves")

	require.Eventually(t, func() bool {
		return len(logs.records("build finished after its caller left: output discarded")) == 1
	}, 2*time.Minute, 50*time.Millisecond)

	require.Len(t, logs.records("build done"), 1, "the build completed")
	require.NoError(t, b.Close())
	require.Empty(t, f.leftovers(t))
}

// TestCloseStopsBuilds: Close cancels a running build and returns once it has cleaned up.
func TestCloseStopsBuilds(t *testing.T) {
	f := getFixture(t)
	b, _ := f.newBuilder(t, nil)
	r := f.plan(t, "metal-amd64.iso", "")

	done := make(chan error, 1)

	go func() {
		_, err := b.Build(context.Background(), r)
		done <- err
	}()

	require.Eventually(t, func() bool { return b.Stats().Running == 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)

	require.NoError(t, b.Close())
	require.Error(t, <-done)
	require.Empty(t, f.leftovers(t))

	_, err := b.Build(context.Background(), r)
	require.ErrorContains(t, err, "builder closed")
}

// TestBuildLogs: the imager's progress lines reach the logger, tagged with the recipe key and request ID.
func TestBuildLogs(t *testing.T) {
	f := getFixture(t)
	b, logs := f.newBuilder(t, nil)
	r := f.plan(t, "cmdline-metal-amd64", "")

	ctx := context.WithValue(context.Background(), requestIDKey{}, "req-42")

	out, err := b.Build(ctx, r)
	require.NoError(t, err)
	out.Cleanup()

	progress := logs.records("imager")
	require.NotEmpty(t, progress, "imager progress lines in the log")

	var steps []string
	for _, rec := range progress {
		steps = append(steps, rec.attrs["step"])
	}

	require.Contains(t, strings.Join(steps, "\n"), "kernel command line: ")

	for _, rec := range logs.base().all() {
		require.Equal(t, r.Key, rec.attrs["recipe"], "record %q", rec.msg)
		require.Equal(t, "req-42", rec.attrs["request_id"], "record %q", rec.msg)
	}
}

func TestNewSetsProcessEnvironment(t *testing.T) {
	f := getFixture(t)
	f.newBuilder(t, nil)

	require.Equal(t, SourceDateEpoch, os.Getenv("SOURCE_DATE_EPOCH"))
	// TmpDir is on the default temporary directory's filesystem, so TMPDIR stays where it was.
	require.True(t, sameFilesystem(os.TempDir(), f.tmp))
	require.NotEqual(t, f.tmp, os.TempDir())

	// Several Builders (several nodes in one test process) can coexist, each with its own TmpDir.
	other, err := New(Config{TmpDir: filepath.Join(testBase, "other-node"), Inputs: f.store})
	require.NoError(t, err)
	require.NoError(t, other.Close())

	_, err = New(Config{TmpDir: f.tmp})
	require.ErrorContains(t, err, "no inputs store")
}

func TestSameFilesystem(t *testing.T) {
	dir := t.TempDir()
	require.True(t, sameFilesystem(dir, os.TempDir()))
	require.False(t, sameFilesystem(dir, "/proc"), "procfs is its own filesystem")
	require.False(t, sameFilesystem(dir, filepath.Join(dir, "missing")))
}

func (c *capture) all() []record {
	c.mu.Lock()
	defer c.mu.Unlock()

	return append([]record(nil), c.recs...)
}

// TestNewSweepsLeftovers: a Builder starting with no other live in the process removes the build directories a
// crashed process left in TmpDir. Tool scratch (grub.*, imager*, ...) is removed only when TMPDIR points at TmpDir;
// otherwise it lives in the shared temporary directory and what matches in TmpDir is not ours to remove.
func TestNewSweepsLeftovers(t *testing.T) {
	f := getFixture(t)

	for _, dir := range []string{"build-123/out", "grub.AbCdEf/boot", "imager4242", "talos-uki77", "keep-me"} {
		require.NoError(t, os.MkdirAll(filepath.Join(f.tmp, dir), 0o755))
	}

	t.Cleanup(func() {
		for _, dir := range []string{"grub.AbCdEf", "imager4242", "talos-uki77", "keep-me"} {
			os.RemoveAll(filepath.Join(f.tmp, dir)) // test scratch
		}
	})

	f.newBuilder(t, nil)

	want := []string{"grub.AbCdEf", "imager4242", "keep-me", "talos-uki77"}
	if os.Getenv("TMPDIR") == f.tmp {
		want = []string{"keep-me"}
	}

	require.Equal(t, want, f.leftovers(t))
}

// TestSweepScratch: in a TMPDIR of our own, sweep removes what the imager's tools leave behind and nothing else;
// build directories go only when asked for.
func TestSweepScratch(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"build-7", "grub.AbCdEf", "imager4242", "ext99", "talos-uki77", "talos-image-cache-gen1", "keep-me"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name, "sub"), 0o755))
	}

	sweep(dir, false, true, slog.New(slog.DiscardHandler))

	names := func() []string {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)

		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}

		return out
	}
	require.Equal(t, []string{"build-7", "keep-me"}, names())

	sweep(dir, true, false, slog.New(slog.DiscardHandler))
	require.Equal(t, []string{"keep-me"}, names())
}

func TestProgressReachesLog(t *testing.T) {
	c := &capture{t: t}
	p, err := newProgressLog(slog.New(c))
	require.NoError(t, err)

	rep, ok := newReporter(p.w)
	require.True(t, ok, "the Talos reporter's layout changed: progress would be lost")

	for _, u := range []reporter.Update{
		{Message: "profile ready:", Status: reporter.StatusSucceeded},
		{Message: "building UKI...\n\tstep one", Status: reporter.StatusRunning},
		{Message: "building UKI...\n\tstep two", Status: reporter.StatusRunning},
		{Message: "UKI ready", Status: reporter.StatusSucceeded},
	} {
		rep.Report(u)
	}

	p.close()

	var got []string
	for _, r := range c.records("imager") {
		got = append(got, r.attrs["step"]+" | "+r.attrs["detail"])
	}

	require.Equal(t, []string{
		"profile ready: | ",
		"building UKI... | ",
		"building UKI... | step one",
		"building UKI... | step two",
		"UKI ready | ",
	}, got)
}
