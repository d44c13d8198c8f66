package imager

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	talosimager "github.com/siderolabs/talos/pkg/imager"
	"github.com/siderolabs/talos/pkg/reporter"
	"github.com/stretchr/testify/require"
)

// BenchmarkColdBuild compares a cold ISO build through the Builder (slot, inputs found on disk, schematic
// extension, profile, imager, logging) with the Talos imager called directly on the same profile, inputs already
// on disk. Target: overhead ≤ 5%. Each iteration runs both, alternating which goes first.
func BenchmarkColdBuild(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()

	builder, _ := f.newBuilder(b, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) // formatting cost included, as in production
	})

	r := f.plan(b, "metal-amd64.iso", "")

	paths, err := f.store.Fetch(ctx, r.Inputs, r.Asset.Arch)
	require.NoError(b, err)

	scratch, err := os.MkdirTemp(f.tmp, "bench-")
	require.NoError(b, err)

	b.Cleanup(func() { os.RemoveAll(scratch) }) // test scratch

	paths.SchematicExtension, err = writeSchematicExtension(r, scratch)
	require.NoError(b, err)

	prof, err := r.Profile(paths)
	require.NoError(b, err)

	viaBuilder := func() {
		out, err := builder.Build(ctx, r)
		require.NoError(b, err)
		out.Cleanup()
	}

	direct := func() {
		outDir := filepath.Join(scratch, "out")
		require.NoError(b, os.MkdirAll(outDir, 0o755))

		img, err := talosimager.New(prof)
		require.NoError(b, err)

		_, err = img.Execute(ctx, outDir, &reporter.Reporter{}) // a zero Reporter discards progress
		require.NoError(b, err)
		require.NoError(b, os.RemoveAll(outDir))
	}

	var tBuilder, tDirect time.Duration

	timed := func(fn func(), total *time.Duration) {
		start := time.Now()

		fn()

		*total += time.Since(start)
	}

	n := 0

	for b.Loop() {
		if n%2 == 0 {
			timed(viaBuilder, &tBuilder)
			timed(direct, &tDirect)
		} else {
			timed(direct, &tDirect)
			timed(viaBuilder, &tBuilder)
		}

		n++
	}

	builderS := tBuilder.Seconds() / float64(n)
	directS := tDirect.Seconds() / float64(n)

	b.ReportMetric(builderS, "builder-s/op")
	b.ReportMetric(directS, "direct-s/op")
	b.ReportMetric((builderS/directS-1)*100, "overhead-%")
}
