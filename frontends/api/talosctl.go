package api

import (
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
)

// talosctlList serves GET /talosctl/{version}: the absolute download URLs of the version's talosctl binaries,
// sorted, as a JSON array. Like the official service, the URLs carry the version as asked ("v" added), so
// /talosctl/1.11 lists <external URL>/talosctl/v1.11/talosctl-linux-amd64, which downloads the same file.
func (a *API) talosctlList(w http.ResponseWriter, r *http.Request) {
	version := chi.URLParam(r, "version")

	names, err := a.Talosctl.TalosctlFiles(r.Context(), version)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	if !strings.HasPrefix(version, "v") {
		version = "v" + version
	}

	base := a.ExternalURL + "/talosctl/" + url.PathEscape(version) + "/"
	urls := make([]string, 0, len(names))

	for _, name := range names {
		urls = append(urls, base+url.PathEscape(name))
	}

	writeJSON(w, http.StatusOK, urls)
}

// talosctlFile serves GET and HEAD /talosctl/{version}/{path}: one talosctl binary as an attachment named as asked,
// with Range, ETag (its digest) and X-Content-Sha256 like any asset.
func (a *API) talosctlFile(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "path")

	asset, err := a.Talosctl.TalosctlFile(r.Context(), chi.URLParam(r, "version"), name)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}
	defer asset.Close()

	h := w.Header()
	h.Set("Content-Type", talosctlMediaType(name))
	h.Set("Content-Disposition", `attachment; filename="`+dispositionName.Replace(name)+`"`)
	h.Set("ETag", `"`+asset.Digest()+`"`)
	h.Set("X-Content-Sha256", strings.TrimPrefix(asset.Digest(), "sha256:"))

	frontends.ServeAsset(w, r, asset)
}

// talosctlMediaType is the official service's Content-Type for a talosctl binary: mime.TypeByExtension of its
// extension (.exe). Without an extension the official service sets none and Go sniffs the body, which for a
// binary is application/octet-stream; that is set here outright, since a copy still arriving from a peer is
// streamed before its first bytes could be sniffed.
func talosctlMediaType(name string) string {
	if ext := path.Ext(name); ext != "" {
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
	}

	return "application/octet-stream"
}
