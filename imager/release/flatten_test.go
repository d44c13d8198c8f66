package release

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"
)

// TestEachRootFileVerifiesLayers: a layer whose last byte is not what the registry's digest says is caught, though
// that byte lies beyond the end of the layer's tar archive, where flattening alone stops reading.
func TestEachRootFileVerifiesLayers(t *testing.T) {
	var corrupt atomic.Bool

	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !corrupt.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			reg.ServeHTTP(w, r)

			return
		}

		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)

		body := rec.Body.Bytes()
		if len(body) > 0 && rec.Code == http.StatusOK && !bytes.HasPrefix(body, []byte("{")) { // a layer, not the config
			body[len(body)-1] ^= 0xff
		}

		for k, v := range rec.Header() {
			w.Header()[k] = v
		}

		w.WriteHeader(rec.Code)
		w.Write(body) //nolint:errcheck // test server
	}))
	t.Cleanup(srv.Close)

	var layer bytes.Buffer

	tw := tar.NewWriter(&layer)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "a", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())

	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	require.NoError(t, err)

	img, err := mutate.AppendLayers(empty.Image, l)
	require.NoError(t, err)

	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/test/flat:v1", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))

	read := func() (map[string]string, error) {
		pulled, err := remote.Image(ref)
		require.NoError(t, err)

		files := map[string]string{}
		err = eachRootFile(pulled, func(string) bool { return true }, func(name string, r io.Reader) error {
			b, err := io.ReadAll(r)
			files[name] = string(b)

			return err
		})

		return files, err
	}

	files, err := read()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "hello"}, files)

	corrupt.Store(true)

	_, err = read()
	require.Error(t, err, "a layer that does not match its digest is refused")
}
