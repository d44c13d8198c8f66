package frontends_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"

	"github.com/edgefactory/edgefactory/frontends"
)

// BenchmarkRouter measures what the shared router adds to every request (request ID, recovery, access log and
// metrics, CORS, OPTIONS and HEAD handling, routing) around a handler that writes a PXE-script-sized answer.
func BenchmarkRouter(b *testing.B) {
	body := make([]byte, 600)
	h := frontends.NewRouter(frontends.RouterOptions{Version: "bench", Registerer: prometheus.NewRegistry()},
		func(r chi.Router) {
			r.Get("/pxe/{schematic}/{version}/{path}", func(w http.ResponseWriter, _ *http.Request) {
				w.Write(body) //nolint:errcheck // a recorder
			})
		})
	req := httptest.NewRequest(http.MethodGet,
		"/pxe/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.13.0/metal-amd64", nil)

	b.ReportAllocs()

	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)

		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// TestRedirectFixesOnlyTheRoute: a path that differs from a route by letter case, a trailing slash or doubled
// slashes is redirected to the route's spelling, as the official service's router (httprouter's case-insensitive
// lookup) does it: the route's literal segments take the route's case, the parameter values keep the client's, so
// a camel-case platform (equinixMetal) or a catch-all registry path still names the same thing after the redirect.
func TestRedirectFixesOnlyTheRoute(t *testing.T) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	h := frontends.NewRouter(frontends.RouterOptions{Version: "test"}, func(r chi.Router) {
		r.Get("/versions", ok)
		r.Post("/schematics", ok)
		r.Get("/schematics/{id}", ok)
		r.Get("/image/{schematic}/{version}/{path}", ok)
		r.Get("/version/{version}/extensions/official", ok)
		r.Get("/v2/*", ok)
		r.Route("/_peer", func(r chi.Router) { r.Get("/assets/{schematic}/{version}/{path}", ok) })
	})

	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/Image/" + id + "/v1.13.0/equinixMetal-amd64.iso", 301, "/image/" + id + "/v1.13.0/equinixMetal-amd64.iso"},
		{"HEAD", "/IMAGE/" + id + "/V1.13.0/kernel-AMD64", 301, "/image/" + id + "/V1.13.0/kernel-AMD64"},
		{"GET", "/image/" + id + "/v1.13.0/equinixMetal-amd64.iso/", 301, "/image/" + id + "/v1.13.0/equinixMetal-amd64.iso"},
		{"GET", "//Image//" + id + "/v1.13.0/metal-amd64.iso?filename=Talos.iso", 301,
			"/image/" + id + "/v1.13.0/metal-amd64.iso?filename=Talos.iso"},
		{"GET", "/Version/v1.13.0/Extensions/Official", 301, "/version/v1.13.0/extensions/official"},
		{"GET", "/Schematics/AbC", 301, "/schematics/AbC"},
		{"GET", "/V2/SideroLabs/Installer/Manifests/V1.13.0", 301, "/v2/SideroLabs/Installer/Manifests/V1.13.0"},
		{"GET", "/_PEER/Assets/" + id + "/v1.13.0/Kernel-x86_64", 301, "/_peer/assets/" + id + "/v1.13.0/Kernel-x86_64"},
		{"GET", "/Versions", 301, "/versions"},
		{"GET", "/versions/", 301, "/versions"},
		{"POST", "/Schematics", 307, "/schematics"},
		{"POST", "/schematics/", 307, "/schematics"},
		{"GET", "/Nope", 404, ""},
		{"GET", "/Image/" + id + "/v1.13.0", 404, ""},
		{"POST", "/Versions", 404, ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))

			assert.Equal(t, tc.status, w.Code)
			assert.Equal(t, tc.location, w.Header().Get("Location"))
		})
	}
}
