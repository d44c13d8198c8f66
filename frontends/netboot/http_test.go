package netboot

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
)

func TestMountBinaries(t *testing.T) {
	t.Parallel()

	bin := testBinaries()
	srv := httptest.NewServer(frontends.NewRouter(frontends.RouterOptions{}, MountBinaries(bin)))
	t.Cleanup(srv.Close)

	for _, name := range []string{BIOSBinary, UEFIx64Binary, UEFIarm64Binary} {
		resp, err := http.Get(srv.URL + "/ipxe/" + name)
		require.NoError(t, err)

		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, name)
		assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, bin[name].Data, body, name)
	}

	// Firmware resumes downloads with ranges.
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/ipxe/"+UEFIarm64Binary, nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=5-")

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)

	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, "arm64", string(body))

	for _, path := range []string{"/ipxe/boot.ipxe", "/ipxe/..%2fundionly.kpxe", "/ipxe/UNDIONLY.KPXE", "/ipxe/"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}
