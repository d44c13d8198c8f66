package node

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/raftstore"
)

// TestTransferStreams serves a copy while it arrives in pieces, through an HTTP server as a client download would
// go (sendfile from the copy's file): the client gets every byte, zero blocks at the end of a piece included, and
// the last byte only after verification; a copy that does not match its digest ends the response short.
func TestTransferStreams(t *testing.T) {
	data := make([]byte, 3<<20+777)
	rand.NewChaCha8([32]byte{3, 4}).Read(data) //nolint:errcheck // never fails
	clear(data[1<<20 : 2<<20])                 // zero blocks the writer skips, at the end of a piece
	clear(data[len(data)-100_000:])            // and at the very end

	sum := sha256.Sum256(data)
	good := "sha256:" + hex.EncodeToString(sum[:])

	store, err := cas.Open(t.TempDir(), cas.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	for _, tc := range []struct {
		name, digest string
		complete     bool
	}{
		{"verified", good, true},
		{"corrupt", "sha256:" + hex.EncodeToString(make([]byte, 32)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := store.Create(tc.digest, int64(len(data)))
			require.NoError(t, err)

			tr := newTransfer(raftstore.AssetRecord{Digest: tc.digest, Size: int64(len(data))}, w)
			fed := make(chan error, 1)

			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				a := newTransferAsset(r.Context(), tr)
				defer a.Close()

				rw.Header().Set("Content-Type", "application/octet-stream")
				frontends.ServeAsset(rw, r, a)
			}))
			t.Cleanup(srv.Close)

			resp, err := http.Get(srv.URL) //nolint:noctx // test
			require.NoError(t, err)

			defer resp.Body.Close()

			go func() {
				for off := 0; off < len(data); off += 1 << 20 {
					_, err := w.Write(data[off:min(off+1<<20, len(data))])
					if err != nil {
						fed <- err

						return
					}

					tr.progress()
					time.Sleep(20 * time.Millisecond)
				}

				fed <- tr.complete(store)
				tr.closeReader() // the fetcher's reference
			}()

			got, err := io.ReadAll(resp.Body)
			if tc.complete {
				require.NoError(t, err)
				require.Equal(t, data, got)
				require.NoError(t, <-fed)
				require.True(t, store.Has(good))

				return
			}

			require.Error(t, err, "a corrupt copy must not reach the client whole")
			require.Less(t, len(got), len(data))
			require.Equal(t, data[:len(got)], got, "what went out was what arrived")
			require.ErrorIs(t, <-fed, cas.ErrDigestMismatch)
		})
	}
}
