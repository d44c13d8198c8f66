package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// apiClient talks to one member's API for the commands that read and change the cluster (profiles, settings),
// presenting the credentials protected writes ask for (docs/api.md §13).
type apiClient struct {
	base string
	// token is sent as a bearer token; user ("name:password") as HTTP basic authentication (an htpasswd user).
	token, user string
}

// apiClientFlags adds --node, --token and --user to cmd and returns the client they describe.
func apiClientFlags(cmd *cobra.Command) func() *apiClient {
	var c apiClient

	f := cmd.PersistentFlags()
	f.StringVar(&c.base, "node", "http://127.0.0.1:8080", "URL of any member")
	f.StringVar(&c.token, "token", os.Getenv(envPrefix+"TOKEN"),
		"bearer token for protected writes (env "+envPrefix+"TOKEN)")
	f.StringVar(&c.user, "user", os.Getenv(envPrefix+"USER"),
		"NAME:PASSWORD of an htpasswd user for protected writes (env "+envPrefix+"USER)")

	return func() *apiClient {
		out := c
		out.base = strings.TrimSuffix(out.base, "/")

		return &out
	}
}

// do sends one request; a non-2xx answer becomes an error carrying the member's message.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}

	if body != nil {
		req.Header.Set("Content-Type", contentTypeOf(body))
	}

	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.user != "":
		name, password, _ := strings.Cut(c.user, ":")
		req.SetBasicAuth(name, password)
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", c.base, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}

	if out == nil {
		return nil
	}

	if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", path, err)
	}

	return nil
}

func contentTypeOf(body []byte) string {
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		return "application/json"
	}

	return "application/yaml"
}
