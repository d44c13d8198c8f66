package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCurlResume interrupts a download and lets a real client resume it: `curl -C -` continues from the bytes it
// has with a Range request, and the finished file matches the asset's published sha256.
func TestCurlResume(t *testing.T) {
	RequireBuilds(t, "curl")

	dev := StartDev(t)

	id := dev.CreateSchematic(t, "customization: {}\n")

	url := dev.URL + "/image/" + id + "/v1.13.0/metal-amd64.iso"

	head, err := http.Head(url)
	require.NoError(t, err)
	head.Body.Close()
	require.Equal(t, http.StatusOK, head.StatusCode)

	want := head.Header.Get("X-Content-Sha256")
	require.Len(t, want, 64)

	// The first third arrived before the connection dropped.
	file := filepath.Join(t.TempDir(), "metal-amd64.iso")
	partial, err := http.Get(url)
	require.NoError(t, err)

	f, err := os.Create(file)
	require.NoError(t, err)
	_, err = io.CopyN(f, partial.Body, partial.ContentLength/3)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	partial.Body.Close()

	out, err := exec.Command("curl", "-fsS", "-C", "-", "-o", file, "-w", "%{http_code} %{size_download}", url).CombinedOutput()
	require.NoError(t, err, "%s", out)

	fields := strings.Fields(string(out))
	require.Equal(t, "206", fields[0], "curl resumed with a range request")
	require.NotEqual(t, fields[1], "0")

	data, err := os.ReadFile(file)
	require.NoError(t, err)

	sum := sha256.Sum256(data)
	require.Equal(t, want, hex.EncodeToString(sum[:]), "the resumed file is the asset")
}
