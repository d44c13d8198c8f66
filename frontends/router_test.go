package frontends_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

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
