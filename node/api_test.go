package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
)

const emptyID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

func TestSchematicsAPI(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))

	t.Run("create and read back", func(t *testing.T) {
		resp := n.do(t, "POST", "/schematics", `{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}`, nil)
		require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Equal(t, `{"id":"9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",`+
			`"schematic":"customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"}`+"\n", resp.Body)

		got := n.do(t, "GET", "/schematics/9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c", "", nil)
		require.Equal(t, http.StatusOK, got.StatusCode)
		assert.Equal(t, "application/yaml", got.Header.Get("Content-Type"))
		assert.Equal(t, "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n", got.Body)
	})

	t.Run("creating an existing schematic is 201 again", func(t *testing.T) {
		for range 2 {
			resp := n.do(t, "POST", "/schematics", "customization: {}\n", nil)
			require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
			assert.Contains(t, resp.Body, emptyID)
		}
	})

	t.Run("HEAD is answered like GET", func(t *testing.T) {
		resp := n.do(t, "HEAD", "/schematics/"+emptyID, "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Body)
	})

	bad := []struct {
		name   string
		body   string
		status int
		text   string
	}{
		{"unknown field", "something:", 400,
			"yaml: construct errors: line 1: field something not found in type schematic.Schematic\n"},
		{"duplicate key", "customization: {}\ncustomization: {}\n", 400,
			"yaml: construct errors: line 2: mapping key \"customization\" already defined at line 1\n"},
		{"meta key 256", "customization:\n  meta:\n    - key: 256\n      value: x\n", 400,
			"yaml: construct errors: line 3: cannot construct !!int `256` into uint8\n"},
		{"bootloader auto", "customization:\n  bootloader: auto\n", 400,
			"yaml: construct errors: line 2: auto does not belong to BootloaderKind values\n"},
		{"owner", "owner: someone\ncustomization: {}\n", 400, "owner field is only supported in Enterprise edition\n"},
		{"empty body", "", 400, "EOF\n"},
		{"comments only", "# nothing here\n", 400, "EOF\n"},
		{"2 MiB body", "customization:\n  extraKernelArgs:\n" + strings.Repeat("    - "+strings.Repeat("a", 1000)+"\n", 2100),
			413, "schematic body is larger than the 1 MiB limit\n"},
	}
	for _, tc := range bad {
		t.Run("bad input: "+tc.name, func(t *testing.T) {
			resp := n.do(t, "POST", "/schematics", tc.body, nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.text, resp.Body)
			assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		})
	}

	for _, id := range []string{"aaaaaaaaaaaa", "not-hex-at-all", strings.Repeat("f", 64), strings.ToUpper(emptyID)} {
		t.Run("unknown schematic "+id[:8], func(t *testing.T) {
			resp := n.do(t, "GET", "/schematics/"+id, "", nil)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			assert.Equal(t, "schematic not found\n", resp.Body)
		})
	}
}

func TestCatalogAPI(t *testing.T) {
	reg := upstream(t)
	cfg := testConfig(t, t.TempDir(), reg)
	cfg.Upstream.Broken = []string{"1.12.0"}
	n := startReady(t, cfg)

	t.Run("versions", func(t *testing.T) {
		resp := n.do(t, "GET", "/versions", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Equal(t, `["v1.13.0"]`+"\n", resp.Body)

		broken := n.do(t, "GET", "/versions?broken=true", "", nil)
		assert.Equal(t, `["v1.12.0"]`+"\n", broken.Body)
	})

	t.Run("extensions", func(t *testing.T) {
		for _, v := range []string{"v1.13.0", "1.13.0"} {
			resp := n.do(t, "GET", "/version/"+v+"/extensions/official", "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

			var exts []release.Extension
			require.NoError(t, json.Unmarshal([]byte(resp.Body), &exts))

			names := make([]string, 0, len(exts))
			for _, e := range exts {
				names = append(names, e.Name)
				assert.True(t, strings.HasPrefix(e.Ref, reg+"/"+e.Name+":"), "ref %q points at the upstream", e.Ref)
				assert.True(t, strings.HasPrefix(e.Digest, "sha256:"))
			}

			assert.ElementsMatch(t, []string{"siderolabs/hello-world-service", "siderolabs/amd-ucode", "siderolabs/i915"}, names)
		}
	})

	t.Run("overlays", func(t *testing.T) {
		resp := n.do(t, "GET", "/version/v1.13.0/overlays/official", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		var overlays []release.Overlay
		require.NoError(t, json.Unmarshal([]byte(resp.Body), &overlays))
		require.Len(t, overlays, 1)
		assert.Equal(t, "rpi_generic", overlays[0].Name)
		assert.Equal(t, "siderolabs/sbc-raspberrypi", overlays[0].Image)

		old := n.do(t, "GET", "/version/v1.6.0/overlays/official", "", nil)
		assert.Equal(t, http.StatusOK, old.StatusCode)
		assert.Equal(t, "[]\n", old.Body)
	})

	errs := []struct {
		path   string
		status int
		text   string
	}{
		{"/version/v1.99.0/extensions/official", 404, "version 1.99.0 is not available\n"},
		{"/version/v1.12.0/extensions/official", 404, "version 1.12.0 is not available\n"}, // broken
		{"/version/v1.99.0/overlays/official", 404, "version 1.99.0 is not available\n"},
		{"/version/1.7/extensions/official", 400, "invalid Talos version \"1.7\""},
		{"/version/latest/overlays/official", 400, "invalid Talos version \"latest\""},
	}
	for _, tc := range errs {
		t.Run("error "+tc.path, func(t *testing.T) {
			resp := n.do(t, "GET", tc.path, "", nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.True(t, strings.HasPrefix(resp.Body, tc.text), "body %q", resp.Body)
		})
	}
}

func TestBrokenListIsNullWhenEmpty(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))

	assert.Equal(t, "null\n", n.do(t, "GET", "/versions?broken=true", "", nil).Body)
	assert.Equal(t, `["v1.12.0","v1.13.0"]`+"\n", n.do(t, "GET", "/versions", "", nil).Body)
}

func TestHTTPBehaviour(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), upstream(t)))

	t.Run("server header and request id", func(t *testing.T) {
		resp := n.do(t, "GET", "/versions", "", map[string]string{"X-Request-ID": "abc-123"})
		assert.Equal(t, "abc-123", resp.Header.Get("X-Request-ID"))
		assert.Contains(t, resp.Header.Get("Server"), "Image Factory")
		assert.True(t, strings.HasPrefix(resp.Header.Get("Server"), "Edge Factory "))

		generated := n.do(t, "GET", "/versions", "", nil).Header.Get("X-Request-ID")
		assert.Len(t, generated, 36)
	})

	t.Run("HEAD on GET routes", func(t *testing.T) {
		resp := n.do(t, "HEAD", "/versions", "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Body)
	})

	t.Run("unknown path", func(t *testing.T) {
		resp := n.do(t, "GET", "/nope", "", nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Equal(t, "404 page not found\n", resp.Body)
	})

	t.Run("wrong method", func(t *testing.T) {
		resp := n.do(t, "DELETE", "/versions", "", nil)
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, "Method Not Allowed\n", resp.Body)
		assert.Equal(t, "GET, HEAD, OPTIONS", resp.Header.Get("Allow"))
	})

	t.Run("trailing slash and case redirect", func(t *testing.T) {
		iso := "/" + emptyID + "/v1.13.0/equinixMetal-amd64.iso"

		for _, tc := range []struct {
			method, path, location string
			status                 int
		}{
			{"GET", "/versions/", "/versions", 301},
			{"GET", "/Versions", "/versions", 301},
			{"POST", "/schematics/", "/schematics", 307},
			{"GET", "/Image" + iso, "/image" + iso, 301}, // parameters keep their spelling
		} {
			resp := n.do(t, tc.method, tc.path, "", nil)
			assert.Equal(t, tc.status, resp.StatusCode, tc.path)
			assert.Equal(t, tc.location, resp.Header.Get("Location"), tc.path)
		}
	})

	t.Run("plain OPTIONS", func(t *testing.T) {
		resp := n.do(t, "OPTIONS", "/schematics", "", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "POST, OPTIONS", resp.Header.Get("Allow"))
		assert.Empty(t, resp.Body)
	})

	t.Run("CORS preflight", func(t *testing.T) {
		get := n.do(t, "OPTIONS", "/versions", "", map[string]string{
			"Origin": "https://example.com", "Access-Control-Request-Method": "GET",
		})
		assert.Equal(t, http.StatusNoContent, get.StatusCode)
		assert.Equal(t, "*", get.Header.Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "GET", get.Header.Get("Access-Control-Allow-Methods"))

		post := n.do(t, "OPTIONS", "/schematics", "", map[string]string{
			"Origin": "https://example.com", "Access-Control-Request-Method": "POST",
		})
		assert.Equal(t, http.StatusNoContent, post.StatusCode)
		assert.Empty(t, post.Header.Get("Access-Control-Allow-Origin"))
	})

	t.Run("metrics", func(t *testing.T) {
		resp := n.do(t, "GET", "/metrics", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, resp.Body, "edgefactory_http_requests_total")
		assert.Contains(t, resp.Body, `edgefactory_catalog_versions 2`)
	})
}
