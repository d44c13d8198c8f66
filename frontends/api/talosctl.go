package api

import (
	"net/http"
	"net/url"
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

	serveDownload(w, r, asset, name)
}
