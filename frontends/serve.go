package frontends

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// A Streamer is the content of an asset that is still arriving (a copy from a peer): it sends the rest of the asset
// to w as the bytes become available, in fewer and larger steps than a reader fed by http.ServeContent.
type Streamer interface {
	StreamTo(w io.Writer) (int64, error)
}

// ServeAsset answers a request for an asset's bytes. The caller sets Content-Type and the ETag (the asset's digest).
// http.ServeContent answers Range, If-Range, If-Match and If-None-Match against that ETag and HEAD, and sends stored
// files with sendfile; a plain GET of an asset that is still arriving is streamed by the asset itself. A zero
// modification time keeps Last-Modified out: the ETag is the validator.
func ServeAsset(w http.ResponseWriter, r *http.Request, a Asset) {
	content := a.Content()

	s, ok := content.(Streamer)
	if !ok || r.Method != http.MethodGet || conditional(r) {
		http.ServeContent(w, r, "", time.Time{}, content)

		return
	}

	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(a.Size(), 10))
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush() //nolint:errcheck // headers go out now: the client knows it is coming

	// A failure (the client left, or the copy turned out corrupt) ends the response short: the client sees a
	// failed download, never a complete wrong one.
	s.StreamTo(w) //nolint:errcheck // nothing more can be told to the client
}

// conditional reports whether the request asks for part of the content or makes the answer depend on a validator.
func conditional(r *http.Request) bool {
	for _, name := range []string{"Range", "If-Range", "If-Match", "If-None-Match"} {
		if r.Header.Get(name) != "" {
			return true
		}
	}

	return false
}
