package frontends

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Status is the HTTP status code for an error class.
func Status(c Class) int {
	switch c {
	case ClassInvalid:
		return http.StatusBadRequest
	case ClassNotFound:
		return http.StatusNotFound
	case ClassTooLarge:
		return http.StatusRequestEntityTooLarge
	case ClassUnavailable:
		return http.StatusServiceUnavailable
	case ClassCanceled:
		return 499 // client went away; nothing is written
	case ClassNoSpace:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

// WriteError answers a plain-text error the way the Image Factory API does (http.Error: text/plain, nosniff,
// message and newline). Server failures add the request ID so an operator can find the log lines, and are logged.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	class := Classify(err)
	status := Status(class)

	switch class {
	case ClassCanceled:
		return
	case ClassInternal, ClassUnavailable, ClassNoSpace:
		log.Error("request failed", "request_id", RequestID(r.Context()), "path", r.URL.Path, "status", status,
			"error", err)
	default: // the client's own errors (invalid, not found, too large) are answered, not logged
	}

	var retry interface{ RetryAfter() time.Duration }
	if errors.As(err, &retry) && class == ClassUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(retry.RetryAfter(), time.Second).Seconds())))
	}

	msg := err.Error()
	if class == ClassNoSpace {
		msg = "this member's data disk is full; nothing partial was kept, and it works again once space is freed " +
			"(--cache-size, --low-space-watermark): " + msg
	}

	if class == ClassInternal || class == ClassNoSpace {
		msg = fmt.Sprintf("%s (request ID %s)", msg, RequestID(r.Context()))
	}

	http.Error(w, msg, status)
}
