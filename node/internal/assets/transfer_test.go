package assets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

type transferCase struct {
	name     string
	data     []byte
	digest   string
	complete bool
}

// TestTransferStreams serves a copy while it arrives in pieces, through an HTTP server as a client download would
// go (sendfile from the copy's file): the client gets every byte, zero blocks at the end of a piece included, and
// the last byte only after verification; a copy that does not match its digest ends the response short.
func TestTransferStreams(t *testing.T) {
	store, err := cas.Open(t.TempDir(), cas.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	// A size that ends mid-block keeps its tail pending in the writer; a block-aligned one does not, so only the
	// verification gate holds its last byte back.
	var cases []transferCase

	for _, size := range []int{3<<20 + 777, 3 << 20} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{3, 4}).Read(data) //nolint:errcheck // never fails
		clear(data[1<<20 : 2<<20])                 // zero blocks the writer skips, at the end of a piece
		clear(data[len(data)-100_000:])            // and at the very end

		sum := sha256.Sum256(data)
		good := "sha256:" + hex.EncodeToString(sum[:])
		cases = append(cases,
			transferCase{fmt.Sprintf("verified-%d", size), data, good, true},
			transferCase{fmt.Sprintf("corrupt-%d", size), data, "sha256:" + hex.EncodeToString(make([]byte, 32)), false})
	}

	for _, tc := range cases {
		data := tc.data

		t.Run(tc.name, func(t *testing.T) {
			w, err := store.Create(tc.digest, int64(len(data)))
			require.NoError(t, err)

			tr := newTransfer(raftstore.AssetRecord{Digest: tc.digest, Size: int64(len(data))}, w)
			fed := make(chan error, 1)
			srv := serveTransfer(t, tr)

			resp, err := http.Get(srv.URL)
			require.NoError(t, err)

			defer resp.Body.Close()

			go func() { fed <- feed(tr, w, store, data) }()

			got, err := io.ReadAll(resp.Body)
			if tc.complete {
				require.NoError(t, err)
				require.Equal(t, data, got)
				require.NoError(t, <-fed)
				require.True(t, store.Has(tc.digest))

				return
			}

			require.Error(t, err, "a corrupt copy must not reach the client whole")
			require.Less(t, len(got), len(data))
			require.Equal(t, data[:len(got)], got, "what went out was what arrived")
			require.ErrorIs(t, <-fed, cas.ErrDigestMismatch)
		})
	}
}

// TestTransferRangeWaitsForVerification: a part of a copy still arriving is sent only once the whole copy has
// matched its digest (a part need not include the last byte, which is what holds a whole download back): a part
// of a corrupt copy never goes out as a complete 206.
func TestTransferRangeWaitsForVerification(t *testing.T) {
	store, err := cas.Open(t.TempDir(), cas.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{5, 6}).Read(data) //nolint:errcheck // never fails
	sum := sha256.Sum256(data)

	for _, tc := range []transferCase{
		{"verified", data, "sha256:" + hex.EncodeToString(sum[:]), true},
		{"corrupt", data, "sha256:" + hex.EncodeToString(make([]byte, 32)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := store.Create(tc.digest, int64(len(data)))
			require.NoError(t, err)

			tr := newTransfer(raftstore.AssetRecord{Digest: tc.digest, Size: int64(len(data))}, w)
			srv := serveTransfer(t, tr)

			// The first piece has arrived: the part asked for is there, unverified.
			_, err = w.Write(data[:1<<20])
			require.NoError(t, err)
			tr.progress()

			type answer struct {
				status int
				body   []byte
				err    error
			}

			answered := make(chan answer, 1)

			go func() {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
				if err != nil {
					answered <- answer{err: err}

					return
				}

				req.Header.Set("Range", "bytes=100-199")

				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- answer{err: err}

					return
				}
				defer resp.Body.Close()

				body, err := io.ReadAll(resp.Body)
				answered <- answer{resp.StatusCode, body, err}
			}()

			// The request is held: it waits on the transfer, and nothing has been answered.
			require.Eventually(t, func() bool {
				tr.mu.Lock()
				defer tr.mu.Unlock()

				return tr.waiting > 0
			}, 10*time.Second, time.Millisecond, "the part asked for was not held back")

			select {
			case a := <-answered:
				t.Fatalf("the part of an unverified copy went out: %d %q %v", a.status, a.body, a.err)
			default:
			}

			fed := feed(tr, w, store, data[1<<20:])
			a := <-answered

			if tc.complete {
				require.NoError(t, fed)
				require.NoError(t, a.err)
				require.Equal(t, http.StatusPartialContent, a.status)
				require.Equal(t, data[100:200], a.body)

				return
			}

			require.ErrorIs(t, fed, cas.ErrDigestMismatch)
			require.False(t, a.err == nil && a.status == http.StatusPartialContent && len(a.body) == 100,
				"a part of a corrupt copy went out complete: %d %q", a.status, a.body)
		})
	}
}

// serveTransfer serves tr to HTTP clients as a frontend serves an asset.
func serveTransfer(t *testing.T, tr *transfer) *httptest.Server {
	t.Helper()

	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		a := newTransferAsset(r.Context(), tr)
		defer a.Close()

		rw.Header().Set("Content-Type", "application/octet-stream")
		frontends.ServeAsset(rw, r, a)
	}))
	t.Cleanup(srv.Close)

	return srv
}

// feed writes data into the copy in 1 MiB pieces, as they would arrive from a peer, then completes it and drops
// the fetcher's reference.
func feed(tr *transfer, w *cas.Writer, store *cas.Store, data []byte) error {
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			return err
		}

		tr.progress()
		time.Sleep(20 * time.Millisecond)
	}

	err := tr.complete(store)
	tr.closeReader()

	return err
}
