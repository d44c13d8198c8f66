package hosttools

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func findStatus(t *testing.T, r Report, name string) ToolStatus {
	t.Helper()

	for _, s := range r.Tools {
		if s.Name == name {
			return s
		}
	}

	require.Failf(t, "tool not in report", "%s", name)

	return ToolStatus{}
}

func TestCheckReportsEveryTool(t *testing.T) {
	tools := filepath.Join(t.TempDir(), "tools")
	require.NoError(t, Install(tools))
	// Adapter links first on PATH, as at run time: Check must see through them to the real tools.
	t.Setenv("PATH", tools+":"+os.Getenv("PATH"))

	r := Check(context.Background())
	require.Len(t, r.Tools, len(Tools))

	for i, s := range r.Tools {
		require.Equal(t, Tools[i].Name, s.Name)

		if s.Status == StatusMissing {
			require.Contains(t, s.Why, s.Package, s.Name)

			continue
		}

		require.NotEmpty(t, s.Path, s.Name)
		require.False(t, strings.HasPrefix(s.Path, tools), "%s resolved to its own adapter %s", s.Name, s.Path)

		if s.Dir == "" && !s.File {
			require.NotEmpty(t, s.Version, "%s at %s: version not recognised", s.Name, s.Path)
		}

		if s.Status == StatusAdapted {
			require.NotEmpty(t, s.Why, s.Name)
		}
	}

	if vfat := findStatus(t, r, "mkfs.vfat"); vfat.Status != StatusMissing {
		require.Equal(t, StatusAdapted, vfat.Status)
	}

	faketime := FaketimeLibrary()

	if xfs := findStatus(t, r, "mkfs.xfs"); xfs.Status != StatusMissing {
		require.Equal(t, !atLeast(xfs.Version, 6, 5) || faketime != "", xfs.Status == StatusAdapted, xfs.Why)
		require.Equal(t, faketime != "", strings.Contains(xfs.Why, "clock stopped at SOURCE_DATE_EPOCH"), xfs.Why)
	}

	// Adapted on every host: these tools have no option that keeps the clock or randomness out of their output.
	for _, name := range []string{"cpio", "tar", "qemu-img", "vmdk-convert"} {
		if s := findStatus(t, r, name); s.Status != StatusMissing {
			require.Equal(t, StatusAdapted, s.Status, name)
			require.Contains(t, s.Why, "SOURCE_DATE_EPOCH", name)
		}
	}

	lib := findStatus(t, r, "libfaketime")
	require.False(t, lib.Required, "builds work without it, only not reproducibly")

	if faketime != "" {
		require.Equal(t, StatusOK, lib.Status)
		require.Equal(t, faketime, lib.Path)
	} else {
		require.Equal(t, StatusMissing, lib.Status)
	}
}

func TestCheckFaketime(t *testing.T) {
	present := filepath.Join(t.TempDir(), "libfaketime.so.1")
	require.NoError(t, os.WriteFile(present, []byte("\x7fELF"), 0o644))

	t.Run("missing", func(t *testing.T) {
		t.Setenv(FaketimeEnv, "/nonexistent/libfaketime.so.1")

		r := Check(context.Background())
		lib := findStatus(t, r, "libfaketime")
		require.Equal(t, StatusMissing, lib.Status)
		require.Contains(t, lib.Why, "install libfaketime")
		require.Contains(t, lib.Why, "disk images differ between builds")
		require.NotContains(t, r.MissingRequired(), lib, "optional")
		require.Equal(t, []ToolStatus{lib}, r.MissingForReproducibility())

		if xfs := findStatus(t, r, "mkfs.xfs"); xfs.Status != StatusMissing {
			require.NotContains(t, xfs.Why, "clock stopped")
		}
	})

	t.Run("present", func(t *testing.T) {
		t.Setenv(FaketimeEnv, present)

		r := Check(context.Background())
		lib := findStatus(t, r, "libfaketime")
		require.Equal(t, StatusOK, lib.Status)
		require.Equal(t, present, lib.Path)
		require.Empty(t, r.MissingForReproducibility())

		if xfs := findStatus(t, r, "mkfs.xfs"); xfs.Status != StatusMissing {
			require.Equal(t, StatusAdapted, xfs.Status)
			require.Contains(t, xfs.Why, "clock stopped at SOURCE_DATE_EPOCH by "+present)
		}
	})
}

func TestCheckMissing(t *testing.T) {
	// An empty PATH leaves only the sbin fallbacks: everything from /usr/bin is missing.
	t.Setenv("PATH", t.TempDir())

	r := Check(context.Background())
	require.False(t, r.OK())

	tar := findStatus(t, r, "tar")
	require.Equal(t, StatusMissing, tar.Status)
	require.Contains(t, tar.Why, "install tar")
	require.Contains(t, r.MissingRequired(), tar)

	vmdk := findStatus(t, r, "vmdk-convert")
	require.Equal(t, StatusMissing, vmdk.Status)
	require.Contains(t, vmdk.Why, "qemu-utils")
}

func TestCheckMksquashfsChoice(t *testing.T) {
	system := realTool(t, "mksquashfs", "squashfs-tools")
	if v := probeMksquashfs(context.Background(), system); atLeast(v, 4, 6) {
		t.Skipf("system mksquashfs is %s: the configured one is never consulted", v)
	}

	broken := filepath.Join(t.TempDir(), "mksquashfs")
	require.NoError(t, os.WriteFile(broken, []byte("not a program\x00\x01"), 0o755))

	tests := []struct {
		name, configured, why string
	}{
		{name: "absent", configured: "/nonexistent/mksquashfs", why: "SELinux labels"},
		{name: "does not run", configured: broken, why: "does not run"},
		{name: "too old", configured: system, why: "is 4."},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(MksquashfsEnv, tt.configured)

			s := findStatus(t, Check(context.Background()), "mksquashfs")
			require.Equal(t, StatusAdapted, s.Status)
			require.Equal(t, system, s.Path, "the 4.5 fallback runs the system tool")
			require.Contains(t, s.Why, tt.why)
		})
	}

	t.Run("4.6 configured", func(t *testing.T) {
		newer := mksquashfs46(t)
		t.Setenv(MksquashfsEnv, newer)

		s := findStatus(t, Check(context.Background()), "mksquashfs")
		require.Equal(t, StatusAdapted, s.Status)
		require.Equal(t, newer, s.Path)
		require.True(t, atLeast(s.Version, 4, 6), s.Version)
		require.Contains(t, s.Why, "older than 4.6: using "+newer)
	})
}

func TestWriteTable(t *testing.T) {
	r := Report{Tools: []ToolStatus{
		{Tool: Tool{Name: "mkfs.xfs", Required: true}, Status: StatusAdapted, Path: "/usr/sbin/mkfs.xfs", Version: "6.1.0", Why: "old"},
		{Tool: Tool{Name: "tar", Required: true}, Status: StatusMissing, Why: "tar not found: install tar"},
		{Tool: Tool{Name: "busybox"}, Status: StatusMissing, Why: "install busybox-static"},
		{Tool: Tool{Name: "ok-row", Required: true}, Status: StatusOK, Path: "/usr/bin/ok-row", Version: "1.0"},
	}}

	var b strings.Builder
	require.NoError(t, r.WriteTable(&b))

	require.True(t, strings.HasSuffix(b.String(), "/usr/bin/ok-row\n"), "one newline after the last row, no trailing spaces")

	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, 5)
	require.Regexp(t, `^TOOL\s+STATUS\s+VERSION\s+PATH\s+WHY$`, lines[0])
	require.Regexp(t, `^mkfs\.xfs\s+adapted\s+6\.1\.0\s+/usr/sbin/mkfs\.xfs\s+old$`, lines[1])
	require.Regexp(t, `^tar\s+missing\s+-\s+-\s+tar not found: install tar$`, lines[2])
	require.Regexp(t, `^busybox\s+missing \(optional\)\s+-\s+-\s+install busybox-static$`, lines[3])

	require.Regexp(t, `^ok-row\s+ok\s+1\.0\s+/usr/bin/ok-row$`, lines[4])

	// Columns line up: STATUS starts at the same offset on every line.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		require.NotEqual(t, byte(' '), l[col], l)
		require.Equal(t, byte(' '), l[col-1], l)
	}

	require.False(t, r.OK())
	require.Len(t, r.MissingRequired(), 1)
}
