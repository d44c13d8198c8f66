package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/api"
)

const (
	emptyID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
	content = "kernel bytes"
	// digest is what the fake asset says its digest is (these tests check headers, not hashing).
	digest = "0c7ee2a3aa5f56bb46d3ad6d4d3a3a3c4e2a5a8b8e6d9c6f1c8a7e7b6c5d4e3f"
)

// kernelAssets answers every request with one stored asset whose normalised name is kernel-amd64, and records the
// paths it was asked for.
type kernelAssets struct {
	frontends.Assets // only Asset is called

	asked []string
}

func (a *kernelAssets) Asset(_ context.Context, _, _, path string) (frontends.Asset, error) {
	a.asked = append(a.asked, path)

	return kernelAsset{strings.NewReader(content)}, nil
}

type kernelAsset struct{ *strings.Reader }

func (a kernelAsset) Content() io.ReadSeeker { return a.Reader }
func (kernelAsset) Size() int64              { return int64(len(content)) }
func (kernelAsset) Digest() string           { return "sha256:" + digest }
func (kernelAsset) MediaType() string        { return "application/octet-stream" }
func (kernelAsset) Filename() string         { return "kernel-amd64" }
func (kernelAsset) Close() error             { return nil }

func serve(t *testing.T, assets frontends.Assets, method, target string) *httptest.ResponseRecorder {
	t.Helper()

	r := frontends.NewRouter(frontends.RouterOptions{Version: "test"}, (&api.API{Assets: assets}).Mount)

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(method, target, nil))

	return w
}

// TestImageEnterpriseSuffixes: the official Community edition answers the Enterprise checksum and signature
// suffixes with 402 before it looks the schematic up (docs/api.md §1.2, §3.1); Edge Factory serves only .sha256 free
// (§0), so .sha512 and .sigstore.json keep the official answer, whatever the schematic.
func TestImageEnterpriseSuffixes(t *testing.T) {
	for _, tc := range []struct {
		path, body string
	}{
		{"kernel-amd64.sha512", "enterprise not enabled: checksum endpoint is not available\n"},
		{"metal-amd64.iso.sha512", "enterprise not enabled: checksum endpoint is not available\n"},
		{"kernel-amd64.sigstore.json", "enterprise signing is not enabled: signature endpoint is not available\n"},
		{"metal-amd64.raw.zst.sigstore.json", "enterprise signing is not enabled: signature endpoint is not available\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				assets := &kernelAssets{}
				w := serve(t, assets, method, "/image/aaaaaaaaaaaa/v1.13.0/"+tc.path)

				assert.Equal(t, http.StatusPaymentRequired, w.Code, method)
				assert.Equal(t, "text/plain; charset=utf-8", w.Header().Get("Content-Type"), method)
				assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), method)
				assert.Empty(t, assets.asked, "%s: answered before the schematic lookup", method)

				if method == http.MethodGet {
					assert.Equal(t, tc.body, w.Body.String())
				}
			}
		})
	}
}

// TestImageDownloadName: the download is named as requested (docs/api.md §3.4), not by the normalised asset path,
// unless ?filename= overrides it; the free .sha256 file names the same file.
func TestImageDownloadName(t *testing.T) {
	for _, tc := range []struct {
		target, disposition, checksum string
	}{
		{"kernel-amd64", `attachment; filename="kernel-amd64"`, digest + "  kernel-amd64\n"},
		{"kernel-x86_64", `attachment; filename="kernel-x86_64"`, digest + "  kernel-x86_64\n"},
		{"kernel-i386", `attachment; filename="kernel-i386"`, digest + "  kernel-i386\n"},
		{"kernel-x86_64?filename=vmlinuz", `attachment; filename="vmlinuz"`, digest + "  vmlinuz\n"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			assets := &kernelAssets{}
			path, query, _ := strings.Cut(tc.target, "?")
			if query != "" {
				query = "?" + query
			}

			w := serve(t, assets, http.MethodGet, "/image/"+emptyID+"/v1.13.0/"+tc.target)
			require.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, tc.disposition, w.Header().Get("Content-Disposition"))
			assert.Equal(t, content, w.Body.String())

			sum := serve(t, assets, http.MethodGet, "/image/"+emptyID+"/v1.13.0/"+path+".sha256"+query)
			require.Equal(t, http.StatusOK, sum.Code)
			assert.Equal(t, tc.checksum, sum.Body.String())

			assert.Equal(t, []string{path, path}, assets.asked, "the suffix is stripped before the lookup")
		})
	}
}
