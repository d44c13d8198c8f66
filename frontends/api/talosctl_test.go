package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/api"
)

// fakeTalosctl lists two files for every version it is asked about but "v1.99.0", and serves kernelAsset's bytes.
type fakeTalosctl struct {
	asked []string
}

func (f *fakeTalosctl) TalosctlFiles(_ context.Context, version string) ([]string, error) {
	f.asked = append(f.asked, version)

	if version == "v1.99.0" {
		return nil, frontends.NewError(frontends.ClassNotFound, "version 1.99.0 is not available", nil)
	}

	return []string{"talosctl-linux-amd64", "talosctl-windows-amd64.exe"}, nil
}

func (f *fakeTalosctl) TalosctlFile(_ context.Context, version, name string) (frontends.Asset, error) {
	f.asked = append(f.asked, version+" "+name)

	if name == "talosctl-plan9-amd64" {
		return nil, frontends.NewError(frontends.ClassNotFound, `talosctl file "talosctl-plan9-amd64" is not available`, nil)
	}

	return kernelAsset{strings.NewReader(content)}, nil
}

func serveTalosctl(t *testing.T, tc *fakeTalosctl, method, target string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()

	a := &api.API{Talosctl: tc, ExternalURL: "http://factory.example:8080"}
	r := frontends.NewRouter(frontends.RouterOptions{Version: "test"}, a.Mount)

	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}

	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)

	return w
}

// TestTalosctlList: a JSON array of absolute URLs under the external URL, carrying the version as asked with a "v"
// added (as the official service does), and the node's errors.
func TestTalosctlList(t *testing.T) {
	for _, tc := range []struct{ asked, inURL string }{
		{"v1.13.0", "v1.13.0"},
		{"1.13.0", "v1.13.0"},
		{"v1.13", "v1.13"},
	} {
		t.Run(tc.asked, func(t *testing.T) {
			fake := &fakeTalosctl{}
			w := serveTalosctl(t, fake, http.MethodGet, "/talosctl/"+tc.asked, nil)

			require.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			assert.Equal(t, []string{tc.asked}, fake.asked, "the node parses the version")

			var urls []string
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &urls))
			assert.Equal(t, []string{
				"http://factory.example:8080/talosctl/" + tc.inURL + "/talosctl-linux-amd64",
				"http://factory.example:8080/talosctl/" + tc.inURL + "/talosctl-windows-amd64.exe",
			}, urls)
		})
	}

	w := serveTalosctl(t, &fakeTalosctl{}, http.MethodGet, "/talosctl/v1.99.0", nil)
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, "version 1.99.0 is not available\n", w.Body.String())
}

// TestTalosctlDownload: the file as an attachment named as asked, the asset's Content-Type (never the host's mime
// database), its length, digest validators, Range and HEAD; an unknown file is the node's 404.
func TestTalosctlDownload(t *testing.T) {
	for _, tc := range []struct{ file, contentType string }{
		{"talosctl-linux-amd64", "application/octet-stream"},
		{"talosctl-windows-amd64.exe", "application/octet-stream"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			fake := &fakeTalosctl{}
			w := serveTalosctl(t, fake, http.MethodGet, "/talosctl/v1.13/"+tc.file, nil)

			require.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, content, w.Body.String())
			assert.Equal(t, []string{"v1.13 " + tc.file}, fake.asked)
			assert.Equal(t, `attachment; filename="`+tc.file+`"`, w.Header().Get("Content-Disposition"))
			assert.Equal(t, tc.contentType, w.Header().Get("Content-Type"))
			assert.Equal(t, "12", w.Header().Get("Content-Length"))
			assert.Equal(t, `"sha256:`+digest+`"`, w.Header().Get("ETag"))
			assert.Equal(t, digest, w.Header().Get("X-Content-Sha256"))

			w = serveTalosctl(t, fake, http.MethodGet, "/talosctl/v1.13/"+tc.file, map[string]string{"Range": "bytes=7-"})
			require.Equal(t, http.StatusPartialContent, w.Code)
			assert.Equal(t, content[7:], w.Body.String())

			w = serveTalosctl(t, fake, http.MethodHead, "/talosctl/v1.13/"+tc.file, nil)
			require.Equal(t, http.StatusOK, w.Code)
			assert.Empty(t, w.Body.String())
			assert.Equal(t, "12", w.Header().Get("Content-Length"))
		})
	}

	w := serveTalosctl(t, &fakeTalosctl{}, http.MethodGet, "/talosctl/v1.13.0/talosctl-plan9-amd64", nil)
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, `talosctl file "talosctl-plan9-amd64" is not available`+"\n", w.Body.String())
}
