package hosttools

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain makes the test binary the multi-call binary: started through an adapter link it acts as that adapter.
func TestMain(m *testing.M) {
	RunIfAdapter()
	os.Exit(m.Run())
}

// realTool returns the host's tool as the adapters would find it, or skips the test.
func realTool(t *testing.T, name, pkg string) string {
	t.Helper()

	h, err := newHost()
	require.NoError(t, err)

	p, err := h.lookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	}

	return p
}

// adapterRun runs the adapter dir/name with PATH set to pathList and extra environment, and returns its combined
// output. A loop would hit the timeout and fail the test instead of hanging it.
func adapterRun(t *testing.T, dir, pathList string, env []string, extra []*os.File, name string, args ...string) (string, error) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, filepath.Join(dir, name), args...)
	cmd.Env = append(withoutEnv(os.Environ(), "PATH", loopGuardEnv, MksquashfsEnv), "PATH="+pathList)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = extra

	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "adapter %s did not finish (loop?): %s", name, out)

	return string(out), err
}

func withoutEnv(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))

next:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue next
			}
		}

		out = append(out, kv)
	}

	return out
}

func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()

	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()

	f, err := os.Open(path)
	require.NoError(t, err)

	defer f.Close()

	buf := make([]byte, n)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)

	return buf
}

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tools")
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	require.NoError(t, err)

	require.NoError(t, Install(dir))

	// Stale state: a link to an old binary, a link for a retired adapter, and a file that is not ours to touch.
	require.NoError(t, os.Remove(filepath.Join(dir, "mkfs.xfs")))
	require.NoError(t, os.Symlink("/old/edgefactory", filepath.Join(dir, "mkfs.xfs")))
	require.NoError(t, os.Symlink(exe, filepath.Join(dir, "retired-tool")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644))

	require.NoError(t, Install(dir))

	for _, name := range Adapters() {
		target, err := os.Readlink(filepath.Join(dir, name))
		require.NoError(t, err, name)
		require.Equal(t, exe, target, name)
	}

	_, err = os.Lstat(filepath.Join(dir, "retired-tool"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.FileExists(t, filepath.Join(dir, "README"))

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, len(Adapters())+1, "no temporary links left behind")
}

func TestAdapterMkfsXFS(t *testing.T) {
	realTool(t, "mkfs.xfs", "xfsprogs")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	src := filepath.Join(dir, "hello.txt")
	require.NoError(t, os.WriteFile(src, []byte("hello\n"), 0o644))

	// The imager hands the protofile over as an inherited memfd, /proc/self/fd/N: the exec must keep it open.
	proto, err := os.CreateTemp(dir, "proto")
	require.NoError(t, err)

	_, err = io.WriteString(proto, "boot\n0 0\nd--755 0 0\nhello ---644 0 0 "+src+"\n$\n")
	require.NoError(t, err)
	_, err = proto.Seek(0, io.SeekStart)
	require.NoError(t, err)

	defer proto.Close()

	img := filepath.Join(dir, "disk.raw")
	sparseFile(t, img, 64<<20)

	// The v1.13 imager's arguments (pkg/makefs/xfs.go); fd 3 is the first of ExtraFiles.
	out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), nil, []*os.File{proto}, "mkfs.xfs",
		"-n", "ftype=1", "-c", "options=/nonexistent/lts_6.18.conf", "-f", "-L", "EPHEMERAL", "--unsupported",
		"-p", "file=/proc/self/fd/3", "-m", "uuid=0d3c7a7e-7c5a-4b7e-8e5b-9f0d8c6a1b2c", img)
	require.NoError(t, err, out)
	require.Contains(t, out, "dropped -c options=/nonexistent/lts_6.18.conf")
	require.Equal(t, []byte("XFSB"), readAt(t, img, 0, 4))

	if xfsDB, err := exec.LookPath("xfs_db"); err == nil {
		ls, err := exec.Command(xfsDB, "-r", "-c", "ls /", img).CombinedOutput()
		require.NoError(t, err, string(ls))
		require.Contains(t, string(ls), "hello", "protofile content must be in the filesystem")
	}
}

func TestAdapterMkfsVFAT(t *testing.T) {
	realTool(t, "mkfs.vfat", "dosfstools")
	mcopy := realTool(t, "mcopy", "mtools")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	tests := []struct {
		name    string
		size    int64
		fatType string // boot sector file system type field
		changed bool
	}{
		{name: "small efiboot.img becomes FAT16", size: 16 << 20, fatType: "FAT16   ", changed: true},
		{name: "large image stays FAT32", size: 128 << 20, fatType: "FAT32   "},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".img")
			sparseFile(t, img, tt.size)

			// The v1.13 imager's arguments for the ISO's efiboot.img (pkg/makefs/vfat.go).
			out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), nil, nil, "mkfs.vfat",
				"-F", "32", "-n", "EFI", "--invariant", img)
			require.NoError(t, err, out)
			require.Equal(t, tt.changed, strings.Contains(out, "dropped -F 32"), out)

			// FAT16 keeps the type at offset 54, FAT32 at 82.
			off := int64(54)
			if tt.fatType == "FAT32   " {
				off = 82
			}

			require.Equal(t, tt.fatType, string(readAt(t, img, off, 8)))

			// What failed with FAT32 on mtools 4.0.32: the imager's next step, mcopy into the image.
			payload := filepath.Join(dir, "BOOTX64.EFI")
			require.NoError(t, os.WriteFile(payload, bytes.Repeat([]byte{0xAA}, 64<<10), 0o644))

			cp, err := exec.Command(mcopy, "-s", "-p", "-Q", "-m", "-i", img, payload, "::").CombinedOutput()
			require.NoError(t, err, string(cp))
		})
	}
}

func TestAdapterVMDKConvert(t *testing.T) {
	realTool(t, "qemu-img", "qemu-utils")

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	src := filepath.Join(dir, "disk.vmdk.in")
	raw := make([]byte, 4<<20)
	copy(raw[1<<20:], "some data in the middle of the disk")
	require.NoError(t, os.WriteFile(src, raw, 0o644))

	dst := filepath.Join(dir, "disk.vmdk")

	out, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), nil, nil, "vmdk-convert", src, dst)
	require.NoError(t, err, out)
	require.Equal(t, []byte("KDMV"), readAt(t, dst, 0, 4))

	info, err := exec.Command("qemu-img", "info", dst).CombinedOutput()
	require.NoError(t, err, string(info))
	require.Contains(t, string(info), "streamOptimized")
}

func TestAdapterMksquashfs(t *testing.T) {
	system := realTool(t, "mksquashfs", "squashfs-tools")
	systemVersion := probeMksquashfs(context.Background(), system)

	dir := t.TempDir()
	tools := filepath.Join(dir, "tools")
	require.NoError(t, Install(tools))

	rootfs := filepath.Join(dir, "rootfs")
	require.NoError(t, os.MkdirAll(filepath.Join(rootfs, "usr/lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(rootfs, "usr/lib/x"), []byte("x"), 0o644))

	// The v1.13 imager's arguments for an extension with SELinux labels (internal/pkg/extensions/compress.go).
	args := func(out string) []string {
		return []string{rootfs, out, "-all-root", "-noappend", "-no-progress", "-comp", "zstd",
			"-Xcompression-level", "18", "-xattrs-exclude", ".*",
			"-p", "/ x security.selinux=system_u:object_r:system_t:s0",
			"-p", "usr/lib/x x security.selinux=system_u:object_r:system_t:s0"}
	}

	t.Run("fallback without squashfs-tools 4.6", func(t *testing.T) {
		if atLeast(systemVersion, 4, 6) {
			t.Skipf("system mksquashfs is %s: no fallback on this host", systemVersion)
		}

		out := filepath.Join(dir, "fallback.sqsh")
		log, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), []string{MksquashfsEnv + "=/nonexistent"},
			nil, "mksquashfs", args(out)...)
		require.NoError(t, err, log)
		require.Contains(t, log, "SELinux labels are lost")
		require.Equal(t, []byte("hsqs"), readAt(t, out, 0, 4))

		// A member started this way says so at start (and doctor shows it): the report counts it as degraded.
		t.Setenv(MksquashfsEnv, "/nonexistent")

		var degraded []string
		for _, s := range Check(t.Context()).Degraded() {
			degraded = append(degraded, s.Name)
		}

		require.Equal(t, []string{"mksquashfs"}, degraded)
	})

	t.Run("squashfs-tools 4.6 at the configured path", func(t *testing.T) {
		newer := mksquashfs46(t)

		out := filepath.Join(dir, "labelled.sqsh")
		log, err := adapterRun(t, tools, tools+":"+os.Getenv("PATH"), []string{MksquashfsEnv + "=" + newer},
			nil, "mksquashfs", args(out)...)
		require.NoError(t, err, log)
		require.NotContains(t, log, "-no-xattrs")
		require.Equal(t, []byte("hsqs"), readAt(t, out, 0, 4))

		if !atLeast(systemVersion, 4, 6) {
			require.Contains(t, log, newer, "the adapter says which mksquashfs it picked")
		}
	})
}

// mksquashfs46 finds a squashfs-tools ≥ 4.6 mksquashfs that runs here: $EDGEFACTORY_TEST_MKSQUASHFS, else the
// one `make deps` unpacks into <repo>/build/hosttools. It skips the test when there is none.
func mksquashfs46(t *testing.T) string {
	t.Helper()

	candidates := []string{os.Getenv("EDGEFACTORY_TEST_MKSQUASHFS")}
	if p, err := filepath.Abs("../../build/hosttools/squashfs-tools/usr/bin/mksquashfs"); err == nil {
		candidates = append(candidates, p)
	}

	for _, p := range candidates {
		if p != "" && atLeast(probeMksquashfs(context.Background(), p), 4, 6) {
			return p
		}
	}

	t.Skip("no squashfs-tools ≥ 4.6 here: run make deps or set EDGEFACTORY_TEST_MKSQUASHFS")

	return ""
}

func TestAdapterRecursionGuard(t *testing.T) {
	realTool(t, "mkfs.xfs", "xfsprogs")

	dir := t.TempDir()
	first, second := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, Install(first))
	require.NoError(t, Install(second))

	t.Run("adapter dirs first on PATH reach the real tool", func(t *testing.T) {
		out, err := adapterRun(t, first, first+":"+second+":"+os.Getenv("PATH"), nil, nil, "mkfs.xfs", "-V")
		require.NoError(t, err, out)
		require.Contains(t, out, "mkfs.xfs version")
	})

	t.Run("nothing but adapters on PATH fails instead of looping", func(t *testing.T) {
		out, err := adapterRun(t, first, first+":"+second, nil, nil, "vmdk-convert", "a", "b")
		require.Error(t, err)
		require.Contains(t, out, "qemu-img")
	})

	t.Run("a copy of the binary under the tool's name is caught", func(t *testing.T) {
		// A copy is another file, so the same-file check cannot see it is us; the exec guard must.
		copyDir := filepath.Join(dir, "copy")
		require.NoError(t, os.MkdirAll(copyDir, 0o755))

		exe, err := os.Executable()
		require.NoError(t, err)
		data, err := os.ReadFile(exe)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(copyDir, "vmdk-convert"), data, 0o755))

		out, err := adapterRun(t, first, first+":"+copyDir, nil, nil, "vmdk-convert", "a", "b")
		require.Error(t, err)
		require.Contains(t, out, "adapter loop")
	})
}
