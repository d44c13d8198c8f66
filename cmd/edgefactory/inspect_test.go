package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

const inspectSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// testInitramfs writes an initramfs shaped like a factory's initramfs-amd64.xz: an early microcode cpio, then an
// xz (CRC32) cpio holding extensions.yaml with one extension and the virtual schematic extension.
func testInitramfs(t *testing.T) string {
	t.Helper()

	archive := func(recs ...cpio.Record) []byte {
		var buf bytes.Buffer

		w := cpio.Newc.Writer(&buf)
		require.NoError(t, cpio.WriteRecords(w, recs))
		require.NoError(t, cpio.WriteTrailer(w))

		return buf.Bytes()
	}

	early := archive(cpio.StaticFile("kernel/x86/microcode/AuthenticAMD.bin", "ucode", 0o644))
	early = append(early, make([]byte, (512-len(early)%512)%512)...)

	var compressed bytes.Buffer

	xw, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&compressed)
	require.NoError(t, err)
	_, err = xw.Write(archive(
		cpio.StaticFile("init", "#!/bin/sh\n", 0o755),
		cpio.StaticFile("extensions.yaml", `layers:
    - image: 000.sqsh
      metadata:
        name: gvisor
        version: 20250505.0
    - image: 001.sqsh
      metadata:
        name: schematic
        version: `+inspectSchematic+"\n", 0o644),
		cpio.StaticFile("000.sqsh", "hsqs", 0o644),
		cpio.StaticFile("001.sqsh", "hsqs", 0o644),
	))
	require.NoError(t, err)
	require.NoError(t, xw.Close())

	path := filepath.Join(t.TempDir(), "initramfs-amd64.xz")
	require.NoError(t, os.WriteFile(path, append(early, compressed.Bytes()...), 0o644))

	return path
}

// inspectCmd runs `edgefactory inspect args...` and returns its output.
func inspectCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()

	var out, errOut bytes.Buffer

	cmd := newInspectCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true

	err = cmd.Execute()

	return out.String(), errOut.String(), err
}

func TestInspectText(t *testing.T) {
	path := testInitramfs(t)

	out, stderr, err := inspectCmd(t, path)
	require.NoError(t, err)
	assert.Empty(t, stderr)
	assert.Equal(t, path+`: initramfs, 828 B
  talos:        schematic `+inspectSchematic+`
  extensions:   gvisor 20250505.0
  initramfs:    2 members: cpio + xz (CRC32); 5 files, 1.1 KiB unpacked
`, out)
}

// TestInspectJSON is the README's example: edgefactory inspect --json initramfs-amd64.xz | jq -r '.[0].schematic_id'.
func TestInspectJSON(t *testing.T) {
	path := testInitramfs(t)

	out, _, err := inspectCmd(t, "--json", path)
	require.NoError(t, err)

	var reports []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &reports))
	require.Len(t, reports, 1)

	r := reports[0]
	assert.Equal(t, inspectSchematic, r["schematic_id"])
	assert.Equal(t, "initramfs", r["kind"])
	assert.Equal(t, path, r["path"])
	assert.Equal(t, []any{map[string]any{"name": "gvisor", "version": "20250505.0", "image": "000.sqsh"}}, r["extensions"])
	assert.NotContains(t, r, "error")

	members := r["initramfs"].(map[string]any)["members"].([]any)
	require.Len(t, members, 2)
	assert.Equal(t, "CRC32", members[1].(map[string]any)["xz_check"])
}

func TestInspectFailures(t *testing.T) {
	good := testInitramfs(t)
	bad := filepath.Join(t.TempDir(), "metal-amd64.iso")
	require.NoError(t, os.WriteFile(bad, []byte("<html>404 Not Found</html>\n"), 0o644))

	t.Run("one file", func(t *testing.T) {
		out, _, err := inspectCmd(t, bad)
		require.Error(t, err)
		assert.Empty(t, out)
		assert.True(t, strings.HasPrefix(err.Error(), bad+": unrecognised content (starts with \"<html>404 Not Fo\")"), err.Error())
	})

	t.Run("several files", func(t *testing.T) {
		out, stderr, err := inspectCmd(t, bad, good)
		require.EqualError(t, err, "1 of 2 files failed inspection")
		assert.True(t, strings.HasPrefix(out, good+": initramfs"), "the good file is still reported: %q", out)
		assert.True(t, strings.HasPrefix(stderr, bad+": unrecognised content"), stderr)
	})

	t.Run("json", func(t *testing.T) {
		out, stderr, err := inspectCmd(t, "--json", good, bad)
		require.EqualError(t, err, "1 of 2 files failed inspection")
		assert.True(t, strings.HasPrefix(stderr, bad+": unrecognised content"), stderr)

		var reports []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &reports))
		require.Len(t, reports, 2)
		assert.NotContains(t, reports[0], "error")
		assert.Contains(t, reports[1]["error"], "unrecognised content")
		assert.Equal(t, bad, reports[1]["path"])
	})

	t.Run("missing", func(t *testing.T) {
		_, _, err := inspectCmd(t, filepath.Join(t.TempDir(), "nope.raw"))
		require.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("no arguments", func(t *testing.T) {
		_, _, err := inspectCmd(t)
		require.Error(t, err)
	})
}

// TestInspectKernel reads the Debian kernel of the synthetic release parts (make deps): a signed PE.
func TestInspectKernel(t *testing.T) {
	path := "../../build/parts/amd64/vmlinuz"
	if _, err := os.Stat(path); err != nil {
		t.Skip("build/parts/amd64/vmlinuz absent (make deps)")
	}

	out, _, err := inspectCmd(t, path)
	require.NoError(t, err)
	assert.Regexp(t, `^`+path+`: Linux kernel, [0-9.]+ MiB
  kernel:       \d+\.\d+\.\d+-\S+
  pe:           amd64, signed \(Authenticode, \d+ bytes\)
  sections:     .setup .compat .text .data
$`, out)
}
