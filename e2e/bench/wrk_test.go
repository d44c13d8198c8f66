package bench

import (
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// wrk runs the wrk load generator (C, one event loop per thread: it takes far less CPU per request than Go's
// client, so on a small machine it leaves more to the server under test) with one thread per CPU it has, started
// by launcher, against url with conns connections for d (whole seconds, at least one). wrk does not check bodies;
// callers check one answer themselves.
func wrk(bin string, launcher []string, cpus int, url string, conns int, d time.Duration) (loadResult, error) {
	threads := min(cpus, conns)
	secs := max(1, int(d.Round(time.Second).Seconds()))
	argv := append(slices.Clone(launcher), bin, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", url)

	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}

	r, err := parseWrk(string(out))
	if err != nil {
		return r, fmt.Errorf("wrk output: %w\n%s", err, out)
	}

	return r, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)\b`)
	wrkLatency = regexp.MustCompile(`(?m)^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads the totals and the 50% and 99% lines of `wrk --latency` output. Any non-2xx answer or socket
// error is an error: a server that fails fast must not look fast.
func parseWrk(out string) (loadResult, error) {
	var r loadResult

	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		return r, fmt.Errorf("%s answers were not 2xx or 3xx", m[1])
	}

	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		return r, fmt.Errorf("socket errors: %s", m[0])
	}

	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request total")
	}

	r.requests, _ = strconv.Atoi(m[1]) // the pattern admits digits only
	r.elapsed = time.Duration(wrkNumber(m[2], m[3]) * float64(time.Millisecond))

	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		ms := wrkNumber(m[2], m[3])
		if m[1] == "50" {
			r.p50 = ms
		} else {
			r.p99 = ms
		}
	}

	if r.requests == 0 || r.elapsed <= 0 || r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("incomplete: %+v", r)
	}

	return r, nil
}

// wrkNumber converts one of wrk's numbers with its unit to milliseconds.
func wrkNumber(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64) // the pattern admits a decimal only

	switch unit {
	case "us":
		return f / 1e3
	case "s":
		return f * 1e3
	case "m":
		return f * 60e3
	default:
		return f
	}
}
