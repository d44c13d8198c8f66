package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	// memDownloads is how many full downloads of the raw image run at once.
	memDownloads = 10
	// memInterval is how often resident memory is sampled.
	memInterval = 100 * time.Millisecond
)

// BenchmarkParallelDownloadsMemory reads the factory's resident memory (VmRSS) every 100 ms while it serves 10
// parallel full downloads of the 4.4 GB raw disk image. Reported: RSS before (MiB), peak during (MiB), growth
// (target < 64 MiB: the server streams from the stored file and never buffers an asset) and the total MB/s. The
// worst iteration's memory is reported.
func BenchmarkParallelDownloadsMemory(b *testing.B) {
	f := startFactory(b)
	a := f.warm(b, "metal-amd64.raw")

	var (
		base, peak, growth int64
		total              time.Duration
		rounds, samples    int
	)

	for b.Loop() {
		before, err := rss(f.PID)
		require.NoError(b, err)

		stop := make(chan struct{})
		sampled := make(chan error, 1)

		var (
			top int64
			n   int
		)

		go func() {
			var err error
			top, n, err = peakRSS(f.PID, memInterval, stop)
			sampled <- err
		}()

		d, err := downloadAll(f.client, a.url, a.size, memDownloads)
		close(stop)
		require.NoError(b, err)
		require.NoError(b, <-sampled)

		if top-before >= growth || rounds == 0 {
			base, peak, growth = before, top, top-before
		}

		total += d
		samples += n
		rounds++
	}

	const mib = 1 << 20

	b.ReportMetric(float64(base)/mib, "rss-before-MiB")
	b.ReportMetric(float64(peak)/mib, "rss-peak-MiB")
	b.ReportMetric(float64(growth)/mib, "rss-growth-MiB")
	b.ReportMetric(float64(samples)/float64(rounds), "rss-samples")
	b.ReportMetric(float64(a.size)*memDownloads*float64(rounds)/total.Seconds()/1e6, "MB/s")
}
