package imports

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
)

// API serves the import routes.
type API struct {
	Importer Importer
	// Secret, when set, must be presented as a bearer token.
	Secret string
	Logger *slog.Logger
}

// maxRequest bounds the JSON bodies (a bundle of thousands of images stays far below it).
const maxRequest = 64 << 20

// Mount registers the import routes.
func (a *API) Mount(r chi.Router) {
	r.Route(Prefix, func(r chi.Router) {
		r.Use(a.authenticate)
		r.Post("/plan", a.plan)
		r.Put("/{session}/blobs/{digest}", a.blob)
		r.Post("/{session}/commit", a.commit)
	})
}

func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Secret != "" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+a.Secret)) != 1 {
			http.Error(w, "import: missing or wrong cluster secret (edgefactory import --cluster-secret)",
				http.StatusForbidden)

			return
		}

		next.ServeHTTP(w, r)
	})
}

func (a *API) plan(w http.ResponseWriter, r *http.Request) {
	var req PlanRequest
	if !decode(w, r, &req) {
		return
	}

	res, err := a.Importer.Plan(r.Context(), req)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	writeJSON(w, http.StatusOK, res)
}

func (a *API) blob(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "import: a blob is sent with its Content-Length", http.StatusLengthRequired)

		return
	}

	if err := a.Importer.PutBlob(r.Context(), chi.URLParam(r, "session"), chi.URLParam(r, "digest"), size,
		r.Body); err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	w.WriteHeader(http.StatusCreated)
}

func (a *API) commit(w http.ResponseWriter, r *http.Request) {
	var req CommitRequest
	if !decode(w, r, &req) {
		return
	}

	res, err := a.Importer.Commit(r.Context(), chi.URLParam(r, "session"), req)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	writeJSON(w, http.StatusOK, res)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(v); err != nil {
		http.Error(w, "import: bad request body: "+err.Error(), http.StatusBadRequest)

		return false
	}

	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck,errchkjson // the client hung up
}
