package node_test

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/bundle"
	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/node"
)

// BenchmarkImport measures `edgefactory import` into a fresh three-member cluster (the cluster its own upstream):
// the synthetic release of one version (its many small blobs: the per-blob cost), and the same with an extra image of
// one 256 MiB layer (the bytes' cost), against copying the same bundle on the same disk with an fsync at the end (a
// bundle carried in lands on disk durably). Every byte imported is verified on arrival and stored on two holders.
// Reported: import-MB/s, copy-MB/s and their ratio for each. The target: import ≥ 0.5 × copy.
func BenchmarkImport(b *testing.B) {
	reg := realUpstream(b)

	large := pushLargeImage(b, reg, 256<<20)

	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"release", nil},
		{"release+256MiB-layer", []string{large}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			tarball := filepath.Join(dir, "bundle.tar")

			_, err := bundle.Mirror(b.Context(), bundle.Options{From: reg, Versions: "v1.13.0",
				Extensions: []string{"all"}, Overlays: []string{"all"}, Talosctl: true, ExtraImages: tc.extra,
				To: tarball})
			require.NoError(b, err)

			st, err := os.Stat(tarball)
			require.NoError(b, err)

			var importTime, importCPU, copyTime, floorTime time.Duration

			for b.Loop() {
				b.StopTimer()

				c := startClusterOf(b, &cluster{reg: node.ClusterUpstream, dir: b.TempDir(), expect: 3,
					noCatalog: true}, func(_ int, cfg *node.Config) {
					cfg.InputVerifyOff = true // the extra image is unsigned; signatures are checked by the tests
				})

				bun, err := bundle.Open(tarball)
				require.NoError(b, err)

				b.StartTimer()

				cpu0 := cpuTime(b)
				start := time.Now()
				_, err = bundle.Import(b.Context(), bun, &imports.Client{Base: c.live()[0].base, Secret: clusterSecret},
					bundle.ImportOptions{})
				importTime += time.Since(start)
				importCPU += cpuTime(b) - cpu0

				b.StopTimer()
				require.NoError(b, err)
				bun.Close()
				c.killAll()

				copyTime += copyFile(b, tarball, filepath.Join(dir, "copy.tar"), false)

				for range 2 { // a blob reaches its second holder once the first has verified it
					floorTime += copyFile(b, tarball, filepath.Join(dir, "copy.tar"), true)
				}

				b.StartTimer()
			}

			mb := float64(st.Size()) / 1e6 * float64(b.N)
			b.ReportMetric(mb/importTime.Seconds(), "import-MB/s")
			b.ReportMetric(mb/copyTime.Seconds(), "copy-MB/s")
			b.ReportMetric(copyTime.Seconds()/importTime.Seconds(), "import/copy")
			// The CPU the whole process (three members and the client) spent per wall second of import: near the
			// machine's core count, the import is bound by CPU the members would not share on their own hosts.
			b.ReportMetric(importCPU.Seconds()/importTime.Seconds(), "cpu-cores-busy")
			// The least an import does, in plain Go with no network: hash and store the bytes on two holders, one
			// after the other (a blob reaches its second holder once the first has verified it).
			b.ReportMetric(copyTime.Seconds()/floorTime.Seconds(), "floor/copy")
			b.ReportMetric(floorTime.Seconds()/importTime.Seconds(), "import/floor")
		})
	}
}

// pushLargeImage pushes an image of one layer of size random bytes to the registry and returns its reference.
func pushLargeImage(b *testing.B, reg string, size int64) string {
	b.Helper()

	data := make([]byte, size)
	_, err := io.ReadFull(rand.Reader, data)
	require.NoError(b, err)

	base, err := random.Image(0, 0)
	require.NoError(b, err)

	img, err := mutate.AppendLayers(base, static.NewLayer(data, types.OCIUncompressedLayer))
	require.NoError(b, err)

	ref := fmt.Sprintf("%s/benchmark/large:v1", reg)
	r, err := name.ParseReference(ref, name.Insecure)
	require.NoError(b, err)
	require.NoError(b, remote.Write(r, img))

	return ref
}

// copyFile copies src to dst and fsyncs it, hashing every byte on the way when hashed: what carrying a bundle onto
// a disk costs, and (hashed) what storing it verified on one holder costs at the least.
func copyFile(b *testing.B, src, dst string, hashed bool) time.Duration {
	b.Helper()

	start := time.Now()

	in, err := os.Open(src)
	require.NoError(b, err)

	defer in.Close()

	out, err := os.Create(dst)
	require.NoError(b, err)

	var w io.Writer = out
	if hashed {
		w = io.MultiWriter(out, sha256.New())
	}

	_, err = io.Copy(w, in)
	require.NoError(b, err)
	require.NoError(b, out.Sync())
	require.NoError(b, out.Close())

	took := time.Since(start)
	require.NoError(b, os.Remove(dst))

	return took
}

// BenchmarkWarmedFirstDownload measures a machine's first download of an ISO that `edgefactory warm` prepared (read
// once through every member, which keeps a verified copy each) against a download of a cached one, through a member
// other than the ISO's owner. The target: warmed first ≥ 0.95 × cached.
func BenchmarkWarmedFirstDownload(b *testing.B) {
	c := startCluster(b, realUpstream(b), 3)

	var warmed, cached []time.Duration // one download each per round; medians reported (a single one varies 2×)

	for round := 0; b.Loop(); round++ {
		b.StopTimer()

		id := c.live()[0].createSchematic(b, fmt.Sprintf(`customization: {extraKernelArgs: [warm=%d]}`, round))
		path := "/image/" + id + "/v1.13.0/metal-amd64.iso"

		for _, m := range c.live() { // what warm does
			require.True(b, fetchWith(stormClient, m.base+path, false).complete())
		}

		key, _ := c.recipeKey(b, c.live()[0], id, "v1.13.0", "metal-amd64.iso")
		asker := c.other(b, c.live()[0].Owner(key))

		// A site warms hours before the first boot: the copies written are on disk and the members idle, not
		// flushing the 45 MB each just wrote while the download is timed.
		syscall.Sync()
		time.Sleep(200 * time.Millisecond)

		b.StartTimer()

		first := fetchWith(stormClient, asker.base+path, false)
		second := fetchWith(stormClient, asker.base+path, false)

		b.StopTimer()
		require.True(b, first.complete() && second.complete())

		warmed = append(warmed, first.elapsed)
		cached = append(cached, second.elapsed)

		b.StartTimer()
	}

	w, cd := median(warmed), median(cached)
	b.ReportMetric(w.Seconds(), "warmed-first-s")
	b.ReportMetric(cd.Seconds(), "cached-s")
	b.ReportMetric(cd.Seconds()/w.Seconds(), "warmed/cached-speed")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()

	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))

	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median is the middle of durations.
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)

	return s[len(s)/2]
}
