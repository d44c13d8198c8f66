package frontends_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/edgefactory/edgefactory/frontends"
)

// Every class reaches the client with its status; a full disk, however deeply wrapped, is 507 and says so.
func TestWriteErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		says   string
	}{
		{"invalid", frontends.NewError(frontends.ClassInvalid, "bad schematic", nil), http.StatusBadRequest,
			"bad schematic"},
		{"not found", frontends.NewError(frontends.ClassNotFound, "no such version", nil), http.StatusNotFound,
			"no such version"},
		{"unavailable", frontends.NewError(frontends.ClassUnavailable, "no leader", nil),
			http.StatusServiceUnavailable, "no leader"},
		{"disk full", fmt.Errorf("build failed: commit blob: %w",
			&fs.PathError{Op: "write", Path: "/data/cas/tmp/blob-1", Err: syscall.ENOSPC}),
			http.StatusInsufficientStorage, "data disk is full"},
		{"quota", fmt.Errorf("store: %w", syscall.EDQUOT), http.StatusInsufficientStorage, "data disk is full"},
		{"other", errors.New("boom"), http.StatusInternalServerError, "boom (request ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/image/x", nil)

			frontends.WriteError(rec, req, slog.New(slog.DiscardHandler), tc.err)
			assert.Equal(t, tc.status, rec.Code)
			assert.Contains(t, rec.Body.String(), tc.says)
		})
	}
}
