package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A go test -json stream: one package whose test skips for want of a tool, one whose test skips for want of root.
const stream = `{"Action":"run","Package":"p/a","Test":"TestTool"}
{"Action":"output","Package":"p/a","Test":"TestTool","Output":"=== RUN   TestTool\n"}
{"Action":"output","Package":"p/a","Test":"TestTool","Output":"    a_test.go:9: qemu not found: run make deps\n"}
{"Action":"output","Package":"p/a","Test":"TestTool","Output":"--- SKIP: TestTool (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestTool"}
{"Action":"output","Package":"p/a","Output":"ok  \tp/a\t0.1s\n"}
{"Action":"pass","Package":"p/a"}
{"Action":"run","Package":"p/b","Test":"TestRoot"}
{"Action":"output","Package":"p/b","Test":"TestRoot","Output":"    b_test.go:3: mounting needs root\n"}
{"Action":"skip","Package":"p/b","Test":"TestRoot"}
{"Action":"pass","Package":"p/b"}
`

func TestRecordAndSummary(t *testing.T) {
	t.Setenv("EDGEFACTORY_TEST_RECORD", t.TempDir())

	var out bytes.Buffer
	require.NoError(t, record([]string{"test-x"}, strings.NewReader(stream), &out))
	assert.Equal(t, "ok  \tp/a\t0.1s\n", out.String(), "without -v: the package lines only")

	allowed := filepath.Join(t.TempDir(), "allowed")
	require.NoError(t, os.WriteFile(allowed, []byte("# machine\nneeds root\n"), 0o600))

	out.Reset()
	err := summary([]string{"-allowed", allowed}, &out)
	require.Error(t, err, "a skip for want of a tool must fail the summary")
	assert.Contains(t, out.String(), "skip UNEXPECTED p/a TestTool: a_test.go:9: qemu not found: run make deps")
	assert.Contains(t, out.String(), "skip allowed    p/b TestRoot: b_test.go:3: mounting needs root")

	require.NoError(t, os.WriteFile(allowed, []byte("needs root\nqemu not found\n"), 0o600))
	out.Reset()
	require.NoError(t, summary([]string{"-allowed", allowed}, &out), out.String())

	out.Reset()
	require.Error(t, summary([]string{"-allowed", allowed, "-expect", "test-x,test-boot"}, &out))
	assert.Contains(t, out.String(), "suite test-boot (never ran)")
}

func TestRecordFails(t *testing.T) {
	t.Setenv("EDGEFACTORY_TEST_RECORD", t.TempDir())

	failing := `{"Action":"run","Package":"p/c","Test":"TestX"}
{"Action":"output","Package":"p/c","Test":"TestX","Output":"    c_test.go:1: boom\n"}
{"Action":"fail","Package":"p/c","Test":"TestX"}
{"Action":"fail","Package":"p/c"}
`

	var out bytes.Buffer
	require.Error(t, record([]string{"test-y"}, strings.NewReader(failing), &out))
	assert.Contains(t, out.String(), "c_test.go:1: boom", "a failed test's output is printed")
	require.Error(t, summary(nil, &out), "a failed suite fails the summary")
}
