package netboot

import (
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
)

// MountBinaries serves the iPXE binaries at GET /ipxe/{name}, for UEFI HTTP Boot and for operators: only the three
// names, 404 for anything else.
func MountBinaries(bin fs.FS) frontends.Mount {
	return func(r chi.Router) {
		r.Get("/ipxe/{name}", func(w http.ResponseWriter, req *http.Request) {
			serveBinary(w, req, bin, chi.URLParam(req, "name"))
		})
	}
}

func serveBinary(w http.ResponseWriter, r *http.Request, bin fs.FS, name string) {
	if !slices.Contains(binaries, name) {
		http.NotFound(w, r)

		return
	}

	f, err := bin.Open(name)
	if err != nil {
		http.NotFound(w, r)

		return
	}
	defer f.Close()

	st, err := f.Stat()
	if err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)

		return
	}

	w.Header().Set("Content-Type", "application/octet-stream")

	if rs, ok := f.(io.ReadSeeker); ok {
		http.ServeContent(w, r, name, st.ModTime(), rs)

		return
	}

	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	io.Copy(w, f) //nolint:errcheck // the client hung up; nothing to do
}
