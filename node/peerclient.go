package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"

	"context"
	"errors"
	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/raftstore"
	"io"
	"net/http"
	"time"
)

// The client side of the peer API (peer.go): calls to other members, answered at once or streamed.

// peerSilence is how long a peer may say nothing before it is abandoned: peerSilenceTimeout unless a test
// shortened it.
func (c Config) peerSilence() time.Duration {
	if c.tune != nil && c.tune.peerSilence > 0 {
		return c.tune.peerSilence
	}

	return peerSilenceTimeout
}

// errPeerSilent ends a request to a peer that said nothing for the silence limit.
var errPeerSilent = errors.New("peer sent nothing")

// peerClient calls other members' peer APIs.
type peerClient struct {
	secret string
	// quick is for calls answered at once; stream has no overall timeout (a peer may build for minutes) but a
	// connect limit, and open abandons a peer silent for longer than silence (callers do the same on the body).
	quick, stream *http.Client
	silence       time.Duration
}

func newPeerClient(secret string, silence time.Duration) *peerClient {
	dial := (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext

	return &peerClient{
		secret:  secret,
		silence: silence,
		quick: &http.Client{Timeout: peerTimeout, Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		}},
		stream: &http.Client{Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		}},
	}
}

func (c *peerClient) request(ctx context.Context, method, base, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}

	req, err := http.NewRequestWithContext(ctx, method, base+peerPrefix+path, rd)
	if err != nil {
		return nil, err
	}

	req.Header.Set("Authorization", "Bearer "+c.secret)

	if id := frontends.RequestID(ctx); id != "" {
		req.Header.Set("X-Request-ID", id)
	}

	return req, nil
}

// peerError is a failed peer call; Status is 0 when the peer could not be reached.
type peerError struct {
	Peer   string
	Status int
	Msg    string
}

func (e *peerError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("peer %s: %s", e.Peer, e.Msg)
	}

	return fmt.Sprintf("peer %s: %d %s", e.Peer, e.Status, e.Msg)
}

// do sends req and decodes a JSON answer into out (when non-nil).
func (c *peerClient) do(client *http.Client, req *http.Request, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}

	if resp.StatusCode != http.StatusOK {
		return &peerError{Peer: req.URL.Host, Status: resp.StatusCode, Msg: string(bytes.TrimSpace(body))}
	}

	if out == nil {
		return nil
	}

	return json.Unmarshal(body, out)
}

// apply forwards a Raft command to the leader at base.
func (c *peerClient) apply(ctx context.Context, base string, cmd raftstore.Command) (raftstore.Result, error) {
	body, err := raftstore.EncodeCommand(cmd)
	if err != nil {
		return raftstore.Result{}, err
	}

	req, err := c.request(ctx, http.MethodPost, base, "/apply", body)
	if err != nil {
		return raftstore.Result{}, err
	}

	var res raftstore.Result
	if err := c.do(c.quick, req, &res); err != nil {
		return raftstore.Result{}, err
	}

	return res, res.Err()
}

// removeServer asks the leader at base to remove member id from the Raft configuration.
func (c *peerClient) removeServer(ctx context.Context, base, id string) error {
	req, err := c.request(ctx, http.MethodPost, base, "/raft/remove/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// readIndex asks the leader at base for its read index: an applied index covering every acknowledged write.
func (c *peerClient) readIndex(ctx context.Context, base string) (uint64, error) {
	req, err := c.request(ctx, http.MethodGet, base, "/readindex", nil)
	if err != nil {
		return 0, err
	}

	var out struct{ Index uint64 }

	return out.Index, c.do(c.quick, req, &out)
}

// record reads a record of kind from the leader at base into out; found is false when the leader has none.
func (c *peerClient) record(ctx context.Context, base, kind, id string, out any) (bool, error) {
	req, err := c.request(ctx, http.MethodGet, base, "/records/"+url.PathEscape(kind)+"/"+url.PathEscape(id), nil)
	if err != nil {
		return false, err
	}

	err = c.do(c.quick, req, out)

	var pe *peerError
	if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
		return false, nil
	}

	return err == nil, err
}

// pull asks the member at base to fetch a blob (described by rec) into its store, from the members listed.
func (c *peerClient) pull(ctx context.Context, base string, p pullRequest) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}

	req, err := c.request(ctx, http.MethodPost, base, "/pull", body)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// verify asks the member at base to re-hash its copy of digest (it sent bytes that did not match).
func (c *peerClient) verify(ctx context.Context, base, digest string) error {
	req, err := c.request(ctx, http.MethodPost, base, "/verify/"+digest, nil)
	if err != nil {
		return err
	}

	return c.do(c.quick, req, nil)
}

// open starts a streamed download from a peer: a blob from offset, or an asset the peer gets or builds. The caller
// reads and closes the body; the response must be 200 (or 206 for a ranged blob). A peer that answers nothing for
// the silence limit is abandoned; one that builds first keeps the request alive with heartbeats (102 Processing).
func (c *peerClient) open(ctx context.Context, base, path string, offset int64) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	silent := time.AfterFunc(c.silence, func() { cancel(fmt.Errorf("%w for %s", errPeerSilent, c.silence)) })
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
		if cause := context.Cause(ctx); errors.Is(cause, errPeerSilent) {
			err = cause
		}

		cancel(nil)

		return nil, &peerError{Peer: req.URL.Host, Msg: err.Error()}
	}

	// The body lives on in the caller's hands: the request's context ends when it is closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}

	if resp.StatusCode == http.StatusOK && offset == 0 || resp.StatusCode == http.StatusPartialContent && offset > 0 {
		return resp, nil
	}

	defer resp.Body.Close()

	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

	return nil, &peerError{Peer: req.URL.Host, Status: resp.StatusCode, Msg: string(bytes.TrimSpace(msg))}
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
