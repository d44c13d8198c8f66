package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// side is one server under measurement: the factory ("ours") or the baseline ("nginx").
type side struct {
	name, url string
}

// sinkOnly hides io.Discard's ReadFrom, whose 8 KiB reads would make the client, not the server, the bottleneck:
// io.CopyBuffer then reads the body in large chunks.
type sinkOnly struct{}

func (sinkOnly) Write(p []byte) (int, error) { return len(p), nil }

// download fetches url in full and throws the body away; anything but 200 with size bytes (any number when size is
// negative) is an error.
func download(client *http.Client, url string, size int64, buf []byte) error {
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()

	n, err := io.CopyBuffer(sinkOnly{}, resp.Body, buf)

	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	case err != nil:
		return fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	case size >= 0 && n != size:
		return fmt.Errorf("GET %s: %d bytes, want %d", url, n, size)
	}

	return nil
}

// downloadAll runs n full downloads of url at once and returns how long they took together.
func downloadAll(client *http.Client, url string, size int64, n int) (time.Duration, error) {
	errs := make([]error, n)
	start := time.Now()

	var wg sync.WaitGroup

	for i := range n {
		wg.Go(func() { errs[i] = download(client, url, size, make([]byte, 256<<10)) })
	}

	wg.Wait()

	return time.Since(start), errors.Join(errs...)
}

// loadResult is what a fixed-duration load run saw.
type loadResult struct {
	requests int
	elapsed  time.Duration
	p50, p99 float64 // latency, ms
}

// hammer sends GET url from conns goroutines, each on its own keep-alive connection, for d, and checks every
// answer is 200 with body want.
func hammer(url string, want []byte, conns int, d time.Duration) (loadResult, error) {
	client := newClient(conns)
	defer client.CloseIdleConnections()

	lats := make([][]time.Duration, conns)
	errs := make([]error, conns)
	start := time.Now()
	deadline := start.Add(d)

	var wg sync.WaitGroup

	for i := range conns {
		wg.Go(func() {
			buf := make([]byte, len(want)+1)
			lat := make([]time.Duration, 0, 1<<16)

			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}

				if err := getExact(client, url, want, buf); err != nil {
					errs[i] = err

					break
				}

				lat = append(lat, time.Since(t0))
			}

			lats[i] = lat
		})
	}

	wg.Wait()

	all := slices.Concat(lats...)
	slices.Sort(all)

	return loadResult{requests: len(all), elapsed: time.Since(start), p50: quantile(all, 0.50),
		p99: quantile(all, 0.99)}, errors.Join(errs...)
}

// quantile returns the q-quantile of sorted in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}

	return float64(sorted[int(q*float64(len(sorted)-1))].Nanoseconds()) / 1e6
}

// getExact fetches url and checks the answer is 200 with body want (buf holds at least len(want)+1 bytes).
func getExact(client *http.Client, url string, want, buf []byte) error {
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()

	n, err := io.ReadFull(resp.Body, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("GET %s: %w", url, err)
	}

	if resp.StatusCode != http.StatusOK || !bytes.Equal(buf[:n], want) {
		return fmt.Errorf("GET %s: status %d, body %q", url, resp.StatusCode, buf[:n])
	}

	return nil
}

// rss returns the resident memory of process pid in bytes (VmRSS of /proc/<pid>/status).
func rss(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read resident memory: %w", err)
	}
	defer f.Close()

	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}

			return kb << 10, nil
		}
	}

	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// peakRSS samples the resident memory of pid every interval until stop is closed, and returns the highest sample.
func peakRSS(pid int, interval time.Duration, stop <-chan struct{}) (peak int64, samples int, err error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()

	for {
		v, err := rss(pid)
		if err != nil {
			return peak, samples, err
		}

		peak = max(peak, v)
		samples++

		select {
		case <-stop:
			return peak, samples, nil
		case <-tick.C:
		}
	}
}
