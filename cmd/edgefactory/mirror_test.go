package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/bundle"
)

// runMirror runs `edgefactory mirror args...` and returns its output (stdout and stderr together).
func runMirror(t *testing.T, args ...string) (string, error) {
	t.Helper()

	var out bytes.Buffer

	cmd := newMirrorCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true

	err := cmd.ExecuteContext(t.Context())

	return out.String(), err
}

func TestMirrorCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)

	addr := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(2048, 2)
	require.NoError(t, err)

	ref, err := name.ParseReference(addr + "/apps/web:v1")
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))

	to := filepath.Join(t.TempDir(), "site.tar")

	out, err := runMirror(t, "--extra-image", "example.org/apps/web:v1", "--source-map", "example.org="+addr,
		"--to", to, "--jobs", "2")
	require.NoError(t, err, out)
	assert.Contains(t, out, "mirrored 1 images (")
	assert.Contains(t, out, "mirror: 1 images of ghcr.io/siderolabs (0 versions: ) to "+to)

	b, err := bundle.Open(to)
	require.NoError(t, err)

	defer b.Close()

	require.NoError(t, b.Verify(t.Context()))
	assert.Equal(t, "example.org/apps/web:v1", b.Images()[0].Reference)
	assert.Equal(t, "edgefactory "+version, b.Manifest().Tool)
	assert.Equal(t, []string{"example.org=" + addr}, b.Manifest().SourceMap)
}

func TestMirrorCommandErrors(t *testing.T) {
	dir, files := t.TempDir(), t.TempDir()
	notDir := filepath.Join(files, "file")
	require.NoError(t, os.WriteFile(notDir, []byte("x"), 0o644))
	busy := filepath.Join(files, "busy")
	require.NoError(t, os.MkdirAll(busy, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("x"), 0o644))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"--versions", "v1.13.0"}, `required flag(s) "to" not set`},
		{"bad range", []string{"--versions", ">=banana", "--to", dir}, "neither a list of versions"},
		{"bad version list", []string{"--versions", "v1.13.0,v1.13", "--to", dir}, `"v1.13" is not a version`},
		{"nothing", []string{"--to", dir}, "nothing to mirror"},
		{"other scheme", []string{"--versions", "v1.13.0", "--to", "oci://somewhere"}, "only docker:// names a registry"},
		{"empty registry", []string{"--versions", "v1.13.0", "--to", "docker://"}, "no registry after docker://"},
		{"tar in no directory", []string{"--versions", "v1.13.0", "--to", filepath.Join(dir, "nope", "b.tar")}, "does not exist"},
		{"file as directory", []string{"--versions", "v1.13.0", "--to", notDir}, "is not a directory"},
		{"busy directory", []string{"--versions", "v1.13.0", "--to", busy}, "neither empty nor a bundle"},
		{"bad source map", []string{"--versions", "v1.13.0", "--to", dir, "--source-map", "registry.k8s.io"}, "ORIGIN=REGISTRY"},
		{"bad extra image", []string{"--extra-image", "ghcr.io/x/y", "--to", dir}, "want a tag or a digest"},
		{"bad from", []string{"--versions", "v1.13.0", "--to", dir, "--from", "ghcr.io/UPPER"}, "--from"},
		{"missing key", []string{"--versions", "v1.13.0", "--to", dir, "--public-key", filepath.Join(dir, "none.pub")}, "--public-key"},
		{"not a key", []string{"--versions", "v1.13.0", "--to", dir, "--public-key", notDir}, "no PEM public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runMirror(t, tc.args...)
			require.Error(t, err, out)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
