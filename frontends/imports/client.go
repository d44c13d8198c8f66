package imports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client calls a member's import API.
type Client struct {
	Base   string // the member's URL
	Secret string // the cluster secret, when it has one
	HTTP   *http.Client
}

// Plan opens a session for the blobs of a bundle.
func (c *Client) Plan(ctx context.Context, req PlanRequest) (PlanResponse, error) {
	var res PlanResponse

	return res, c.call(ctx, http.MethodPost, "/plan", req, &res)
}

// PutBlob sends one blob of size bytes.
func (c *Client) PutBlob(ctx context.Context, session, digest string, size int64, body io.Reader) error {
	req, err := c.request(ctx, http.MethodPut, "/"+session+"/blobs/"+digest, body)
	if err != nil {
		return err
	}

	req.ContentLength = size

	return c.do(req, nil)
}

// Commit records the bundle's images.
func (c *Client) Commit(ctx context.Context, session string, commit CommitRequest) (CommitResponse, error) {
	var res CommitResponse

	return res, c.call(ctx, http.MethodPost, "/"+session+"/commit", commit, &res)
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}

	req, err := c.request(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return err
	}

	req.Header.Set("Content-Type", "application/json")

	return c.do(req, out)
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+Prefix+path, body)
	if err != nil {
		return nil, err
	}

	if c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}

	return req, nil
}

func (c *Client) do(req *http.Request, out any) error {
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}

	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))

		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(msg)))
	}

	if out == nil {
		return nil
	}

	return json.NewDecoder(resp.Body).Decode(out)
}
