package inputs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/go-containerregistry/pkg/name"
)

// A pull reads from the registry in bursts (manifests, then each blob) and in between writes to disk, so silence
// alone is no sign of trouble: a pull is stalled only when something waits on the registry (a request for its
// response, a body for its next bytes) and nothing has come for stallTimeout. Variables so tests can shorten them.
var (
	// progressInterval is how often a running pull logs how far it is.
	progressInterval = 5 * time.Second
	// stallTimeout is how long a pull waits on a silent registry before it is abandoned. PullTimeout still bounds
	// the whole pull, however steadily the bytes come.
	stallTimeout = 60 * time.Second
)

// StallError is a pull abandoned because the registry sent nothing for Idle while the pull was waiting on it.
type StallError struct {
	Registry string        // the upstream, "ghcr.io"
	Idle     time.Duration // how long nothing came
	Received int64         // bytes received by the pull until then
	Total    int64         // bytes the pull was to receive; 0 before the manifests arrived
}

func (e *StallError) Error() string {
	return fmt.Sprintf("no bytes from the registry %s for %s (received %s)", e.Registry, seconds(e.Idle),
		amount(e.Received, e.Total))
}

// transfer counts the bytes one pull receives from the registry and how long the registry has been silent.
type transfer struct {
	start time.Time

	mu        sync.Mutex
	received  int64
	total     int64     // 0 until the pull knows its blobs
	waiting   int       // calls blocked on the registry now
	quietFrom time.Time // when waiting began or the registry last answered, whichever is later
}

func newTransfer() *transfer { return &transfer{start: time.Now()} }

// expect records that the pull is still to receive n bytes (the blobs its manifests list).
func (t *transfer) expect(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.total = t.received + n
}

// wait marks the start of a call that blocks on the registry; done ends it, with the n bytes it received and
// whether the registry answered at all (a response header is an answer without body bytes).
func (t *transfer) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.waiting == 0 {
		t.quietFrom = time.Now()
	}

	t.waiting++
}

func (t *transfer) done(n int64, answered bool) {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.waiting--
	t.received += n

	if answered {
		t.quietFrom = time.Now()
	}
}

// state is the bytes received so far, the expected total, and how long the pull has been waiting on a silent
// registry (0 when it waits on nothing).
func (t *transfer) state(now time.Time) (received, total int64, quiet time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.waiting > 0 {
		quiet = now.Sub(t.quietFrom)
	}

	return t.received, t.total, quiet
}

// roundTripper counts, under go-containerregistry's auth and retries, every response and body byte of the pull.
func (t *transfer) roundTripper(next http.RoundTripper) http.RoundTripper {
	return countingTransport{next: next, t: t}
}

type countingTransport struct {
	next http.RoundTripper
	t    *transfer
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.t.wait()

	resp, err := c.next.RoundTrip(req)

	c.t.done(0, err == nil)

	if err != nil {
		return nil, err
	}

	resp.Body = &countingBody{ReadCloser: resp.Body, t: c.t}

	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	t *transfer
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.t.wait()

	n, err := b.ReadCloser.Read(p)

	b.t.done(int64(n), n > 0)

	return n, err
}

// watched runs pull with a fresh transfer, logging its progress every progressInterval, and abandons it with a
// *StallError when the registry stays silent for stallTimeout while the pull waits on it.
func (s *Store) watched(ctx context.Context, what string, ref name.Digest,
	pull func(context.Context, *transfer) (int64, error)) (int64, error) {
	t := newTransfer()
	ctx, abandon := context.WithCancelCause(ctx)

	var wg sync.WaitGroup

	wg.Go(func() { s.watch(ctx, abandon, t, what, ref) })

	n, err := pull(ctx, t)

	abandon(nil) // ends the watch; a stall found before keeps its cause
	wg.Wait()

	var stall *StallError
	if err != nil && errors.As(context.Cause(ctx), &stall) {
		return n, stall // what the pull saw (a canceled read) only follows from it
	}

	return n, err
}

func (s *Store) watch(ctx context.Context, abandon context.CancelCauseFunc, t *transfer, what string, ref name.Digest) {
	interval, limit := progressInterval, stallTimeout

	tick := time.NewTicker(min(interval, limit/4))
	defer tick.Stop()

	lastLog, lastReceived := t.start, int64(0)

	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			received, total, quiet := t.state(now)

			if quiet >= limit {
				abandon(&StallError{Registry: ref.RegistryStr(), Idle: quiet, Received: received, Total: total})

				return
			}

			if now.Sub(lastLog) < interval {
				continue
			}

			rate := float64(received-lastReceived) / now.Sub(lastLog).Seconds()
			attrs := []any{"input", what, "ref", ref.String(), "received", received, "total", total,
				"progress", amount(received, total) + percent(received, total), "rate", humanize.IBytes(uint64(rate)) + "/s",
				"elapsed", now.Sub(t.start).Round(time.Second)}

			if quiet >= interval {
				attrs = append(attrs, "silent_for", quiet.Truncate(time.Second/10), "abandoned_after", limit)
			}

			s.log.Info("pull progress", attrs...)

			lastLog, lastReceived = now, received
		}
	}
}

// amount is "12 MiB of 310 MiB", or "12 KiB" while the total is unknown.
func amount(received, total int64) string {
	if total <= 0 {
		return humanize.IBytes(uint64(max(received, 0)))
	}

	return humanize.IBytes(uint64(max(received, 0))) + " of " + humanize.IBytes(uint64(total))
}

// percent is " (3%)", or "" while the total is unknown.
func percent(received, total int64) string {
	if total <= 0 {
		return ""
	}

	return fmt.Sprintf(" (%d%%)", received*100/total)
}

// seconds is "60s", or "1.2s" below ten seconds.
func seconds(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}

	return fmt.Sprintf("%.1fs", d.Seconds())
}
