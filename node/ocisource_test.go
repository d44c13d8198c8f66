package node_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// stoppableUpstream serves the synthetic release (stand-in parts) until stop is called or the test ends.
func stoppableUpstream(t testing.TB) (addr string, stop func()) {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	s, err := synthetic.Start(context.Background(), ln, synthetic.Options{Parts: synthetic.StandInParts()})
	require.NoError(t, err)

	var once sync.Once

	stop = func() { once.Do(func() { require.NoError(t, s.Close()) }) }
	t.Cleanup(stop)

	return s.Addr, stop
}

// TestSourceImages: the release's source images are read through a node from the upstream registry and cached;
// once the upstream is gone (an isolated site), another member serves them from the copies the first one recorded.
func TestSourceImages(t *testing.T) {
	reg, stopUpstream := stoppableUpstream(t)
	c := startCluster(t, reg, 2)
	a, b := c.live()[0], c.live()[1]

	sourceRef := func(m *member, repo, tag string) name.Reference {
		r, err := name.ParseReference(strings.TrimPrefix(m.base, "http://")+"/siderolabs/"+repo+":"+tag, name.Insecure)
		require.NoError(t, err)

		return r
	}

	pulled := map[string]string{} // repo → index digest

	for _, repo := range []string{"imager", "installer-base"} {
		upstreamRef, err := name.ParseReference(reg+"/siderolabs/"+repo+":v1.13.0", name.Insecure)
		require.NoError(t, err)

		want, err := remote.Head(upstreamRef)
		require.NoError(t, err)

		idx, err := remote.Index(sourceRef(a, repo, "v1.13.0"))
		require.NoError(t, err)

		got, err := idx.Digest()
		require.NoError(t, err)
		assert.Equal(t, want.Digest, got, "%s: the upstream's index, byte for byte", repo)
		require.NoError(t, validate.Index(idx), "%s through %s", repo, a.name)

		pulled[repo] = got.String()
	}

	t.Run("raw manifest and blob", func(t *testing.T) {
		resp := a.do(t, "GET", "/v2/siderolabs/imager/manifests/v1.13.0", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, pulled["imager"], resp.Header.Get("Docker-Content-Digest"))
		assert.Equal(t, pulled["imager"], "sha256:"+sha256Hex(resp.Body))

		head := a.do(t, "HEAD", "/v2/siderolabs/imager/manifests/v1.13.0", "", nil)
		assert.Equal(t, http.StatusOK, head.StatusCode)
		assert.Empty(t, head.Body)
		assert.Equal(t, pulled["imager"], head.Header.Get("Docker-Content-Digest"))

		blob := imagerLayer(t, a)
		resp = a.do(t, "GET", "/v2/siderolabs/imager/blobs/"+blob, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, blob, "sha256:"+sha256Hex(resp.Body))
	})

	t.Run("tags", func(t *testing.T) {
		resp := a.do(t, "GET", "/v2/siderolabs/imager/tags/list", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Contains(t, resp.Body, `"v1.13.0"`)
		assert.Contains(t, resp.Body, `"name":"siderolabs/imager"`)
	})

	t.Run("unknown tag", func(t *testing.T) {
		resp := a.do(t, "GET", "/v2/siderolabs/imager/manifests/v9.9.9", "", nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, resp.Body)
		assert.Equal(t, "MANIFEST_UNKNOWN", registryError(t, resp))
	})

	for _, d := range append([]string{imagerLayer(t, a)}, pulled["imager"]) {
		require.False(t, b.HasBlob(d), "%s never read %s", b.name, d)
	}

	stopUpstream()

	t.Run("an isolated site", func(t *testing.T) {
		// The copies' records and the tags are committed in the background; they reach b shortly.
		for _, repo := range []string{"imager", "installer-base"} {
			var lastErr error

			ok := waitFor(20*time.Second, func() bool {
				idx, err := remote.Index(sourceRef(b, repo, "v1.13.0"))
				if err == nil {
					err = validate.Index(idx)
				}

				if err == nil {
					d, _ := idx.Digest()
					assert.Equal(t, pulled[repo], d.String())
				}

				lastErr = err

				return err == nil
			})
			require.True(t, ok, "%s serves %s without the upstream: %v", b.name, repo, lastErr)
		}

		resp := b.do(t, "GET", "/v2/siderolabs/imager/manifests/v1.13.0", "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
		assert.Equal(t, pulled["imager"], resp.Header.Get("Docker-Content-Digest"))

		blob := imagerLayer(t, b)
		resp = b.do(t, "GET", "/v2/siderolabs/imager/blobs/"+blob, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, blob, "sha256:"+sha256Hex(resp.Body))
	})

	t.Run("a stalled upstream", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits out the upstream timeout (5 s); skipped with -short")
		}

		// Something at the upstream's address accepts connections and never answers (a firewall, a hung
		// registry): a cached tag is still served, after a bounded wait.
		ln, err := net.Listen("tcp", reg)
		require.NoError(t, err)

		var (
			mu   sync.Mutex
			held []net.Conn
		)

		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}

				mu.Lock()
				held = append(held, conn)
				mu.Unlock()
			}
		}()

		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()

			for _, c := range held {
				c.Close()
			}
		})

		client := &http.Client{Timeout: 30 * time.Second}
		start := time.Now()

		resp, err := client.Get(a.base + "/v2/siderolabs/imager/manifests/v1.13.0")
		require.NoError(t, err, "the node answers despite the stalled upstream")
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, pulled["imager"], resp.Header.Get("Docker-Content-Digest"))
		t.Logf("answered in %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("what nobody cached is unavailable", func(t *testing.T) {
		resp := b.do(t, "GET", "/v2/siderolabs/imager/manifests/v1.12.0", "", nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, resp.Body)
		assert.Equal(t, "UNAVAILABLE", registryError(t, resp))
	})
}

// imagerLayer is the first layer of the amd64 imager image of v1.13.0, as a node serves it.
func imagerLayer(t testing.TB, m *member) string {
	t.Helper()

	r, err := name.ParseReference(strings.TrimPrefix(m.base, "http://")+"/siderolabs/imager:v1.13.0", name.Insecure)
	require.NoError(t, err)

	img, err := remote.Image(r)
	require.NoError(t, err)

	layers, err := img.Layers()
	require.NoError(t, err)
	require.NotEmpty(t, layers)

	d, err := layers[0].Digest()
	require.NoError(t, err)

	return d.String()
}
