package frontends

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// A Streamer is the content of an asset that is still arriving (a copy from a peer): it sends the rest of the asset
// to w as the bytes become available, in fewer and larger steps than a reader fed by http.ServeContent. Its bytes
// are verified against the digest only once all have arrived: the last byte waits for that, so a whole download
// of a corrupt copy ends short.
type Streamer interface {
	StreamTo(w io.Writer) (int64, error)
	// Verified waits until every byte has arrived and matched the digest; it fails if the copy did not.
	Verified(ctx context.Context) error
}

// A WholeOnly asset is answered in full whatever Range asks, while WholeOnly says so: a copy of it streamed by this
// node recently turned out corrupt after clients had its first bytes, and a client resuming such a download would
// complete a wrong file. A 200 makes it start over.
type WholeOnly interface {
	WholeOnly() bool
}

// ServeAsset answers a request for an asset's bytes. The caller sets Content-Type and the ETag (the asset's digest).
// http.ServeContent answers Range, If-Range, If-Match and If-None-Match against that ETag and HEAD, and sends stored
// files with sendfile; a plain GET of an asset that is still arriving is streamed by the asset itself. A zero
// modification time keeps Last-Modified out: the ETag is the validator.
func ServeAsset(w http.ResponseWriter, r *http.Request, a Asset) {
	if wo, ok := a.(WholeOnly); ok && wo.WholeOnly() && r.Header.Get("Range") != "" {
		r = r.Clone(r.Context())
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}

	content := a.Content()

	s, ok := content.(Streamer)
	if ok && r.Header.Get("Range") != "" {
		// A part of a copy still arriving: unlike a whole download, it need not include the last byte, so it
		// waits for the whole copy to be verified. If the copy fails, so do its reads: the response ends short.
		s.Verified(r.Context()) //nolint:errcheck // the reads below fail the same way
	}

	if !ok || r.Method != http.MethodGet || conditional(r) {
		http.ServeContent(w, r, "", time.Time{}, content)

		return
	}

	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(a.Size(), 10))
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush() // headers go out now: the client knows it is coming

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
