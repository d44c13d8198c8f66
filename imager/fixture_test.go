package imager

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/imager/inputs"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

const testVersion = "v1.13.0"

// testBase holds everything the tests write (inputs, TmpDir, host tool links). It is made before any Builder
// points TMPDIR elsewhere.
var testBase string

// TestMain makes the test binary the host-tool adapter (the imager runs mkfs.xfs & co through links to it) and the
// builders' imager worker, and points the mksquashfs adapter at squashfs-tools 4.6 from `make deps`.
func TestMain(m *testing.M) {
	hosttools.RunIfAdapter()
	RunIfWorker()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error

	if testBase, err = os.MkdirTemp("", "edgefactory-imager-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)

		return 1
	}

	defer os.RemoveAll(testBase) // test scratch

	tools := filepath.Join(testBase, "tools")
	if err := hosttools.Install(tools); err != nil {
		fmt.Fprintln(os.Stderr, err)

		return 1
	}

	if err := hosttools.PrependPath(tools); err != nil {
		fmt.Fprintln(os.Stderr, err)

		return 1
	}

	if os.Getenv(hosttools.MksquashfsEnv) == "" {
		p, _ := filepath.Abs(filepath.Join("..", "build", "hosttools", "squashfs-tools", "usr", "bin", "mksquashfs"))
		if _, err := os.Stat(p); err == nil {
			os.Setenv(hosttools.MksquashfsEnv, p) // checked by the builds
		}
	}

	code := m.Run()

	if fx.f != nil {
		fx.f.reg.Close() // test registry
	}

	return code
}

// fixture is what every build test shares: the synthetic release in an in-process registry, one inputs store,
// the release catalog, secure-boot keys and the TmpDir of every Builder.
type fixture struct {
	reg     *synthetic.Server
	parts   *synthetic.Parts
	store   *inputs.Store
	catalog release.Version
	keys    *signing.SecureBootKeys
	tmp     string
}

var fx struct {
	once sync.Once
	f    *fixture
	skip string
	err  error
}

// getFixture returns the shared fixture or skips the test: under -short, without the real release parts, or with
// a required host tool missing.
func getFixture(t testing.TB) *fixture {
	t.Helper()

	if testing.Short() {
		t.Skip("runs the Talos imager (10-60 s per image on 2 cores): skipped under -short")
	}

	fx.once.Do(func() { fx.f, fx.skip, fx.err = setup() })

	if fx.skip != "" {
		t.Skip(fx.skip)
	}

	require.NoError(t, fx.err)

	return fx.f
}

func setup() (*fixture, string, error) {
	ctx := context.Background()

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	if err != nil {
		return nil, "", err
	}

	if !parts.Real() {
		return nil, fmt.Sprintf("synthetic release parts missing in %s (%v): run `make deps`", parts.Dir(), parts.Missing()), nil
	}

	if missing := hosttools.Check(ctx).MissingRequired(); len(missing) > 0 {
		var names []string
		for _, m := range missing {
			names = append(names, m.Name+" ("+m.Package+")")
		}

		return nil, "host tools the imager needs are missing: " + strings.Join(names, ", ") + ": run `make deps`", nil
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}

	reg, err := synthetic.Start(ctx, ln, synthetic.Options{Parts: parts, Versions: []string{testVersion}})
	if err != nil {
		return nil, "", err
	}

	f := &fixture{reg: reg, parts: parts, tmp: filepath.Join(testBase, "tmp")}
	src := release.Source{Registry: reg.Addr, Insecure: true}

	if f.store, err = inputs.Open(filepath.Join(testBase, "inputs"), src, nil); err != nil {
		return nil, "", err
	}

	if f.catalog, err = src.ReadVersion(ctx, testVersion); err != nil {
		return nil, "", err
	}

	if f.keys, err = signing.Generate(signing.Options{SigningBits: 2048, CommonName: "edgefactory imager test"}); err != nil {
		return nil, "", err
	}

	return f, "", nil
}

// testSchematic has an extension and kernel arguments, so every output kind shows the schematic's effect.
const testSchematic = `customization:
  extraKernelArgs:
    - console=ttyS0
    - edgefactory.test=1
  systemExtensions:
    officialExtensions:
      - siderolabs/hello-world-service
`

// plan plans path for schematic (testSchematic when "") against the synthetic catalog.
func (f *fixture) plan(t testing.TB, path, yaml string) recipe.Recipe {
	t.Helper()

	if yaml == "" {
		yaml = testSchematic
	}

	a, err := recipe.ParsePath(path)
	require.NoError(t, err)

	s, canonical, id, err := schematic.Normalize([]byte(yaml))
	require.NoError(t, err)

	r, err := recipe.Plan(a, id, canonical, s, f.catalog, recipe.PlanOptions{
		SecureBootKeys: f.keys.Fingerprint(),
		Author:         "edgefactory test",
		Builder:        "edgefactory test",
	})
	require.NoError(t, err)

	return r
}

// newBuilder makes a Builder on the fixture, logging into a capture (and the test log with -v), closed when the
// test ends.
func (f *fixture) newBuilder(t testing.TB, mutate func(*Config)) (*Builder, *capture) {
	t.Helper()

	c := &capture{t: t}
	cfg := Config{
		TmpDir:     f.tmp,
		Inputs:     f.store,
		SecureBoot: func() *signing.SecureBootKeys { return f.keys },
		Logger:     slog.New(c),
		RequestID:  func(ctx context.Context) string { id, _ := ctx.Value(requestIDKey{}).(string); return id },
	}

	if mutate != nil {
		mutate(&cfg)
	}

	b, err := New(cfg)
	require.NoError(t, err)

	t.Cleanup(func() { require.NoError(t, b.Close()) })

	return b, c
}

type requestIDKey struct{}

// leftovers lists what is in TmpDir besides the test framework's own temporary directories.
func (f *fixture) leftovers(t testing.TB) []string {
	t.Helper()

	entries, err := os.ReadDir(f.tmp)
	require.NoError(t, err)

	var out []string

	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "Test") && !strings.HasPrefix(e.Name(), "Benchmark") {
			out = append(out, e.Name())
		}
	}

	return out
}

// capture is a slog handler keeping every record (and echoing it to the test log with -v).
type capture struct {
	t     testing.TB
	mu    sync.Mutex
	recs  []record
	attrs []slog.Attr
	root  *capture
}

type record struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

func (c *capture) base() *capture {
	if c.root != nil {
		return c.root
	}

	return c
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	rec := record{time: r.Time, level: r.Level, msg: r.Message, attrs: map[string]string{}}

	for _, a := range c.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}

	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()

		return true
	})

	b := c.base()
	b.mu.Lock()
	b.recs = append(b.recs, rec)
	b.mu.Unlock()

	if testing.Verbose() {
		b.t.Logf("%s %s %v", r.Level, r.Message, rec.attrs)
	}

	return nil
}

func (c *capture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &capture{t: c.t, attrs: append(append([]slog.Attr{}, c.attrs...), attrs...), root: c.base()}
}

func (c *capture) WithGroup(string) slog.Handler { return c }

// records returns the records with message msg.
func (c *capture) records(msg string) []record {
	b := c.base()
	b.mu.Lock()
	defer b.mu.Unlock()

	var out []record

	for _, r := range b.recs {
		if r.msg == msg {
			out = append(out, r)
		}
	}

	return out
}
