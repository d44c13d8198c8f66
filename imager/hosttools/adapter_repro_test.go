package hosttools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

// testEpoch is the SOURCE_DATE_EPOCH of these tests, the builder's.
const testEpoch = 1559424892

// talosCpioArgs are the v1.13 imager's (pkg/imager/extensions/rebuild.go); it runs cpio in the extensions' scratch
// directory with the listing on stdin.
var talosCpioArgs = []string{"-H", "newc", "--create", "--reproducible", "--quiet", "-R", "+0:+0"}

// runCpio runs the cpio adapter in dir with list on stdin and returns the archive and stderr.
func runCpio(t *testing.T, tools, dir string, env []string, list string, args ...string) ([]byte, string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer

	cmd := exec.CommandContext(ctx, filepath.Join(tools, "cpio"), args...)
	cmd.Dir = dir
	cmd.Env = append(withoutEnv(os.Environ(), "PATH", loopGuardEnv, "SOURCE_DATE_EPOCH"),
		"PATH="+tools+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(list)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	require.NoError(t, cmd.Run(), "cpio adapter: %s", stderr.String())

	return stdout.Bytes(), stderr.String()
}

// extensionsScratch makes what the imager archives: squashfs images, extensions.yaml, a directory tree, a symlink.
func extensionsScratch(t *testing.T) (dir, list string) {
	t.Helper()

	dir = t.TempDir()
	files := map[string]string{
		"0.sqsh":                  "squashfs image 0",
		"1.sqsh":                  "squashfs image 1",
		"extensions.yaml":         "layers:\n  - image: 0.sqsh\n",
		"kernel/x86/microcode/ab": "microcode",
	}

	for name, content := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}

	require.NoError(t, os.Symlink("0.sqsh", filepath.Join(dir, "latest.sqsh")))

	return dir, "0.sqsh\n1.sqsh\nextensions.yaml\nkernel\nkernel/x86\nkernel/x86/microcode\nkernel/x86/microcode/ab\nlatest.sqsh\n"
}

// retime gives every file and directory under dir (symlinks included) the time at.
func retime(t *testing.T, dir string, at time.Time) {
	t.Helper()

	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(at.UnixNano())}

	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}

		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)

	return hex.EncodeToString(s[:])
}

func TestAdapterCpio(t *testing.T) {
	realTool(t, "cpio", "cpio")

	tools := filepath.Join(t.TempDir(), "tools")
	require.NoError(t, Install(tools))

	epochEnv := []string{"SOURCE_DATE_EPOCH=1559424892"}

	t.Run("archives equal whatever the files' times", func(t *testing.T) {
		dir, list := extensionsScratch(t)

		retime(t, dir, time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC))
		first, log := runCpio(t, tools, dir, epochEnv, list, talosCpioArgs...)
		require.Contains(t, log, "mtime of the 8 listed paths set to SOURCE_DATE_EPOCH 2019-06-01T21:34:52Z")
		require.NotContains(t, log, "WARN")

		// Rewritten with the same content, then a different time on everything: what a second build does.
		require.NoError(t, os.WriteFile(filepath.Join(dir, "extensions.yaml"), []byte("layers:\n  - image: 0.sqsh\n"), 0o644))
		retime(t, dir, time.Now().Add(time.Hour))
		second, _ := runCpio(t, tools, dir, epochEnv, list, talosCpioArgs...)

		require.Equal(t, sha(first), sha(second))

		records, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(first)))
		require.NoError(t, err)

		var names []string
		for _, r := range records {
			names = append(names, r.Name)
			require.EqualValues(t, testEpoch, r.MTime, "%s mtime", r.Name)
		}

		require.Equal(t, strings.Fields(list), names, "the whole list reached cpio, in order")
	})

	t.Run("NUL-separated list and -D", func(t *testing.T) {
		dir, list := extensionsScratch(t)
		nulList := strings.ReplaceAll(list, "\n", "\x00")

		retime(t, dir, time.Unix(1e9, 0))
		first, _ := runCpio(t, tools, "/", epochEnv, nulList, "-o0", "-H", "newc", "-D", dir)
		retime(t, dir, time.Unix(2e9, 0))
		second, _ := runCpio(t, tools, "/", epochEnv, nulList, "-o0", "-H", "newc", "-D", dir)

		require.Equal(t, sha(first), sha(second))
	})

	t.Run("without SOURCE_DATE_EPOCH cpio runs as is", func(t *testing.T) {
		// The control: the real cpio records the files' times, so the first subtest's equality is the adapter's.
		dir, list := extensionsScratch(t)

		retime(t, dir, time.Unix(1e9, 0))
		first, _ := runCpio(t, tools, dir, nil, list, talosCpioArgs...)
		retime(t, dir, time.Unix(2e9, 0))
		second, _ := runCpio(t, tools, dir, nil, list, talosCpioArgs...)

		require.NotEqual(t, sha(first), sha(second))

		st, err := os.Stat(filepath.Join(dir, "0.sqsh"))
		require.NoError(t, err)
		require.Equal(t, int64(2e9), st.ModTime().Unix(), "files untouched")
	})

	t.Run("extract reads the archive from stdin untouched", func(t *testing.T) {
		dir, list := extensionsScratch(t)
		archive, _ := runCpio(t, tools, dir, epochEnv, list, talosCpioArgs...)

		out := t.TempDir()
		_, log := runCpio(t, tools, out, epochEnv, string(archive), "-idm", "--quiet")
		require.Empty(t, log, "extraction is not adapted")

		got, err := os.ReadFile(filepath.Join(out, "kernel/x86/microcode/ab"))
		require.NoError(t, err)
		require.Equal(t, "microcode", string(got))

		st, err := os.Stat(filepath.Join(out, "1.sqsh"))
		require.NoError(t, err)
		require.Equal(t, int64(testEpoch), st.ModTime().Unix(), "-m restores the archived (stamped) mtime")
	})
}

// xfsImage formats a 300 MiB image with the adapter as the imager does for a partition with content, and returns
// the image's digest and the adapter's output.
func xfsImage(t *testing.T, tools, dir string, env []string) (string, string) {
	t.Helper()

	src := filepath.Join(dir, "hello.txt")
	require.NoError(t, os.WriteFile(src, []byte("hello\n"), 0o644))

	proto := filepath.Join(dir, "proto")
	require.NoError(t, os.WriteFile(proto, []byte("boot\n0 0\nd--755 0 0\nhello ---644 0 0 "+src+
		"\nsub d--755 0 0\n$\n$\n"), 0o644))

	img := filepath.Join(dir, "disk.raw")
	_ = os.Remove(img)
	sparseFile(t, img, 300<<20)

	out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), env, nil, "mkfs.xfs",
		"-n", "ftype=1", "-f", "-L", "STATE", "-p", "file="+proto, "-m", "uuid=0d3c7a7e-7c5a-4b7e-8e5b-9f0d8c6a1b2c", img)
	require.NoError(t, err, out)

	data, err := os.ReadFile(img)
	require.NoError(t, err)

	return sha(data), out
}

func TestAdapterMkfsXFSReproducible(t *testing.T) {
	realTool(t, "mkfs.xfs", "xfsprogs")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	t.Run("clock stopped at SOURCE_DATE_EPOCH", func(t *testing.T) {
		if findFaketime() == "" {
			t.Skipf("libfaketime not installed (Debian package %s)", FaketimePackage)
		}

		env := []string{"SOURCE_DATE_EPOCH=1559424892"}

		first, log := xfsImage(t, tools, dir, env)
		require.Contains(t, log, "clock stopped at SOURCE_DATE_EPOCH 2019-06-01T21:34:52Z")

		time.Sleep(1100 * time.Millisecond) // a clock-stamped inode would show a new second

		second, _ := xfsImage(t, tools, dir, env)
		require.Equal(t, first, second)

		if xfsDB, err := exec.LookPath("xfs_db"); err == nil {
			img := filepath.Join(dir, "disk.raw")
			out, err := exec.Command(xfsDB, "-r", "-c", "sb", "-c", "p rootino", img).CombinedOutput()
			require.NoError(t, err, string(out))

			ino := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "rootino ="))
			cmd := exec.Command(xfsDB, "-r", "-c", "inode "+ino, "-c", "p core.mtime.sec", img)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err = cmd.CombinedOutput()
			require.NoError(t, err, string(out))
			require.Contains(t, string(out), "Sat Jun  1 21:34:52 2019", "root inode mtime")
		}
	})

	t.Run("without libfaketime a warning", func(t *testing.T) {
		first, log := xfsImage(t, tools, dir, []string{"SOURCE_DATE_EPOCH=1559424892", FaketimeEnv + "=/nonexistent.so"})
		require.Contains(t, log, "level=WARN")
		require.Contains(t, log, "libfaketime not found (install libfaketime)")

		time.Sleep(1100 * time.Millisecond)

		// The control: the clock really is in the image, so the equality above is the adapter's.
		second, _ := xfsImage(t, tools, dir, []string{"SOURCE_DATE_EPOCH=1559424892", FaketimeEnv + "=/nonexistent.so"})
		require.NotEqual(t, first, second)
	})

	t.Run("without SOURCE_DATE_EPOCH the clock runs, silently", func(t *testing.T) {
		_, log := xfsImage(t, tools, dir, nil)
		require.NotContains(t, log, "faketime")
		require.NotContains(t, log, "clock")
	})
}

// testDisk writes a 32 MiB raw disk with data in a few places, as a converted disk image would have.
func testDisk(t *testing.T, path string) {
	t.Helper()

	data := make([]byte, 32<<20)
	copy(data[1<<20:], bytes.Repeat([]byte("edgefactory "), 4096))
	copy(data[20<<20:], bytes.Repeat([]byte{0x5a, 0xa5}, 64<<10))
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// fileSHA returns the digest of the file at path.
func fileSHA(t *testing.T, path string) string {
	t.Helper()

	data, err := os.ReadFile(path)
	require.NoError(t, err)

	return sha(data)
}

func TestAdapterQemuImgReproducible(t *testing.T) {
	qemuImg := realTool(t, "qemu-img", "qemu-utils")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	raw := filepath.Join(dir, "disk.raw")
	testDisk(t, raw)

	epochEnv := []string{"SOURCE_DATE_EPOCH=1559424892"}

	// convert runs the imager's call (pkg/imager/qemuimg) through the adapter twice, a second apart so that a
	// clock-stamped header shows, and returns both digests.
	convert := func(t *testing.T, env []string, adapter, format string, args func(dst string) []string) (string, string) {
		t.Helper()

		var sums []string

		for i := range 2 {
			if i > 0 {
				time.Sleep(1100 * time.Millisecond)
			}

			dst := filepath.Join(dir, "out")
			_ = os.Remove(dst)

			out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), env, nil, adapter, args(dst)...)
			require.NoError(t, err, out)

			verifyDisk(t, qemuImg, format, raw, dst)

			sums = append(sums, fileSHA(t, dst))
		}

		return sums[0], sums[1]
	}

	vpc := func(options string) func(string) []string {
		return func(dst string) []string {
			return []string{"convert", "-f", "raw", "-O", "vpc", "-o", options, raw, dst}
		}
	}

	tests := []struct {
		name    string
		adapter string
		format  string
		args    func(dst string) []string
	}{
		{name: "vhd fixed (azure)", adapter: "qemu-img", format: "vpc", args: vpc("subformat=fixed,force_size=on")},
		{name: "vhd dynamic", adapter: "qemu-img", format: "vpc", args: vpc("subformat=dynamic")},
		{name: "qcow2", adapter: "qemu-img", format: "qcow2", args: func(dst string) []string {
			return []string{"convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=8k", raw, dst}
		}},
		{name: "vmdk for the ova", adapter: "vmdk-convert", format: "vmdk", args: func(dst string) []string {
			return []string{raw, dst}
		}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, second := convert(t, epochEnv, tt.adapter, tt.format, tt.args)
			require.Equal(t, first, second)
		})
	}

	// The controls: without SOURCE_DATE_EPOCH qemu-img's clock and random ids show, so the equalities above are
	// the adapter's.
	for _, tt := range []int{0, 3} {
		t.Run(tests[tt].name+" without SOURCE_DATE_EPOCH", func(t *testing.T) {
			first, second := convert(t, nil, tests[tt].adapter, tests[tt].format, tests[tt].args)
			require.NotEqual(t, first, second)
		})
	}

	t.Run("a failing conversion keeps its status", func(t *testing.T) {
		out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), epochEnv, nil, "qemu-img",
			"convert", "-f", "raw", "-O", "vpc", filepath.Join(dir, "missing.raw"), filepath.Join(dir, "x.vhd"))
		require.Error(t, err)

		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		require.Equal(t, 1, exit.ExitCode(), "qemu-img's own status, not the adapter's 127: %s", out)
		require.Contains(t, out, "missing.raw")
	})
}

// verifyDisk checks that the converted disk dst, in format, still holds the raw disk's bytes and that qemu accepts
// its metadata.
func verifyDisk(t *testing.T, qemuImg, format, raw, dst string) {
	t.Helper()

	data, err := os.ReadFile(dst)
	require.NoError(t, err)

	if format == "vpc" {
		require.True(t, vhdChecksumOK(data[len(data)-vhdFooterSize:]), "VHD footer checksum")
	}

	// A fixed VHD has no header, so the format must be named: qemu would probe it as raw.
	cmp, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", format, raw, dst).CombinedOutput()
	require.NoError(t, err, string(cmp))
}

func TestAdapterTar(t *testing.T) {
	realTool(t, "tar", "tar")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	scratch := filepath.Join(dir, "ova")
	require.NoError(t, os.MkdirAll(scratch, 0o755))

	for _, name := range []string{"disk.ovf", "disk.mf", "disk.vmdk"} {
		require.NoError(t, os.WriteFile(filepath.Join(scratch, name), []byte(name+" content"), 0o644))
	}

	// archive runs the imager's OVA call (pkg/imager/ova) after giving the files the time at.
	archive := func(t *testing.T, env []string, at time.Time, args ...string) string {
		t.Helper()

		retime(t, scratch, at)

		out := filepath.Join(dir, "out.ova")
		_ = os.Remove(out)

		log, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), env, nil, "tar",
			append(args, out, "-C", scratch, "disk.ovf", "disk.mf", "disk.vmdk")...)
		require.NoError(t, err, log)

		return fileSHA(t, out)
	}

	epochEnv := []string{"SOURCE_DATE_EPOCH=1559424892"}

	t.Run("talos -cvf", func(t *testing.T) {
		require.Equal(t, archive(t, epochEnv, time.Unix(1e9, 0), "-cvf"), archive(t, epochEnv, time.Unix(2e9, 0), "-cvf"))

		list, err := exec.Command("tar", "--utc", "-tvf", filepath.Join(dir, "out.ova")).CombinedOutput()
		require.NoError(t, err, string(list))
		require.Regexp(t, `-rw-r--r-- 0/0 +15 2019-06-01 21:34 disk.mf\n`, string(list))
	})

	t.Run("traditional cvf", func(t *testing.T) {
		require.Equal(t, archive(t, epochEnv, time.Unix(1e9, 0), "cvf"), archive(t, epochEnv, time.Unix(2e9, 0), "cvf"))
	})

	t.Run("without SOURCE_DATE_EPOCH tar runs as is", func(t *testing.T) {
		require.NotEqual(t, archive(t, nil, time.Unix(1e9, 0), "-cvf"), archive(t, nil, time.Unix(2e9, 0), "-cvf"))
	})
}
