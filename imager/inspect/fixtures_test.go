package inspect

import (
	"bytes"
	"compress/gzip"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// cpioOf writes a newc archive (with trailer) holding recs, built with u-root's writer.
func cpioOf(t *testing.T, recs ...cpio.Record) []byte {
	t.Helper()

	var buf bytes.Buffer

	w := cpio.Newc.Writer(&buf)
	require.NoError(t, cpio.WriteRecords(w, recs))
	require.NoError(t, cpio.WriteTrailer(w))

	return buf.Bytes()
}

func xzOf(t *testing.T, data []byte, cfg xz.WriterConfig) []byte {
	t.Helper()

	var buf bytes.Buffer

	w, err := cfg.NewWriter(&buf)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	return buf.Bytes()
}

func zstdOf(t *testing.T, data []byte, opts ...zstd.EOption) []byte {
	t.Helper()

	var buf bytes.Buffer

	w, err := zstd.NewWriter(&buf, opts...)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()

	var buf bytes.Buffer

	w := gzip.NewWriter(&buf)
	_, err := w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	return buf.Bytes()
}

// randomBytes is incompressible data (seeded), so compressors emit stored/raw chunks.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)

	for i := range b {
		b[i] = byte(r.Uint32())
	}

	return b
}

// needTool skips the test when a host tool is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()

	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}

	return p
}

// run runs a host tool with stdin and returns its stdout.
func run(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()

	cmd := exec.Command(needTool(t, name), args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)

	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	out, err := cmd.Output()
	require.NoError(t, err, "%s %v: %s", name, args, stderr.String())

	return out
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()

	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o644))

	return p
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
