// Package auth guards the API's writes (docs/api.md §13). Reads stay open, as the official Image Factory's are.
// Credentials are a bearer token from a token file, or a user of an htpasswd file (bcrypt, SHA or MD5 entries, as
// the official supports; plain-text entries are refused). Changes of the cluster's configuration (settings, join
// tokens, certificates, rotations) always need them, except in `edgefactory dev`: without credentials configured,
// they are refused saying how to add them. Writes that make things (schematics, flavors, network-boot profiles, the
// wizard's schematic) need them when the operator asks for it (ProtectWrites).
package auth

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	htpasswd "github.com/tg123/go-htpasswd"
)

// MinTokenLength refuses tokens an attacker could guess.
const MinTokenLength = 16

// Config says where credentials come from.
type Config struct {
	// TokenFile lists bearer tokens, one a line as NAME:TOKEN (NAME is recorded as who made a change) or TOKEN.
	TokenFile string
	// Htpasswd is an htpasswd file of users.
	Htpasswd string
	// Dev leaves cluster settings open when no credentials are configured (the one-node lab of `edgefactory dev`).
	Dev bool
	// ProtectWrites makes writes that make things (schematics, flavors, profiles, the wizard) need credentials too.
	ProtectWrites bool
	// Imports guards the import API (/import/...) as a settings change: in a secure cluster it has no cluster secret
	// of its own.
	Imports bool
	// Registerer receives edgefactory_api_refused_total; nil: not registered.
	Registerer prometheus.Registerer
}

// Guard checks the credentials of write requests.
type Guard struct {
	tokens  map[string]string // token → name
	users   *htpasswd.File
	dev     bool
	writes  bool
	imports bool
	refused *prometheus.CounterVec
}

// New reads the token and htpasswd files; a file that cannot be read or holds a bad line is an error naming it.
func New(cfg Config) (*Guard, error) {
	g := &Guard{dev: cfg.Dev, writes: cfg.ProtectWrites, imports: cfg.Imports, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefactory_api_refused_total",
		Help: "Protected API writes refused, by reason (no_credentials, bad_credentials, not_configured).",
	}, []string{"reason"})}

	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.refused)
	}

	if cfg.TokenFile != "" {
		tokens, err := readTokens(cfg.TokenFile)
		if err != nil {
			return nil, err
		}

		g.tokens = tokens
	}

	if cfg.ProtectWrites && cfg.TokenFile == "" && cfg.Htpasswd == "" {
		return nil, errors.New("protected writes need credentials to check: give a token file or an htpasswd file")
	}

	if cfg.Htpasswd != "" {
		var bad []error

		users, err := htpasswd.New(cfg.Htpasswd, []htpasswd.PasswdParser{htpasswd.AcceptBcrypt, htpasswd.AcceptSha,
			htpasswd.AcceptSsha, htpasswd.AcceptMd5, htpasswd.AcceptCryptSha}, func(err error) { bad = append(bad, err) })
		if err != nil {
			return nil, fmt.Errorf("htpasswd file %s: %w", cfg.Htpasswd, err)
		}

		if len(bad) > 0 {
			return nil, fmt.Errorf("htpasswd file %s: %w (entries are bcrypt, SHA or MD5: htpasswd -B)", cfg.Htpasswd,
				errors.Join(bad...))
		}

		g.users = users
	}

	return g, nil
}

// readTokens reads a token file: NAME:TOKEN or TOKEN a line; blank lines and # comments are skipped.
func readTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()

	tokens := map[string]string{}
	sc := bufio.NewScanner(f)

	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}

		name, token, ok := strings.Cut(text, ":")
		if !ok {
			name, token = fmt.Sprintf("token-%d", line), text
		}

		if len(token) < MinTokenLength {
			return nil, fmt.Errorf("token file %s line %d: a token has at least %d characters (openssl rand -hex 32)",
				path, line, MinTokenLength)
		}

		tokens[token] = name
	}

	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}

	if len(tokens) == 0 {
		return nil, fmt.Errorf("token file %s holds no token", path)
	}

	return tokens, nil
}

// Configured reports whether any credentials are configured.
func (g *Guard) Configured() bool { return len(g.tokens) > 0 || g.users != nil }

type principalKey struct{}

// Who names the client of a request: the token's name or the user that authenticated it, else "anonymous" and its
// address. Changes are recorded with it.
func Who(r *http.Request) string {
	if p, ok := r.Context().Value(principalKey{}).(string); ok {
		return p
	}

	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}

	return "anonymous@" + host
}

// Writes guards a write that makes things: with ProtectWrites it needs credentials, else it is open.
func (g *Guard) Writes(next http.Handler) http.Handler {
	if !g.writes {
		return next
	}

	return g.guard(next, false)
}

// Admin guards a change of the cluster's configuration: it always needs credentials, except in dev without any.
func (g *Guard) Admin(next http.Handler) http.Handler { return g.guard(next, true) }

func (g *Guard) guard(next http.Handler, admin bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Configured() {
			if admin && !g.dev {
				g.refused.WithLabelValues("not_configured").Inc()
				http.Error(w, "changing the cluster's configuration needs credentials, and this member has none "+
					"configured: start it with --api-token-file or --htpasswd", http.StatusForbidden)

				return
			}

			next.ServeHTTP(w, r)

			return
		}

		who, reason := g.authenticate(r)
		if reason != "" {
			g.refused.WithLabelValues(reason).Inc()
			w.Header().Set("WWW-Authenticate", `Basic realm="Edge Factory", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="Edge Factory"`)

			msg := "this write needs credentials: a bearer token (Authorization: Bearer …) or an htpasswd user"
			if reason == "bad_credentials" {
				msg = "the credentials given are not valid"
			}

			http.Error(w, msg, http.StatusUnauthorized)

			return
		}

		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, who)))
	})
}

// authenticate returns who presented valid credentials, or why not ("no_credentials", "bad_credentials").
func (g *Guard) authenticate(r *http.Request) (who, reason string) {
	if user, password, ok := r.BasicAuth(); ok {
		if g.users != nil && g.users.Match(user, password) {
			return user, ""
		}

		return "", "bad_credentials"
	}

	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", "no_credentials"
	}

	token = strings.TrimSpace(token)
	for known, name := range g.tokens {
		if subtle.ConstantTimeCompare([]byte(known), []byte(token)) == 1 {
			return name, ""
		}
	}

	return "", "bad_credentials"
}

// Middleware guards the API's routes by method and path: changes of the settings, join tokens (listing them too),
// member certificates and rotations (and, with Imports, the import API) as Admin; schematic, flavor, profile and
// wizard writes as Writes; other reads pass.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	admin, writes := g.Admin(next), g.Writes(next)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/cluster/settings",
			g.imports && strings.HasPrefix(r.URL.Path, "/import/"),
			r.URL.Path == "/cluster/tokens" || strings.HasPrefix(r.URL.Path, "/cluster/tokens/"),
			strings.HasPrefix(r.URL.Path, "/cluster/certificates"), strings.HasPrefix(r.URL.Path, "/cluster/rotate/"):
			admin.ServeHTTP(w, r)
		case r.Method == http.MethodPost && (r.URL.Path == "/schematics" || r.URL.Path == "/flavors" ||
			r.URL.Path == "/ui/wizard"),
			(r.Method == http.MethodPut || r.Method == http.MethodDelete) &&
				strings.HasPrefix(r.URL.Path, "/machines/profiles/"):
			writes.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
