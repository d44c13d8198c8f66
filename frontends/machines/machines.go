package machines

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/frontends"
)

// maxProfileBytes bounds a profile document: a few selectors and kernel arguments.
const maxProfileBytes = 64 << 10

// API serves the machine table.
type API struct {
	Table  Table
	Logger *slog.Logger
}

// Mount registers the routes.
func (a *API) Mount(r chi.Router) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}

	r.Get("/machines/profiles", a.list)
	r.Get("/machines/profiles/{name}", a.get)
	r.Put("/machines/profiles/{name}", a.put)
	r.Delete("/machines/profiles/{name}", a.remove)
	r.Get("/machines/seen", a.seen)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	profiles, err := a.Table.Profiles(r.Context())
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	if profiles == nil {
		profiles = []Profile{}
	}

	frontends.WriteDocument(w, r, http.StatusOK, profiles)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	p, err := a.Table.Profile(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	frontends.WriteDocument(w, r, http.StatusOK, p)
}

func (a *API) put(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")

	p, err := decode(http.MaxBytesReader(w, r.Body, maxProfileBytes), r.Header.Get("Content-Type"))
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	stored, created, err := a.Table.PutProfile(r.Context(), name, p)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}

	frontends.WriteDocument(w, r, status, stored)
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) {
	if err := a.Table.DeleteProfile(r.Context(), chi.URLParam(r, "name")); err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	w.WriteHeader(http.StatusNoContent)
}

func (a *API) seen(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("member") == "self" {
		frontends.WriteDocument(w, r, http.StatusOK, append([]Boot{}, a.Table.LocalSeen()...))

		return
	}

	boots, err := a.Table.Seen(r.Context())
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	if boots == nil {
		boots = []Boot{}
	}

	frontends.WriteDocument(w, r, http.StatusOK, boots)
}

// decode reads a profile as JSON or YAML (by Content-Type, else by its first character), refusing unknown fields
// so a misspelt selector is an error rather than a profile that matches every machine.
func decode(body io.Reader, contentType string) (Profile, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return Profile{}, frontends.NewError(frontends.ClassTooLarge,
				fmt.Sprintf("profile larger than %d bytes", maxProfileBytes), err)
		}

		return Profile{}, fmt.Errorf("read profile: %w", err)
	}

	var p Profile

	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return Profile{}, invalid("empty profile: send JSON or YAML with selectors, schematic and version", nil)
	}

	if isJSON(contentType, trimmed) {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()

		if err := dec.Decode(&p); err != nil {
			return Profile{}, invalid("invalid profile JSON: "+err.Error(), err)
		}

		return p, nil
	}

	dec := yaml.NewDecoder(bytes.NewReader(trimmed))
	dec.KnownFields(true)

	if err := dec.Decode(&p); err != nil {
		return Profile{}, invalid("invalid profile YAML: "+err.Error(), err)
	}

	return p, nil
}

func isJSON(contentType string, body []byte) bool {
	switch {
	case strings.Contains(contentType, "json"):
		return true
	case strings.Contains(contentType, "yaml"):
		return false
	default:
		return body[0] == '{'
	}
}

func invalid(msg string, cause error) error {
	return frontends.NewError(frontends.ClassInvalid, msg, cause)
}
