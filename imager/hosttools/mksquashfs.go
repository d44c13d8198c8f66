package hosttools

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// MksquashfsEnv names an environment variable that overrides where a squashfs-tools ≥ 4.6 mksquashfs is looked
// for when the system one is older.
const MksquashfsEnv = "EDGEFACTORY_MKSQUASHFS"

// mksquashfsVersionRE matches "mksquashfs version 4.6.1 (2023/03/25)".
var mksquashfsVersionRE = regexp.MustCompile(`version (\d+\.\d+(?:\.\d+)?)`)

// DefaultMksquashfsPath is where `make deps` unpacks Debian trixie's squashfs-tools, relative to the edgefactory
// executable (<repo>/bin/edgefactory → <repo>/build/hosttools/...).
func DefaultMksquashfsPath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}

	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}

	return filepath.Join(filepath.Dir(exe), "..", "build", "hosttools", "squashfs-tools", "usr", "bin", "mksquashfs")
}

// configuredMksquashfs is the override from MksquashfsEnv, else DefaultMksquashfsPath.
func configuredMksquashfs() string {
	if p := os.Getenv(MksquashfsEnv); p != "" {
		return p
	}

	return DefaultMksquashfsPath()
}

// squashChoice is which mksquashfs runs and how.
type squashChoice struct {
	path      string
	version   string
	translate bool   // 4.5 fallback: squashfs45Args applies
	why       string // empty when the system tool is used as is
}

// chooseMksquashfs prefers, in order: the system mksquashfs when ≥ 4.6; the configured one when it runs and is
// ≥ 4.6; the system one with the 4.5 translation. The imager's SELinux pseudo-xattrs need 4.6.
func chooseMksquashfs(ctx context.Context, h *host) (squashChoice, error) {
	system, sysErr := h.lookPath("mksquashfs")

	var sysVersion string
	if sysErr == nil {
		sysVersion = probeMksquashfs(ctx, system)
		if atLeast(sysVersion, 4, 6) {
			return squashChoice{path: system, version: sysVersion}, nil
		}
	}

	configured := configuredMksquashfs()

	var cfgProblem string

	switch v := probeMksquashfs(ctx, configured); {
	case configured == "":
		cfgProblem = "no configured path"
	case !h.usable(configured):
		cfgProblem = configured + " is not an executable file"
	case v == "":
		cfgProblem = configured + " does not run"
	case !atLeast(v, 4, 6):
		cfgProblem = fmt.Sprintf("%s is %s", configured, v)
	default:
		why := fmt.Sprintf("system mksquashfs %s is older than 4.6: using %s (%s)", orNone(sysVersion), configured, v)

		return squashChoice{path: configured, version: v, why: why}, nil
	}

	if sysErr != nil {
		return squashChoice{}, fmt.Errorf("no mksquashfs (squashfs-tools) found, and %s: %w", cfgProblem, sysErr)
	}

	why := fmt.Sprintf("no mksquashfs ≥ 4.6 (%s; set %s or run make deps): %s %s drops the extensions' "+
		"SELinux labels (-no-xattrs)", cfgProblem, MksquashfsEnv, system, orNone(sysVersion))

	return squashChoice{path: system, version: sysVersion, translate: true, why: why}, nil
}

// probeMksquashfs returns the version of the mksquashfs at path, or "" when it does not run (a trixie binary on an
// older libc fails to load; checking that is the point).
func probeMksquashfs(ctx context.Context, path string) string {
	if path == "" {
		return ""
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	out, err := versionOutput(ctx, path, "-version")
	if err != nil {
		return ""
	}

	return extractVersion(out, mksquashfsVersionRE)
}

func orNone(v string) string {
	if v == "" {
		return "(unknown version)"
	}

	return v
}

func planMksquashfs(ctx context.Context, h *host, args []string) (plan, error) {
	choice, err := chooseMksquashfs(ctx, h)
	if err != nil {
		return plan{}, err
	}

	if !choice.translate {
		p := plan{path: choice.path, args: args}
		if choice.why != "" {
			p.changes = []string{choice.why}
		}

		return p, nil
	}

	out, changes := squashfs45Args(args)

	// Without 4.6-only options nothing is lost, and 4.5 builds the image as asked: stay quiet.
	return plan{path: choice.path, args: out, changes: changes, warn: len(changes) > 0}, nil
}
