package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"time"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Client calls other members' peer APIs.
type Client struct {
	secret string
	// quick is for calls answered at once; stream has no overall timeout (a peer may build for minutes) but a
	// connect limit, and streamed calls abandon a peer silent for longer than silence.
	quick, stream *http.Client
	silence       time.Duration
}

// NewClient makes a client presenting secret; silence is how long a member may say nothing (SilenceTimeout unless
// a test shortens it). With tlsConf (tlsca.ClientConfig for clusterport.ProtoPeer), members are called over the
// mutual-TLS cluster port (their https:// peer URLs) and no secret is sent.
func NewClient(secret string, silence time.Duration, tlsConf *tls.Config) *Client {
	dial := (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext

	return &Client{
		secret:  secret,
		silence: silence,
		quick: &http.Client{Timeout: Timeout, Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, TLSClientConfig: tlsConf,
			TLSHandshakeTimeout: 5 * time.Second,
		}},
		stream: &http.Client{Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
			TLSClientConfig: tlsConf, TLSHandshakeTimeout: 5 * time.Second,
		}},
	}
}

// Silence is how long a member may send nothing before a streamed call to it is abandoned.
func (c *Client) Silence() time.Duration { return c.silence }

// Apply forwards a Raft command to the leader at base.
func (c *Client) Apply(ctx context.Context, base string, cmd raftstore.Command) (raftstore.Result, error) {
	body, err := raftstore.EncodeCommand(cmd)
	if err != nil {
		return raftstore.Result{}, err
	}

	var res raftstore.Result
	if err := c.call(ctx, http.MethodPost, base, "/apply", body, &res, nil); err != nil {
		return raftstore.Result{}, err
	}

	return res, res.Err()
}

// RemoveServer asks the leader at base to remove member id from the Raft configuration; ErrKeepVoter when it
// stays a voter.
func (c *Client) RemoveServer(ctx context.Context, base, id string) error {
	return c.call(ctx, http.MethodPost, base, "/raft/remove/"+url.PathEscape(id), nil, nil, ErrKeepVoter)
}

// ReadIndex asks the leader at base for its read index: an applied index covering every acknowledged write.
func (c *Client) ReadIndex(ctx context.Context, base string) (uint64, error) {
	var out struct{ Index uint64 }

	return out.Index, c.call(ctx, http.MethodGet, base, "/readindex", nil, &out, nil)
}

// Record reads a record of the replicated state from the leader at base, as stored (raftstore.Store.Record);
// found is false when the leader has none.
func (c *Client) Record(ctx context.Context, base, kind, id string) ([]byte, bool, error) {
	var raw []byte

	err := c.call(ctx, http.MethodGet, base, "/records/"+url.PathEscape(kind)+"/"+url.PathEscape(id), nil, &raw, nil)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}

	return raw, err == nil, err
}

// Pull asks the member at base to fetch a blob into its store, from the members listed.
func (c *Client) Pull(ctx context.Context, base string, p PullRequest) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}

	return c.call(ctx, http.MethodPost, base, "/pull", body, nil, nil)
}

// Keep asks the member at base to copy a blob into its store from the members listed, and returns once it is stored
// and verified there (no overall timeout: a blob may be large; ctx bounds it).
func (c *Client) Keep(ctx context.Context, base string, p PullRequest) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}

	req, err := c.request(ctx, http.MethodPost, base, "/pull?wait=1", body)
	if err != nil {
		return err
	}

	resp, err := c.stream.Do(req)
	if err != nil {
		return &Error{Peer: req.URL.Host, Msg: err.Error(), kind: ErrUnreachable, cause: err}
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

		return failure(req.URL.Host, resp.StatusCode, string(bytes.TrimSpace(msg)), nil)
	}

	return nil
}

// Build asks the member at base whether it builds key now; found is false when it does not.
func (c *Client) Build(ctx context.Context, base, key string) (_ BuildState, found bool, _ error) {
	var b BuildState

	err := c.call(ctx, http.MethodGet, base, "/builds/"+url.PathEscape(key), nil, &b, nil)
	if errors.Is(err, ErrNotFound) {
		return BuildState{}, false, nil
	}

	return b, err == nil, err
}

// Verify asks the member at base to re-hash its copy of a digest (it sent bytes that did not match).
func (c *Client) Verify(ctx context.Context, base, digest string) error {
	return c.call(ctx, http.MethodPost, base, "/verify/"+digest, nil, nil, nil)
}

// OpenBlob starts streaming a stored blob from the member at base, from offset: the body starts at offset, its
// length checked against size. The caller reads and closes it.
func (c *Client) OpenBlob(ctx context.Context, base, digest string, offset, size int64) (io.ReadCloser, error) {
	resp, err := c.open(ctx, base, "/blobs/"+digest, offset, nil)
	if err != nil {
		return nil, err
	}

	if err := checkResumed(resp, offset, size); err != nil {
		resp.Body.Close()

		return nil, &Error{Peer: resp.Request.URL.Host, Status: resp.StatusCode, Msg: err.Error(),
			kind: ErrUnavailable}
	}

	return resp.Body, nil
}

// OpenAsset asks the member at base for the asset of r (it gets or builds it; one hop: it never asks another), the
// asker's state pinned at index, and starts streaming it. The record the member sent with it is checked to
// describe r's key and the body.
func (c *Client) OpenAsset(ctx context.Context, base string, r recipe.Recipe, index uint64) (io.ReadCloser,
	raftstore.AssetRecord, error,
) {
	resp, err := c.open(ctx, base, assetPath(r, index), 0, ErrStateDiffers)
	if err != nil {
		return nil, raftstore.AssetRecord{}, err
	}

	rec, err := recordOf(resp, r.Key)
	if err != nil {
		resp.Body.Close()

		return nil, rec, &Error{Peer: resp.Request.URL.Host, Status: resp.StatusCode, Msg: err.Error(),
			kind: ErrUnavailable}
	}

	return resp.Body, rec, nil
}

// assetPath is the path of a recipe's asset (its normalised path, which the member parses back into the same
// asset; a talosctl binary's version and name) with the key and state index that pin the asker's plan.
func assetPath(r recipe.Recipe, index uint64) string {
	q := url.Values{"key": {r.Key}, "index": {strconv.FormatUint(index, 10)}}

	if r.Talosctl != nil {
		return "/talosctl/" + url.PathEscape(r.Version) + "/" + url.PathEscape(r.Talosctl.Name) + "?" + q.Encode()
	}

	return "/assets/" + url.PathEscape(r.SchematicID) + "/" + url.PathEscape(r.Version) + "/" +
		url.PathEscape(r.Asset.Path) + "?" + q.Encode()
}

// recordOf reads the asset record a member sent with an asset and checks it describes the body.
func recordOf(resp *http.Response, key string) (raftstore.AssetRecord, error) {
	var rec raftstore.AssetRecord
	if err := json.Unmarshal([]byte(resp.Header.Get(recordHeader)), &rec); err != nil {
		return rec, fmt.Errorf("bad asset record header: %w", err)
	}

	if rec.Key != key {
		return rec, fmt.Errorf("asked for key %s, got a record of %s", key, rec.Key)
	}

	if err := digest.Check(rec.Digest); err != nil {
		return rec, err
	}

	if resp.ContentLength != rec.Size {
		return rec, fmt.Errorf("record says %d bytes, response %d", rec.Size, resp.ContentLength)
	}

	return rec, nil
}

// checkResumed checks a blob response starts where the copy stopped.
func checkResumed(resp *http.Response, offset, size int64) error {
	if offset == 0 {
		if resp.ContentLength != size {
			return fmt.Errorf("peer sends %d bytes, the asset has %d", resp.ContentLength, size)
		}

		return nil
	}

	want := "bytes " + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(size-1, 10) + "/" +
		strconv.FormatInt(size, 10)
	if got := resp.Header.Get("Content-Range"); got != want {
		return fmt.Errorf("peer resumed with %q, want %q", got, want)
	}

	return nil
}

func (c *Client) request(ctx context.Context, method, base, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}

	req, err := http.NewRequestWithContext(ctx, method, base+Prefix+path, rd)
	if err != nil {
		return nil, err
	}

	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}

	if id := frontends.RequestID(ctx); id != "" {
		req.Header.Set("X-Request-ID", id)
	}

	return req, nil
}

// call sends a request answered at once and decodes a JSON answer into out (when non-nil). conflict is the kind
// of a 409 on this route.
func (c *Client) call(ctx context.Context, method, base, path string, body []byte, out any, conflict error) error {
	req, err := c.request(ctx, method, base, path, body)
	if err != nil {
		return err
	}

	resp, err := c.quick.Do(req)
	if err != nil {
		return &Error{Peer: req.URL.Host, Msg: err.Error(), kind: ErrUnreachable, cause: err}
	}
	defer resp.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return &Error{Peer: req.URL.Host, Msg: err.Error(), kind: ErrUnreachable, cause: err}
	}

	if resp.StatusCode != http.StatusOK {
		return failure(req.URL.Host, resp.StatusCode, string(bytes.TrimSpace(raw)), conflict)
	}

	if out == nil {
		return nil
	}

	return json.Unmarshal(raw, out)
}

// failure is the *Error of a member's non-success answer.
func failure(peer string, status int, msg string, conflict error) *Error {
	e := &Error{Peer: peer, Status: status, Msg: msg}

	switch {
	case status == http.StatusMisdirectedRequest:
		e.kind = raftstore.ErrNotLeader
	case status == http.StatusNotFound:
		e.kind = ErrNotFound
	case status == http.StatusConflict && conflict != nil:
		e.kind = conflict
	case status >= 400 && status < 500:
		e.kind = ErrInvalid
	default:
		e.kind = ErrUnavailable
	}

	return e
}

// open starts a streamed call: a blob from offset, or an asset the member gets or builds. The response must be 200
// (or 206 for a ranged blob). A member that answers nothing for the silence limit is abandoned; one that builds
// first keeps the request alive with heartbeats (102 Processing). conflict is the kind of a 409 on this route.
func (c *Client) open(ctx context.Context, base, path string, offset int64, conflict error) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	silent := time.AfterFunc(c.silence, func() { cancel(fmt.Errorf("%w for %s", ErrSilent, c.silence)) })
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(int, textproto.MIMEHeader) error {
			silent.Reset(c.silence)

			return nil
		},
	})

	req, err := c.request(ctx, http.MethodGet, base, path, nil)
	if err != nil {
		cancel(nil)

		return nil, err
	}

	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}

	resp, err := c.stream.Do(req)
	silent.Stop()

	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrSilent) {
			err = cause
		}

		cancel(nil)

		return nil, &Error{Peer: req.URL.Host, Msg: err.Error(), kind: ErrUnreachable, cause: err}
	}

	// The body lives on in the caller's hands: the request's context ends when it is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}

	if resp.StatusCode == http.StatusOK && offset == 0 || resp.StatusCode == http.StatusPartialContent && offset > 0 {
		return resp, nil
	}

	defer resp.Body.Close()

	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

	return nil, failure(req.URL.Host, resp.StatusCode, string(bytes.TrimSpace(msg)), conflict)
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()

	return err
}
