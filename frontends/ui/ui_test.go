package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

type fakeFactory struct {
	mu     sync.Mutex
	stored map[string][]byte
}

func (f *fakeFactory) CreateSchematic(_ context.Context, s *schematic.Schematic) (string, []byte, error) {
	out, err := s.Marshal()
	if err != nil {
		return "", nil, err
	}

	f.mu.Lock()
	defer f.mu.Unlock()

	id := schematic.IDOf(out)
	f.stored[id] = out

	return id, out, nil
}

func (f *fakeFactory) Schematic(_ context.Context, id string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if out, ok := f.stored[id]; ok {
		return out, nil
	}

	return nil, frontends.NewError(frontends.ClassNotFound, "schematic not found", nil)
}

func (f *fakeFactory) Versions(context.Context) ([]string, error) {
	return []string{"v1.12.0", "v1.13.0"}, nil
}
func (f *fakeFactory) BrokenVersions(context.Context) ([]string, error) {
	return nil, nil
}

func (f *fakeFactory) Extensions(context.Context, string) ([]release.Extension, error) {
	return []release.Extension{{Name: "siderolabs/amd-ucode", Description: "AMD microcode"},
		{Name: "siderolabs/i915", Description: "Intel graphics"}}, nil
}

func (f *fakeFactory) Overlays(context.Context, string) ([]release.Overlay, error) {
	return []release.Overlay{{Name: "rpi_generic", Image: "siderolabs/sbc-raspberrypi"}}, nil
}

func (f *fakeFactory) TalosctlFiles(context.Context, string) ([]string, error) {
	return []string{"talosctl-linux-amd64"}, nil
}

func (f *fakeFactory) TalosctlFile(context.Context, string, string) (frontends.Asset, error) {
	return nil, frontends.NewError(frontends.ClassNotFound, "no", nil)
}

func newServer(t *testing.T) (*httptest.Server, *fakeFactory) {
	f := &fakeFactory{stored: map[string][]byte{}}
	u := &UI{Schematics: f, Catalog: f, Talosctl: f, ExternalURL: "http://factory.example:8080",
		PXEURL: "http://pxe.example:8080"}
	srv := httptest.NewServer(frontends.NewRouter(frontends.RouterOptions{}, u.Mount))
	t.Cleanup(srv.Close)

	return srv, f
}

func do(t *testing.T, method, u, body string, header map[string]string) (*http.Response, string) {
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	require.NoError(t, err)

	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}

	for k, v := range header {
		req.Header.Set(k, v)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)

	defer resp.Body.Close()

	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	return resp, string(out)
}

func TestRoutes(t *testing.T) {
	srv, _ := newServer(t)

	resp, body := do(t, http.MethodHead, srv.URL+"/", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, body)

	resp, _ = do(t, http.MethodGet, srv.URL+"/?lang=", "", nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp, body = do(t, http.MethodGet, srv.URL+"/?lang=en", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Set-Cookie"), "lang=en")
	assert.Contains(t, body, `name="target" value="metal" checked`)

	resp, body = do(t, http.MethodGet, srv.URL+"/llms.txt", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, body, "POST /schematics")

	for _, p := range []string{"/css/ui.css", "/js/htmx.min.js", "/js/ui.js", "/favicons/favicon.svg"} {
		resp, _ = do(t, http.MethodGet, srv.URL+p, "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, p)
	}
}

func TestFinalPage(t *testing.T) {
	srv, _ := newServer(t)

	_, body := do(t, http.MethodGet, srv.URL+"/?target=cloud&version=1.13.0&platform=nocloud&arch=amd64&secureboot=true"+
		"&extensions=siderolabs/amd-ucode&cmdline-set=true", "", nil)
	id, err := (&schematic.Schematic{Customization: schematic.Customization{
		SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{"siderolabs/amd-ucode"}}}}).ID()
	require.NoError(t, err)

	assert.Contains(t, body, id)
	assert.Contains(t, body, "http://factory.example:8080/image/"+id+"/v1.13.0/nocloud-amd64-secureboot.raw.xz")
	assert.Contains(t, body, "http://pxe.example:8080/pxe/"+id+"/v1.13.0/nocloud-amd64-secureboot")
	assert.Contains(t, body, "factory.example:8080/nocloud-installer-secureboot/"+id+":v1.13.0")
	assert.Contains(t, body, "talosctl cluster create qemu --schematic-id "+id+" --talos-version v1.13.0")
	assert.Contains(t, body, `data-asset-status="nocloud-amd64-secureboot.iso"`, "the status badge hook")
}

// TestWizardPost: without htmx a step's form redirects to the next step's page; with htmx it answers the fragment
// and the URL to push. An embedded machine configuration never reaches a URL.
func TestWizardPost(t *testing.T) {
	srv, f := newServer(t)
	form := url.Values{"target": {"metal"}, "version": {"1.13.0"}, "arch": {"amd64"}, "extensions": {"-"},
		"cmdline-set": {"true"}, "machine-config": {"machine:\n  token: secret"}}

	resp, _ := do(t, http.MethodPost, srv.URL+"/ui/wizard", form.Encode(), nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc := resp.Header.Get("Location")
	assert.NotContains(t, loc, "secret")
	assert.Contains(t, loc, "schematic-id=")

	resp, body := do(t, http.MethodPost, srv.URL+"/ui/wizard", form.Encode(), map[string]string{"HX-Request": "true"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, loc, resp.Header.Get("Hx-Push-Url"))
	assert.NotContains(t, body, "<html")

	// the pushed URL shows the schematic with the configuration
	_, page := do(t, http.MethodGet, srv.URL+loc, "", nil)
	id := stateOf(t, loc).SchematicID
	assert.Contains(t, page, `<code id="schematic-id">`+id+`</code>`)
	assert.Contains(t, string(f.stored[id]), "secret")

	// reopening the schematic pre-fills the configuration on the customization step
	_, page = do(t, http.MethodGet, srv.URL+"/?target=metal&version=1.13.0&arch=amd64&extensions=-&schematic-id="+id, "", nil)
	assert.Contains(t, page, "token: secret")
}

func stateOf(t *testing.T, loc string) State {
	u, err := url.Parse(loc)
	require.NoError(t, err)

	return ParseState(u.Query())
}
