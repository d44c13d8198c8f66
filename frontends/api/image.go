package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
)

// checksumSuffix asks for the sha256 of an asset instead of the asset (served free; the official service wants
// Enterprise for it).
const checksumSuffix = ".sha256"

// enterpriseSuffixes are the official service's other checksum and signature files, which Edge Factory does not serve.
// Its Community edition refuses them with 402 and these texts before it looks anything up (docs/api.md §3.1), and so
// does Edge Factory, so a client sees the same answer whatever the schematic and version.
var enterpriseSuffixes = []struct{ suffix, refusal string }{
	{".sigstore.json", "enterprise signing is not enabled: signature endpoint is not available"},
	{".sha512", "enterprise not enabled: checksum endpoint is not available"},
}

// image serves GET and HEAD /image/{schematic}/{version}/{path}: Range (206) and If-Range, ETag with
// If-None-Match (304), X-Content-Sha256, and the `<path>.sha256` checksum file. The body is sent straight from the
// stored file.
func (a *API) image(w http.ResponseWriter, r *http.Request) {
	path := chi.URLParam(r, "path")

	for _, e := range enterpriseSuffixes {
		if strings.HasSuffix(path, e.suffix) {
			http.Error(w, e.refusal, http.StatusPaymentRequired) // the Community edition's answer (docs/api.md §1.1)

			return
		}
	}

	checksum := strings.HasSuffix(path, checksumSuffix)
	path = strings.TrimSuffix(path, checksumSuffix)

	asset, err := a.Assets.Asset(r.Context(), chi.URLParam(r, "schematic"), chi.URLParam(r, "version"), path)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}
	defer asset.Close()

	// Named as requested, as the official service does: kernel-x86_64 downloads as kernel-x86_64, although it is
	// the asset stored as kernel-amd64.
	name := path
	if override := r.URL.Query().Get("filename"); override != "" {
		name = override
	}

	hexDigest := strings.TrimPrefix(asset.Digest(), "sha256:")
	h := w.Header()

	if checksum {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s  %s\n", hexDigest, name) //nolint:gosec // text/plain, never rendered as HTML (G705)

		return
	}

	serveDownload(w, r, asset, name)
}

// serveDownload sends an asset as an attachment named name, with its media type, ETag (its digest) and
// X-Content-Sha256; Range, HEAD and validators as frontends.ServeAsset answers them.
func serveDownload(w http.ResponseWriter, r *http.Request, asset frontends.Asset, name string) {
	h := w.Header()
	h.Set("Content-Type", asset.MediaType())
	h.Set("Content-Disposition", `attachment; filename="`+dispositionName.Replace(name)+`"`)
	h.Set("ETag", `"`+asset.Digest()+`"`)
	h.Set("X-Content-Sha256", strings.TrimPrefix(asset.Digest(), "sha256:"))

	frontends.ServeAsset(w, r, asset)
}

// dispositionName keeps a ?filename= override from breaking out of the quoted header value.
var dispositionName = strings.NewReplacer(`"`, "'", "\\", "", "\r", "", "\n", "")

func (a *API) secureBootCert(w http.ResponseWriter, r *http.Request) {
	pem, err := a.Assets.SecureBootCertificate(r.Context())
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pem) //nolint:errcheck // the client hung up; nothing to do
}
