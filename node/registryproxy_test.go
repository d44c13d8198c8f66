package node_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// registryProxy stands between nodes and a real registry, as a mirror or a misbehaving upstream would: it records
// every request, and intercept, when it answers one itself (returns true), keeps it from the registry.
type registryProxy struct {
	addr string

	mu    sync.Mutex
	paths []string // "METHOD /path" of every request, in order
}

func startRegistryProxy(t testing.TB, registry string, intercept func(http.ResponseWriter, *http.Request) bool,
) *registryProxy {
	t.Helper()

	target, err := url.Parse("http://" + registry)
	require.NoError(t, err)

	p := &registryProxy{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths = append(p.paths, r.Method+" "+r.URL.Path)
		p.mu.Unlock()

		if intercept == nil || !intercept(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	p.addr = strings.TrimPrefix(srv.URL, "http://")

	return p
}

// requests lists the requests seen whose "METHOD /path" contains s.
func (p *registryProxy) requests(s string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()

	var out []string

	for _, path := range p.paths {
		if strings.Contains(path, s) {
			out = append(out, path)
		}
	}

	return out
}

// count is the number of requests seen whose "METHOD /path" contains s.
func (p *registryProxy) count(s string) int { return len(p.requests(s)) }

// answerRegistryError answers as a registry does: a JSON error envelope with status and code.
func answerRegistryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"errors":[{"code":"` + code + `","message":"` + message + `"}]}`)) //nolint:errcheck // test server
}
