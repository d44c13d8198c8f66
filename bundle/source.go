package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// userAgent names the mirror to registries.
const userAgent = "edgefactory-mirror"

// client talks to registries: go-containerregistry for manifests, tags and referrers (through a transport that
// answers blob reads from the store and keeps what it fetches), and plain range-capable GETs for the blobs Mirror
// copies itself.
type client struct {
	insecure bool
	base     http.RoundTripper // the caller's transport, or go-containerregistry's default
	cached   http.RoundTripper // base, answering and keeping blobs through the store
	retrying http.RoundTripper // base, retrying what go-containerregistry retries

	fetched atomic.Int64 // bytes of blobs read from registries (either way)

	mu     sync.Mutex
	authed map[string]http.RoundTripper // by repository: authenticated, pull scope
}

func newClient(base http.RoundTripper, insecure bool, st *store) *client {
	if base == nil {
		base = remote.DefaultTransport
	}

	c := &client{insecure: insecure, base: base, retrying: transport.NewRetry(base), authed: map[string]http.RoundTripper{}}
	c.cached = &cachingTransport{next: base, store: st, fetched: &c.fetched}

	return c
}

// repo parses a repository ("host/path"), plain HTTP with --insecure (and for loopback registries anyway).
func (c *client) repo(s string) (name.Repository, error) {
	opts := []name.Option{name.StrictValidation}
	if c.insecure {
		opts = append(opts, name.Insecure)
	}

	return name.NewRepository(s, opts...)
}

// options are go-containerregistry's remote options for ctx.
func (c *client) options(ctx context.Context, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{
		remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(c.cached),
		remote.WithUserAgent(userAgent),
	}, extra...)
}

// transport is an authenticated transport for pulls from repo.
func (c *client) transport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	key := repo.String()

	c.mu.Lock()
	rt, ok := c.authed[key]
	c.mu.Unlock()

	if ok {
		return rt, nil
	}

	auth, err := authn.DefaultKeychain.Resolve(repo)
	if err != nil {
		return nil, err
	}

	rt, err = transport.NewWithContext(ctx, repo.Registry, auth, transport.NewUserAgent(c.retrying, userAgent),
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	c.authed[key] = rt
	c.mu.Unlock()

	return rt, nil
}

// blob opens a blob of repo from offset on, with a range request when offset > 0; start is where the bytes
// returned begin (0 when the registry ignored the range).
func (c *client) blob(repo name.Repository, d string, size int64) fetchFunc {
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		rt, err := c.transport(ctx, repo)
		if err != nil {
			return nil, 0, err
		}

		u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + d}

		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, 0, err
		}

		if offset > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, size-1))
		}

		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			return nil, 0, err
		}

		switch resp.StatusCode {
		case http.StatusOK:
			return countingBody(resp.Body, &c.fetched), 0, nil
		case http.StatusPartialContent:
			if from, ok := rangeStart(resp.Header.Get("Content-Range")); ok && from == offset {
				return countingBody(resp.Body, &c.fetched), offset, nil
			}

			resp.Body.Close()

			return nil, 0, fmt.Errorf("%s: the registry answered a range request with %q", u.Redacted(),
				resp.Header.Get("Content-Range"))
		default:
			defer resp.Body.Close() // read by CheckError

			return nil, 0, transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
		}
	}
}

// rangeStart is the first byte of a Content-Range ("bytes 100-199/200").
func rangeStart(h string) (int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}

	from, _, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, false
	}

	n, err := strconv.ParseInt(from, 10, 64)

	return n, err == nil
}

// notFound reports whether a registry said it has no such manifest, tag or repository.
func notFound(err error) bool {
	var terr *transport.Error

	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// blobPath matches a blob read: /v2/<repository>/blobs/sha256:<hex>.
var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

// cachingTransport answers blob reads the store can answer, and keeps in the store the blobs read through it (a
// blob a catalog read fetched is then not fetched again to be copied, nor by a rerun).
type cachingTransport struct {
	next    http.RoundTripper
	store   *store
	fetched *atomic.Int64
}

func (t *cachingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d := blobDigest(req)
	if d == "" || req.Method != http.MethodGet || req.Header.Get("Range") != "" {
		return t.next.RoundTrip(req)
	}

	if resp := t.fromStore(req, d); resp != nil {
		return resp, nil
	}

	release, err := t.store.acquire(req.Context(), d)
	if err != nil {
		return nil, err
	}

	if resp := t.fromStore(req, d); resp != nil { // fetched while this waited
		release()

		return resp, nil
	}

	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		release()

		return resp, err
	}

	resp.Body = t.store.tee(d, resp.ContentLength, countingBody(resp.Body, t.fetched), release)

	return resp, nil
}

// fromStore answers a blob read from the store, or is nil.
func (t *cachingTransport) fromStore(req *http.Request, d string) *http.Response {
	if ok, _ := t.store.has(d, -1); !ok {
		return nil
	}

	rc, n, err := t.store.open(d)
	if err != nil {
		return nil
	}

	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":          {"application/octet-stream"},
			"Content-Length":        {strconv.FormatInt(n, 10)},
			"Docker-Content-Digest": {d},
		},
		Body: rc, ContentLength: n, Request: req,
	}
}

// blobDigest is the digest a blob read asks for, following redirects back to the registry's URL.
func blobDigest(req *http.Request) string {
	for r := req; r != nil; {
		if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
			return m[1]
		}

		if r.Response == nil {
			break
		}

		r = r.Response.Request
	}

	return ""
}

// countingBody counts the bytes read from a response body.
func countingBody(rc io.ReadCloser, n *atomic.Int64) io.ReadCloser {
	return &counted{ReadCloser: rc, n: n}
}

type counted struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))

	return n, err
}
