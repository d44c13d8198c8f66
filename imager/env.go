package imager

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// SourceDateEpoch is the SOURCE_DATE_EPOCH of every build, the official image factory's value: timestamps inside
// the outputs come from it, so one recipe gives the same bytes on any node.
const SourceDateEpoch = "1559424892"

// The Talos imager reads SOURCE_DATE_EPOCH and TMPDIR from the process environment, so they are process-wide state,
// shared by every Builder of the process (a test may run several nodes in one process).
var (
	envMu      sync.Mutex
	envScratch string // the TMPDIR this package set; "" while the process default is used
	envRunning int    // builds running in the process, all Builders together
)

// setProcessEnv prepares the process for builds in tmp (a Builder's own directory): it clears what an earlier
// process left there, sets SOURCE_DATE_EPOCH, and points TMPDIR (the imager's scratch, gigabytes for disk images)
// at tmp when the default temporary directory is on another filesystem — a small or memory-backed /tmp must not
// hold disk images, and outputs must be renamed, not copied, into the data directory. When the default is already
// on tmp's filesystem it is left alone, so nothing else in the process sees its temporary directory move.
func setProcessEnv(tmp string, log *slog.Logger) error {
	envMu.Lock()
	defer envMu.Unlock()

	sweep(tmp, true, envRunning == 0 && envScratch == tmp, log)

	if old, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && old != SourceDateEpoch {
		log.Warn("overriding SOURCE_DATE_EPOCH for reproducible builds", "was", old, "now", SourceDateEpoch)
	}

	if err := os.Setenv("SOURCE_DATE_EPOCH", SourceDateEpoch); err != nil {
		return err
	}

	if envScratch != "" || sameFilesystem(os.TempDir(), tmp) {
		return nil
	}

	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return err
	}

	envScratch = tmp
	log.Info("build scratch (TMPDIR) moved to the data directory's filesystem", "tmpdir", tmp)

	return nil
}

// sameFilesystem reports whether a and b are on one filesystem (false when either cannot be examined).
func sameFilesystem(a, b string) bool {
	var sa, sb syscall.Stat_t

	return syscall.Stat(a, &sa) == nil && syscall.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}

// scratchPatterns match what the Talos imager and the tools it runs create in TMPDIR: the imager removes its own
// directories (imager*, ext*, talos-uki*, ...) unless the process dies; grub-mkrescue leaves grub.* behind when
// a timeout kills it.
var scratchPatterns = []string{"grub.*", "imager*", "ext*", "talos-uki*", "talos-image-cache-gen*"}

// sweep removes from tmp build directories (builds) and tool scratch files (scratch; only in a TMPDIR this package
// set, never in a shared /tmp, and only when no build in the process can be using them).
func sweep(tmp string, builds, scratch bool, log *slog.Logger) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return // missing: nothing to sweep
	}

	for _, e := range entries {
		name := e.Name()
		match := builds && strings.HasPrefix(name, "build-")

		for _, p := range scratchPatterns {
			if ok, _ := filepath.Match(p, name); ok && scratch {
				match = true
			}
		}

		if match {
			log.Info("removing leftover build scratch", "path", filepath.Join(tmp, name))
			removeAll(filepath.Join(tmp, name), log)
		}
	}
}
