// Package ratecap holds a member's responses to bandwidth caps: bytes per second to one client address, and to all
// clients together. Its guarantee: over any stretch of time, a capped response sends no more than the cap allows
// plus one burst (Burst bytes); requests it is told to leave alone (the members' own copies) are not slowed. A
// capped download of a file still goes to the kernel's sendfile, a burst at a time.
package ratecap

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Burst is the most a capped response sends at once.
const Burst = 256 << 10

// forgetAfter drops the limiter of a client address that has had no response for this long.
const forgetAfter = time.Minute

// Caps are bytes per second; zero is uncapped.
type Caps struct {
	Client int64 // to one client address
	Member int64 // to all clients together
}

// Limiter applies Caps to responses.
type Limiter struct {
	caps    Caps
	exempt  func(*http.Request) bool
	member  *rate.Limiter
	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	lim      *rate.Limiter
	active   int
	lastUsed time.Time
}

// New returns a limiter of caps; exempt names the requests never slowed (nil: none).
func New(caps Caps, exempt func(*http.Request) bool) *Limiter {
	l := &Limiter{caps: caps, exempt: exempt, clients: map[string]*client{}}
	if caps.Member > 0 {
		l.member = rate.NewLimiter(rate.Limit(caps.Member), Burst)
	}

	return l
}

// Middleware slows the responses it passes to the caps.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	if l.caps.Client <= 0 && l.caps.Member <= 0 {
		return next
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.exempt != nil && l.exempt(r) {
			next.ServeHTTP(w, r)

			return
		}

		var lims []*rate.Limiter
		if l.member != nil {
			lims = append(lims, l.member)
		}

		if l.caps.Client > 0 {
			addr := clientAddr(r)
			lims = append(lims, l.acquire(addr))

			defer l.release(addr)
		}

		next.ServeHTTP(&writer{ResponseWriter: w, ctx: r.Context(), lims: lims}, r)
	})
}

// acquire returns the limiter of one client address, shared by all its responses in flight.
func (l *Limiter) acquire(addr string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()

	c, ok := l.clients[addr]
	if !ok {
		l.forgetIdle()

		c = &client{lim: rate.NewLimiter(rate.Limit(l.caps.Client), Burst)}
		l.clients[addr] = c
	}

	c.active++

	return c.lim
}

func (l *Limiter) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()

	if c, ok := l.clients[addr]; ok {
		c.active--
		c.lastUsed = time.Now()
	}
}

// forgetIdle drops the addresses with nothing in flight for a while (a fresh limiter starts with a full burst,
// which is all such an address would have saved up anyway).
func (l *Limiter) forgetIdle() {
	for addr, c := range l.clients {
		if c.active == 0 && time.Since(c.lastUsed) > forgetAfter {
			delete(l.clients, addr)
		}
	}
}

// Clients is how many client addresses the limiter remembers.
func (l *Limiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()

	return len(l.clients)
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}

	return host
}

// writer sends a response a burst at a time, each once every limiter allows it.
type writer struct {
	http.ResponseWriter

	ctx  context.Context //nolint:containedctx // the request's, for the waits of its writes
	lims []*rate.Limiter
}

func (w *writer) wait(n int) error {
	for _, lim := range w.lims {
		if err := lim.WaitN(w.ctx, n); err != nil {
			return err
		}
	}

	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	var sent int

	for len(p) > 0 {
		n := min(len(p), Burst)
		if err := w.wait(n); err != nil {
			return sent, err
		}

		m, err := w.ResponseWriter.Write(p[:n])
		sent += m

		if err != nil {
			return sent, err
		}

		p = p[n:]
	}

	return sent, nil
}

// ReadFrom hands the body to the underlying writer's ReadFrom (sendfile for a file) a burst at a time.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, r)
	}

	var total int64

	for {
		if err := w.wait(Burst); err != nil {
			return total, err
		}

		n, err := rf.ReadFrom(io.LimitReader(r, Burst))
		total += n

		if err != nil || n < Burst {
			return total, err
		}
	}
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush on.
func (w *writer) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush() // http.Flusher has no error to give
}

// writerOnly hides ReadFrom, so that io.Copy does not call back into writer.ReadFrom.
type writerOnly struct{ io.Writer }
