package auth_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgefactory/edgefactory/frontends/auth"
)

const token = "0123456789abcdef0123456789abcdef"

func file(t *testing.T, body string) string {
	t.Helper()

	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))

	return p
}

func htpasswdFile(t *testing.T, user, password string) string {
	t.Helper()

	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	require.NoError(t, err)

	return file(t, user+":"+string(hash)+"\n")
}

// serve sends one request through the guard's middleware and returns the status and who the handler saw.
func serve(g *auth.Guard, method, path string, header map[string]string) (int, string) {
	var who string

	h := g.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { who = auth.Who(r) }))
	req := httptest.NewRequest(method, path, strings.NewReader("{}"))

	for k, v := range header {
		req.Header.Set(k, v)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	return rec.Code, who
}

// TestGuard: reads pass; with protected writes, writes need a valid token or htpasswd user (refusals counted by
// reason); without, writes that make things are open while the cluster's configuration needs credentials (refused
// outside dev when none are configured).
func TestGuard(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := auth.New(auth.Config{TokenFile: file(t, "# ops\nops:"+token+"\n"),
		Htpasswd: htpasswdFile(t, "alice", "s3cret-pass"), ProtectWrites: true, Registerer: reg})
	require.NoError(t, err)

	bearer := map[string]string{"Authorization": "Bearer " + token}
	basic := func(user, password string) map[string]string {
		r := httptest.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, password)

		return map[string]string{"Authorization": r.Header.Get("Authorization")}
	}

	for _, c := range []struct {
		method, path string
		header       map[string]string
		status       int
		who          string
	}{
		{"GET", "/cluster/settings", nil, 200, "anonymous@192.0.2.1"},
		{"GET", "/machines/profiles/x", nil, 200, "anonymous@192.0.2.1"},
		{"POST", "/schematics", nil, 401, ""},
		{"POST", "/schematics", bearer, 200, "ops"},
		{"POST", "/flavors", basic("alice", "s3cret-pass"), 200, "alice"},
		{"POST", "/ui/wizard", basic("alice", "wrong"), 401, ""},
		{"PUT", "/machines/profiles/rack1", map[string]string{"Authorization": "Bearer " + token + "x"}, 401, ""},
		{"DELETE", "/machines/profiles/rack1", bearer, 200, "ops"},
		{"PUT", "/cluster/settings", basic("bob", "s3cret-pass"), 401, ""},
		{"PUT", "/cluster/settings", map[string]string{"Authorization": "Token " + token}, 401, ""},
		{"PUT", "/cluster/settings", bearer, 200, "ops"},
		{"GET", "/cluster/tokens", nil, 401, ""},
		{"POST", "/cluster/rotate/ca", basic("alice", "s3cret-pass"), 200, "alice"},
	} {
		status, who := serve(g, c.method, c.path, c.header)
		assert.Equal(t, c.status, status, "%s %s %v", c.method, c.path, c.header)
		assert.Equal(t, c.who, who, "%s %s", c.method, c.path)
	}

	assert.InDelta(t, 3.0, refused(t, reg, "no_credentials"), 0)
	assert.InDelta(t, 3.0, refused(t, reg, "bad_credentials"), 0)

	open, err := auth.New(auth.Config{})
	require.NoError(t, err)

	status, _ := serve(open, "POST", "/schematics", nil)
	assert.Equal(t, 200, status, "without credentials configured, creating schematics stays open as upstream")
	status, _ = serve(open, "PUT", "/cluster/settings", nil)
	assert.Equal(t, 403, status, "settings always need credentials outside dev")

	status, _ = serve(open, "POST", "/import/plan", nil)
	assert.Equal(t, 200, status, "the import API keeps its own cluster secret unless told otherwise")

	secure, err := auth.New(auth.Config{Imports: true})
	require.NoError(t, err)

	status, _ = serve(secure, "POST", "/import/plan", nil)
	assert.Equal(t, 403, status, "in a secure cluster imports need credentials like settings")

	dev, err := auth.New(auth.Config{Dev: true})
	require.NoError(t, err)

	status, _ = serve(dev, "PUT", "/cluster/settings", nil)
	assert.Equal(t, 200, status, "dev keeps its one-command start")

	adminOnly, err := auth.New(auth.Config{TokenFile: file(t, "ops:"+token+"\n")})
	require.NoError(t, err)

	status, _ = serve(adminOnly, "POST", "/schematics", nil)
	assert.Equal(t, 200, status, "without ProtectWrites, schematics stay open with credentials configured")
	status, _ = serve(adminOnly, "PUT", "/cluster/settings", nil)
	assert.Equal(t, 401, status)

	_, err = auth.New(auth.Config{ProtectWrites: true})
	require.Error(t, err, "protected writes without any credentials to check")
}

// refused reads edgefactory_api_refused_total for one reason.
func refused(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()

	mfs, err := reg.Gather()
	require.NoError(t, err)

	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "edgefactory_api_refused_total" && m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}

	return 0
}

// TestCredentialFiles: a weak token, an empty token file, a plain-text htpasswd entry and a missing file are
// refused at start, naming the file.
func TestCredentialFiles(t *testing.T) {
	for name, cfg := range map[string]auth.Config{
		"short token":      {TokenFile: file(t, "ops:short\n")},
		"no token":         {TokenFile: file(t, "# nothing\n\n")},
		"missing":          {TokenFile: filepath.Join(t.TempDir(), "none")},
		"plain htpasswd":   {Htpasswd: file(t, "alice:plaintext\n")},
		"missing htpasswd": {Htpasswd: filepath.Join(t.TempDir(), "none")},
	} {
		_, err := auth.New(cfg)
		require.Error(t, err, name)
		assert.Regexp(t, `(token|htpasswd) file`, err.Error(), name)
	}
}
