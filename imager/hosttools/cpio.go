package hosttools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cpioArgOptions are GNU cpio's short options that take a value: in "-oH newc" or "-Hodc" the letters after one of
// them are its value, not options.
const cpioArgOptions = "CDEFHIMORW"

// cpioLongArgOptions are GNU cpio's long options that take a value; without "=" the value is the next argument.
var cpioLongArgOptions = []string{
	"--block-size", "--directory", "--file", "--format", "--io-size", "--message", "--owner", "--pattern-file",
	"--rsh-command", "--warning",
}

// cpioCreate is what matters to the adapter in a cpio invocation.
type cpioCreate struct {
	create bool   // copy-out mode (-o, --create): the file list comes on stdin
	null   bool   // -0, --null: the list is NUL-separated
	dir    string // -D, --directory: list paths are relative to it (else to the working directory)
}

// parseCpioArgs finds out whether args make cpio create an archive, how the list on stdin is separated and which
// directory its relative paths start from.
func parseCpioArgs(args []string) cpioCreate {
	var c cpioCreate

	for i := 0; i < len(args); i++ {
		arg := args[i]

		switch {
		case arg == "--":
			return c
		case strings.HasPrefix(arg, "--"):
			name, val, hasVal := strings.Cut(arg, "=")

			switch name {
			case "--create":
				c.create = true
			case "--null":
				c.null = true
			default:
				if slices.Contains(cpioLongArgOptions, name) && !hasVal && i+1 < len(args) {
					val = args[i+1]
					i++
				}
			}

			if name == "--directory" {
				c.dir = val
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			i += parseCpioCluster(arg[1:], args[i+1:], &c)
		}
	}

	return c
}

// parseCpioCluster reads one cluster of short options ("oH", "0o", "D/tmp") and returns how many of the following
// arguments it consumed as a value.
func parseCpioCluster(cluster string, rest []string, c *cpioCreate) int {
	for j := 0; j < len(cluster); j++ {
		opt := cluster[j]

		switch opt {
		case 'o':
			c.create = true
		case '0':
			c.null = true
		}

		if !strings.ContainsRune(cpioArgOptions, rune(opt)) {
			continue
		}

		val, used := cluster[j+1:], 0
		if val == "" && len(rest) > 0 {
			val, used = rest[0], 1
		}

		if opt == 'D' {
			c.dir = val
		}

		return used
	}

	return 0
}

// cpioListPaths splits the file list cpio reads in copy-out mode: one path a line (a trailing "\r" is kept, as cpio
// keeps it), or NUL-separated with null. Empty entries are skipped, as cpio skips them.
func cpioListPaths(list []byte, null bool) []string {
	sep := []byte{'\n'}
	if null {
		sep = []byte{0}
	}

	var paths []string

	for _, p := range bytes.Split(list, sep) {
		if len(p) > 0 {
			paths = append(paths, string(p))
		}
	}

	return paths
}

// stampPaths sets the access and modification times of each path (relative ones under dir) to t, without following
// symlinks. Paths that do not exist are skipped: cpio reports them itself. It returns the paths it could not stamp.
func stampPaths(dir string, paths []string, t time.Time) (failed []string) {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}

	for _, p := range paths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}

		err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			failed = append(failed, fmt.Sprintf("%s: %v", p, err))
		}
	}

	return failed
}

// planCpio: when SOURCE_DATE_EPOCH is set and cpio is to create an archive, it reads the file list from stdin, sets
// every listed file's and directory's mtime to SOURCE_DATE_EPOCH, and hands the same list to the real cpio. GNU
// cpio 2.13's --reproducible only renumbers inodes and zeroes device numbers: without this the archive records
// when the imager wrote each .sqsh and extensions.yaml. It changes the listed files' times: the imager's own scratch.
func planCpio(_ context.Context, h *host, args []string) (plan, error) {
	tool, err := h.lookPath("cpio")
	if err != nil {
		return plan{}, err
	}

	p := plan{path: tool, args: args}

	epoch, ok, err := sourceDateEpoch()
	if err != nil {
		return plan{}, err
	}

	c := parseCpioArgs(args)
	if !ok || !c.create {
		return p, nil
	}

	list, err := io.ReadAll(os.Stdin)
	if err != nil {
		return plan{}, fmt.Errorf("read cpio file list from stdin: %w", err)
	}

	dir := c.dir
	if !filepath.IsAbs(dir) {
		wd, err := os.Getwd()
		if err != nil {
			return plan{}, fmt.Errorf("working directory: %w", err)
		}

		dir = filepath.Join(wd, dir)
	}

	p.stdin = list
	paths := cpioListPaths(list, c.null)

	if failed := stampPaths(dir, paths, epoch); len(failed) > 0 {
		// The archive is still right, only not reproducible: say so instead of failing the build.
		p.changes = append(p.changes, "could not set mtime (archive not reproducible): "+strings.Join(failed, ", "))
		p.warn = true
	} else {
		p.changes = append(p.changes, fmt.Sprintf("mtime of the %d listed paths set to SOURCE_DATE_EPOCH %s",
			len(paths), epoch.Format(time.RFC3339)))
	}

	return p, nil
}

// replaceStdin makes fd 0 an in-memory file holding data, positioned at its start, so that the exec'd program reads
// data as its stdin. The memfd is close-on-exec; its duplicate on fd 0 is not.
func replaceStdin(data []byte) error {
	fd, err := unix.MemfdCreate("stdin", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd for stdin: %w", err)
	}

	if err := writeAllAt(fd, data); err != nil {
		return fmt.Errorf("write stdin memfd: %w", err)
	}

	if fd == 0 {
		// stdin was closed and the memfd took its place: only drop close-on-exec.
		if _, err := unix.FcntlInt(0, unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("stdin memfd: %w", err)
		}

		return nil
	}

	defer unix.Close(fd) // fd 0 is the duplicate that matters

	// Dup3, not Dup2: arm64 has no dup2 system call.
	if err := unix.Dup3(fd, 0, 0); err != nil {
		return fmt.Errorf("dup memfd onto stdin: %w", err)
	}

	return nil
}

// writeAllAt writes data at the start of fd with pwrite, leaving the file offset at 0 for the reader.
func writeAllAt(fd int, data []byte) error {
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		if errors.Is(err, unix.EINTR) {
			continue
		}

		if err != nil {
			return err
		}

		off += n
	}

	return nil
}
