package frontends

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
)

// RouterOptions configure the shared router.
type RouterOptions struct {
	// Version is this build's version; it appears in the Server header.
	Version string
	// Logger receives one line per request.
	Logger *slog.Logger
	// Registerer receives the HTTP metrics; nil disables them.
	Registerer prometheus.Registerer
	// AllowedOrigins for CORS; default "*".
	AllowedOrigins []string
	// Guard, when set, sees every request before its route (auth.Guard.Middleware: credentials for writes).
	Guard func(http.Handler) http.Handler
	// RateCap, when set, slows responses to the bandwidth caps (ratecap.Limiter.Middleware).
	RateCap func(http.Handler) http.Handler
}

// Mount adds a frontend's routes to the router.
type Mount func(r chi.Router)

// NewRouter returns the one handler every frontend is mounted on. It carries the behaviour docs/api.md §1.1 requires of
// every route: Server and X-Request-ID headers, CORS, HEAD wherever GET is, 405 with Allow, OPTIONS, and 301/307
// redirects for a trailing slash or wrong case.
func NewRouter(opts RouterOptions, mounts ...Mount) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	if len(opts.AllowedOrigins) == 0 {
		opts.AllowedOrigins = []string{"*"}
	}

	r := chi.NewRouter()
	server := "Edge Factory " + opts.Version + " (Image Factory API)"
	m := newHTTPMetrics(opts.Registerer)

	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			id := req.Header.Get("X-Request-ID")
			if id == "" {
				id = uuid.NewString()
			}

			w.Header().Set("Server", server)
			w.Header().Set("X-Request-ID", id)
			next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), requestIDKey{}, id)))
		})
	})
	r.Use(middleware.Recoverer)
	r.Use(accessLog(opts.Logger, m))
	r.Use(cors.New(cors.Options{
		AllowedOrigins: opts.AllowedOrigins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodOptions},
		AllowedHeaders: []string{"Cache-Control"},
		ExposedHeaders: []string{"Content-Disposition", "Content-Length", "Content-Type"},
	}).Handler)
	r.Use(options(r))
	r.Use(middleware.GetHead)

	if opts.Guard != nil {
		r.Use(opts.Guard)
	}

	if opts.RateCap != nil {
		r.Use(opts.RateCap)
	}

	for _, mount := range mounts {
		mount(r)
	}

	r.NotFound(notFound(r))
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowed(r, routePath(req)), ", "))
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	})

	return r
}

type requestIDKey struct{}

// RequestID returns the ID of the request ctx belongs to ("" outside a request).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)

	return id
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete}

// allowed lists the methods routed for path, with HEAD wherever GET is and OPTIONS always.
func allowed(r chi.Routes, p string) []string {
	var out []string

	for _, m := range methods {
		if r.Match(chi.NewRouteContext(), m, p) || (m == http.MethodHead && r.Match(chi.NewRouteContext(), "GET", p)) {
			out = append(out, m)
		}
	}

	if len(out) > 0 {
		out = append(out, http.MethodOptions)
	}

	return out
}

func routePath(req *http.Request) string {
	if req.URL.RawPath != "" {
		return req.URL.RawPath
	}

	return req.URL.Path
}

// options answers a plain OPTIONS request (CORS preflights are answered earlier) with 200 and Allow.
func options(r chi.Routes) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method != http.MethodOptions {
				next.ServeHTTP(w, req)

				return
			}

			allow := allowed(r, routePath(req))
			if len(allow) == 0 {
				http.NotFound(w, req)

				return
			}

			w.Header().Set("Allow", strings.Join(allow, ", "))
			w.WriteHeader(http.StatusOK)
		})
	}
}

// notFound redirects a path that differs from a route only by a trailing slash, doubled slashes or letter case
// (301 for GET and HEAD, 307 otherwise, as the official service's router does), and answers 404 otherwise.
func notFound(r chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		target, ok := fixedPath(r, matchMethod(req.Method), routePath(req))
		if !ok {
			http.NotFound(w, req)

			return
		}

		code := http.StatusMovedPermanently
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			code = http.StatusTemporaryRedirect
		}

		if req.URL.RawQuery != "" {
			target += "?" + req.URL.RawQuery
		}

		http.Redirect(w, req, target, code) //nolint:gosec // target is a path of one of r's routes: same host (G710)
	}
}

// errFound stops a walk over the routes.
var errFound = errors.New("found")

// fixedPath finds the route a path that matches none was meant for, as the official service's router (httprouter's
// RedirectFixedPath) does: the path cleaned, then looked up ignoring letter case. Only the route's literal segments
// are respelled; parameter values and a catch-all rest keep the client's spelling, so
// /Image/<id>/v1.13.0/equinixMetal-amd64.iso leads to /image/<id>/v1.13.0/equinixMetal-amd64.iso rather than to a
// lower-cased platform that names nothing.
func fixedPath(r chi.Routes, method, p string) (string, bool) {
	clean := cleanPath(p)
	if clean != p && r.Match(chi.NewRouteContext(), method, clean) {
		return clean, true
	}

	var fixed string

	find := func(_, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if candidate, ok := respell(pattern, clean); ok && candidate != p &&
			r.Match(chi.NewRouteContext(), method, candidate) {
			fixed = candidate

			return errFound
		}

		return nil
	}
	chi.Walk(r, find) //nolint:errcheck // errFound only stops the walk

	return fixed, fixed != ""
}

// respell matches the segments of p against a route pattern ignoring letter case, and returns p with the pattern's
// literal segments in the pattern's spelling and everything a parameter or catch-all matched as p has it.
func respell(pattern, p string) (string, bool) {
	want := strings.Split(pattern, "/")
	got := strings.Split(p, "/")
	out := make([]string, 0, len(got))

	for i, w := range want {
		switch {
		case i >= len(got):
			return "", false
		case w == "*" && i == len(want)-1:
			return strings.Join(append(out, got[i:]...), "/"), true
		case strings.HasPrefix(w, "{") && strings.HasSuffix(w, "}"):
			out = append(out, got[i])
		case strings.EqualFold(w, got[i]):
			out = append(out, w)
		default:
			return "", false
		}
	}

	if len(got) != len(want) {
		return "", false
	}

	return strings.Join(out, "/"), true
}

func matchMethod(m string) string {
	if m == http.MethodHead {
		return http.MethodGet
	}

	return m
}

func cleanPath(p string) string {
	c := path.Clean("/" + p)
	if c != "/" {
		c = strings.TrimSuffix(c, "/")
	}

	return c
}

// accessLog logs each request with its route pattern, status, size and duration, and counts it.
func accessLog(log *slog.Logger, m *httpMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, req.ProtoMajor)
			next.ServeHTTP(ww, req)

			route := chi.RouteContext(req.Context()).RoutePattern()
			if route == "" {
				route = "unmatched"
			}

			elapsed := time.Since(start)
			m.observe(route, req.Method, ww.Status(), elapsed)

			level := slog.LevelInfo
			if quietRoutes[route] || (ww.Status() < 400 && strings.HasPrefix(route, "/pxe/")) {
				level = slog.LevelDebug
			}

			if !log.Enabled(req.Context(), level) { // skip boxing the attributes of a line nobody reads
				return
			}

			log.Log(req.Context(), level, "http request", "request_id", RequestID(req.Context()),
				"method", req.Method, "path", req.URL.Path, "route", route, "status", ww.Status(),
				"bytes", ww.BytesWritten(), "duration", elapsed, "remote", req.RemoteAddr)
		})
	}
}

// quietRoutes are polled by monitoring; their requests are logged at debug level, like successful PXE scripts (a
// rack booting asks for thousands; the downloads that follow are logged).
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
