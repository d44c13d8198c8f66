package bench

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	// pxeConns is how many machines ask for their iPXE script at once, each on its own keep-alive connection.
	pxeConns = 32
	// pxeWarmup opens the connections and lets both servers settle before counting.
	pxeWarmup = time.Second
)

// pxeDuration is how long each server is loaded per iteration: 5 s, or EDGEFACTORY_BENCH_PXE_DURATION.
func pxeDuration(b *testing.B) time.Duration {
	s := os.Getenv("EDGEFACTORY_BENCH_PXE_DURATION")
	if s == "" {
		return 5 * time.Second
	}

	d, err := time.ParseDuration(s)
	require.NoError(b, err, "EDGEFACTORY_BENCH_PXE_DURATION")

	return d
}

// loadGenerator loads url with conns keep-alive connections for d; want is the body every answer must have.
type loadGenerator func(url string, want []byte, conns int, d time.Duration) (loadResult, error)

// BenchmarkPXEScripts loads GET /pxe/<schematic>/v1.13.0/metal-amd64 with 32 concurrent keep-alive connections
// for a fixed time, and nginx serving the same bytes as a static file the same way. Reported: requests/s of each
// and ours/nginx (target ≥ 0.5), p50 and p99 latency in ms (target p99 < 5 ms). A bare net/http server with the
// same bytes ("nethttp") is measured too, as the floor of Go's HTTP stack on this machine.
//
// The load generator runs on the same CPUs as the server under test (the same for both sides). Sub-benchmark
// "go-client" uses Go's HTTP client in this process and checks every body; "wrk" (only when wrk is installed)
// uses wrk, which needs far less CPU per request, so the nginx side is less limited by the generator and the
// ratio is the stricter one.
func BenchmarkPXEScripts(b *testing.B) {
	f := startFactory(b)
	ng := startNginx(b)

	path := "/pxe/" + f.schematic + "/" + version + "/metal-amd64"
	script := f.get(b, path) // the first request builds the kernel command line
	sides := []side{{"ours", f.URL + path}}

	if ng != nil {
		sides = append(sides, side{"nginx", ng.serveBytes(b, path, script)})
	}

	sides = append(sides, side{"nethttp", bareServer(b, script)})

	for _, s := range sides { // wrk checks no bodies: check one answer of each here
		require.NoError(b, getExact(f.client, s.url, script, make([]byte, len(script)+1)), s.name)
	}

	b.Run("go-client", func(b *testing.B) { measureLoad(b, sides, script, hammer) })

	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Log("wrk not installed (Debian package wrk): measured with Go's client only")

		return
	}

	b.Run("wrk", func(b *testing.B) {
		measureLoad(b, sides, script, func(url string, _ []byte, conns int, d time.Duration) (loadResult, error) {
			return wrk(bin, url, conns, d)
		})
	})
}

func measureLoad(b *testing.B, sides []side, script []byte, load loadGenerator) {
	d := pxeDuration(b)
	requests := make([]int, len(sides))
	elapsed := make([]time.Duration, len(sides))
	p50 := make([]float64, len(sides))
	p99 := make([]float64, len(sides))
	rounds := 0

	for b.Loop() {
		for i := range sides {
			s := (i + rounds) % len(sides)

			_, err := load(sides[s].url, script, pxeConns, pxeWarmup)
			require.NoError(b, err, "%s warm-up", sides[s].name)

			r, err := load(sides[s].url, script, pxeConns, d)
			require.NoError(b, err, sides[s].name)

			requests[s] += r.requests
			elapsed[s] += r.elapsed
			// The worst round's percentiles: a slow round must not hide behind a fast one.
			p50[s] = max(p50[s], r.p50)
			p99[s] = max(p99[s], r.p99)
		}

		rounds++
	}

	rate := make([]float64, len(sides))

	for i, s := range sides {
		rate[i] = float64(requests[i]) / elapsed[i].Seconds()
		b.ReportMetric(rate[i], s.name+"-req/s")
		b.ReportMetric(p50[i], s.name+"-p50-ms")
		b.ReportMetric(p99[i], s.name+"-p99-ms")
	}

	for i, s := range sides[1:] {
		b.ReportMetric(rate[0]/rate[i+1], sides[0].name+"/"+s.name)
	}
}

// bareServer serves body at every path from a plain net/http server in this process: no router, no middleware.
// It is the floor for any Go server on this machine (same runtime scheduler, same HTTP stack), reported next to
// nginx so a gap can be told apart from the cost of Go's net/http itself.
func bareServer(b *testing.B, body []byte) string {
	b.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)

	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(body) //nolint:errcheck // the load generator hung up
		})}

	go srv.Serve(l) //nolint:errcheck // ends with Close

	b.Cleanup(func() { srv.Close() })

	return "http://" + l.Addr().String() + "/pxe"
}
