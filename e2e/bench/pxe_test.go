package bench

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
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
// Each CPU layout (see layout) starts its own servers: "split" runs every server on one half of the CPUs and wrk
// on the other, as when a rack of machines asks over the network; "shared" runs everything on every CPU, so the
// load generator competes with the server under test for the same cores. Under shared, "go-client" uses Go's
// HTTP client in this process and checks every body; "wrk" (only when wrk is installed) needs far less CPU per
// request, so the nginx side is less limited by the generator and the ratio is the stricter one.
func BenchmarkPXEScripts(b *testing.B) {
	skipUnlessFactory(b)

	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Log("wrk not installed (Debian package wrk): measured with Go's client only, CPUs shared")
	}

	layouts := []layout{sharedLayout}
	if split, why := splitLayout(); why != "" {
		b.Log(why)
	} else if bin != "" {
		layouts = append([]layout{split}, layouts...)
	}

	for _, l := range layouts {
		b.Run(l.name, func(b *testing.B) {
			sides, script := startPXESides(b, l)

			if bin != "" {
				load := func(url string, _ []byte, conns int, d time.Duration) (loadResult, error) {
					return wrk(bin, launcher(l.load), cpuCount(l.load), url, conns, d)
				}
				b.Run("wrk", func(b *testing.B) { measureLoad(b, sides, script, load) })
			}

			if l.load == nil { // Go's client runs in this process, on every CPU
				b.Run("go-client", func(b *testing.B) { measureLoad(b, sides, script, hammer) })
			}
		})
	}
}

// startPXESides starts the factory, nginx and the bare server on the layout's server CPUs and returns the URL of
// the same script on each, and the script.
func startPXESides(b *testing.B, l layout) ([]side, []byte) {
	b.Helper()

	f := startFactoryUnder(b, launcher(l.server))
	ng := startNginx(b, l.server)

	path := "/pxe/" + f.schematic + "/" + version + "/metal-amd64"
	script := f.get(b, path) // the first request builds the kernel command line
	sides := []side{{"ours", f.URL + path}}

	if ng != nil {
		sides = append(sides, side{"nginx", ng.serveBytes(b, path, script)})
	}

	sides = append(sides, side{"nethttp", bareServer(b, script, l.server)})

	for _, s := range sides { // wrk checks no bodies: check one answer of each here
		require.NoError(b, getExact(f.client, s.url, script, make([]byte, len(script)+1)), s.name)
	}

	return sides, script
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

// Environment of the test binary run as the bare server (see TestMain).
const (
	bareListenEnv = "EDGEFACTORY_BENCH_BARE_LISTEN"
	bareBodyEnv   = "EDGEFACTORY_BENCH_BARE_BODY"
)

// bareServer serves body at every path from a plain net/http server, no router and no middleware, in a process of
// its own on cpus (this test binary again: TestMain turns it into serveBare). It is the floor for any Go server on
// this machine (same runtime scheduler, same HTTP stack), reported next to nginx so a gap can be told apart from
// the cost of Go's net/http itself.
func bareServer(b *testing.B, body []byte, cpus []int) string {
	b.Helper()

	file := filepath.Join(b.TempDir(), "body")
	require.NoError(b, os.WriteFile(file, body, 0o644))

	addr := e2e.FreeAddr(b)
	url := "http://" + addr + "/pxe"
	argv := append(launcher(cpus), os.Args[0], "-test.run=^$", "-test.bench=^$")
	startServer(b, "bare net/http server", argv, []string{bareListenEnv + "=" + addr, bareBodyEnv + "=" + file}, url)

	return url
}

// serveBare is the bare server's whole program: serve the file at bodyFile on addr until killed.
func serveBare(addr, bodyFile string) error {
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return err
	}

	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(body) //nolint:errcheck // the load generator hung up
		})}

	return srv.ListenAndServe()
}

// BenchmarkPXEDuringBuild loads the PXE script as BenchmarkPXEScripts does (split layout, wrk) while the same node
// builds a fresh ISO, with the builds at niceness 0 (the node's own priority) and 10 (the default): the script
// requests/s and p99 during the build, the same idle, and how long the build took under that load. On a node with
// few cores a build at the node's priority takes the CPU the answers to booting machines need.
func BenchmarkPXEDuringBuild(b *testing.B) {
	skipUnlessFactory(b)

	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk not installed (Debian package wrk)")
	}

	l, why := splitLayout()
	if why != "" {
		b.Skip(why)
	}

	for _, nice := range []int{0, 10} {
		b.Run(fmt.Sprintf("nice-%d", nice), func(b *testing.B) {
			f := startFactoryUnder(b, launcher(l.server), "--build-nice", strconv.Itoa(nice))
			path := "/pxe/" + f.schematic + "/" + version + "/metal-amd64"
			url := f.URL + path
			script := f.get(b, path)
			load := func(d time.Duration) loadResult {
				r, err := wrk(bin, launcher(l.load), cpuCount(l.load), url, pxeConns, d)
				require.NoError(b, err)

				return r
			}

			load(pxeWarmup)
			idle := load(3 * time.Second)

			var (
				busy  loadResult
				build time.Duration
				round int
			)

			for b.Loop() {
				round++
				id := f.CreateSchematic(b, fmt.Sprintf("customization: {extraKernelArgs: [pxe-during-build=%d-%d]}\n",
					nice, round))
				built := make(chan error, 1)
				start := time.Now()

				go func() {
					built <- download(f.client, f.URL+"/image/"+id+"/"+version+"/metal-amd64.iso", -1, make([]byte, 256<<10))
				}()

				time.Sleep(500 * time.Millisecond) // inputs found, the imager started
				r := load(3 * time.Second)
				require.NoError(b, <-built)
				build += time.Since(start)

				busy.requests += r.requests
				busy.elapsed += r.elapsed
				busy.p99 = max(busy.p99, r.p99)
			}

			require.NoError(b, getExact(f.client, url, script, make([]byte, len(script)+1)))
			b.ReportMetric(float64(idle.requests)/idle.elapsed.Seconds(), "idle-req/s")
			b.ReportMetric(idle.p99, "idle-p99-ms")
			b.ReportMetric(float64(busy.requests)/busy.elapsed.Seconds(), "building-req/s")
			b.ReportMetric(busy.p99, "building-p99-ms")
			b.ReportMetric(build.Seconds()/float64(round), "build-s")
		})
	}
}
