// Package api serves the Image Factory HTTP API (docs/api.md §1, §2, §6, §7): schematics, the release catalog, boot
// assets, talosctl downloads, health. It is wire format only; the node behind the interfaces decides everything.
//
// It also serves the predecessor image-service's names for the same things: a "flavor" is a schematic (POST
// /flavors and GET /flavors/{id} run the schematic handlers; only the POST answer's shape differs), and its board
// paths under /image are parsed by the recipe package like any other path.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// MaxSchematicBytes bounds a POST /schematics (or /flavors) body (the official service has no bound).
const MaxSchematicBytes = 1 << 20

// API holds what the handlers need.
type API struct {
	Schematics frontends.Schematics
	Catalog    frontends.Catalog
	Assets     frontends.Assets
	Talosctl   frontends.Talosctl
	Health     frontends.Health
	Mirrors    frontends.Mirrors // nil: no registry mirror patches
	Logger     *slog.Logger
	// ExternalURL is the base of the absolute URLs the API hands out (the talosctl listing), e.g.
	// "http://factory.site.example:8080", without a trailing slash.
	ExternalURL string
}

// Mount registers the API's routes.
func (a *API) Mount(r chi.Router) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}

	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	r.Get("/readyz", a.readyz)
	r.Post("/schematics", a.createSchematic(schematicCreated))
	r.Get("/schematics/{id}", a.getSchematic)
	r.Post("/flavors", a.createSchematic(flavorCreated))
	r.Get("/flavors/{id}", a.getSchematic)
	r.Get("/versions", a.versions)
	r.Get("/version/{version}/extensions/official", a.extensions)
	r.Get("/version/{version}/overlays/official", a.overlays)
	r.Get("/image/{schematic}/{version}/{path}", a.image)
	r.Get("/secureboot/signing-cert.pem", a.secureBootCert)
	r.Get("/talosctl/{version}", a.talosctlList)
	r.Get("/talosctl/{version}/{path}", a.talosctlFile)

	if a.Mirrors != nil {
		r.Get("/talos/registry-mirrors.yaml", a.registryMirrors)
	}
}

// registryMirrors answers the machine-configuration patch pointing machines of ?version= at the cluster's
// registry (RegistryMirrorConfig documents).
func (a *API) registryMirrors(w http.ResponseWriter, r *http.Request) {
	version := r.URL.Query().Get("version")
	if version == "" {
		frontends.WriteError(w, r, a.Logger, frontends.NewError(frontends.ClassInvalid,
			"name the Talos version the machines run: /talos/registry-mirrors.yaml?version=v1.13.0", nil))

		return
	}

	patch, err := a.Mirrors.RegistryMirrorPatch(r.Context(), version)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	w.Header().Set("Content-Type", "application/yaml")
	w.Write(patch) //nolint:errcheck,gosec // the client hung up; G705: YAML built from records, served as YAML
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.Health.Ready(r.Context()); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)

		return
	}

	w.WriteHeader(http.StatusOK)
}

// createSchematic stores the schematic in the body (YAML or JSON) and answers with answer's rendering of the result,
// 201 Created, also when it already existed. The schematic and flavor routes differ only in that answer.
func (a *API) createSchematic(answer func(id string, canonical []byte) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSchematicBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				err = frontends.NewError(frontends.ClassTooLarge, "schematic body is larger than the 1 MiB limit", err)
			}

			frontends.WriteError(w, r, a.Logger, err)

			return
		}

		s, err := schematic.Unmarshal(body)
		if err != nil {
			frontends.WriteError(w, r, a.Logger, err)

			return
		}

		id, canonical, err := a.Schematics.CreateSchematic(r.Context(), s)
		if err != nil {
			frontends.WriteError(w, r, a.Logger, err)

			return
		}

		writeJSON(w, http.StatusCreated, answer(id, canonical))
	}
}

// schematicCreated is the official POST /schematics answer: the ID and the canonical YAML.
func schematicCreated(id string, canonical []byte) any {
	return struct {
		ID        string `json:"id"`
		Schematic string `json:"schematic"`
	}{id, string(canonical)}
}

// flavorCreated is the image-service's POST /flavors answer: the ID only.
func flavorCreated(id string, _ []byte) any {
	return struct {
		ID string `json:"id"`
	}{id}
}

func (a *API) getSchematic(w http.ResponseWriter, r *http.Request) {
	yaml, err := a.Schematics.Schematic(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		if frontends.Classify(err) == frontends.ClassNotFound {
			// the official handler's own literal text
			http.Error(w, "schematic not found", http.StatusNotFound)

			return
		}

		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	w.Write(yaml) //nolint:errcheck,gosec // the client hung up; nothing to do. YAML, not HTML: no XSS (G705)
}

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	list := a.Catalog.Versions
	if r.URL.Query().Get("broken") == "true" {
		list = a.Catalog.BrokenVersions
	}

	versions, err := list(r.Context())
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	// an empty broken list is null, as in the official service; an empty version list is []
	if versions == nil && r.URL.Query().Get("broken") != "true" {
		versions = []string{}
	}

	writeJSON(w, http.StatusOK, versions)
}

func (a *API) extensions(w http.ResponseWriter, r *http.Request) {
	exts, err := a.Catalog.Extensions(r.Context(), chi.URLParam(r, "version"))
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	writeJSON(w, http.StatusOK, nonNil(exts))
}

func (a *API) overlays(w http.ResponseWriter, r *http.Request) {
	overlays, err := a.Catalog.Overlays(r.Context(), chi.URLParam(r, "version"))
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	writeJSON(w, http.StatusOK, nonNil(overlays))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}

	return s
}

// writeJSON answers with v encoded as json.Encoder does (trailing newline) and the JSON content type.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck,errchkjson // plain answer types; only a gone client fails
}
