package hosttools

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// FaketimeEnv, when set, names the libfaketime library to preload instead of Debian's (tests set it to a missing
// path to see the fallback).
const FaketimeEnv = "EDGEFACTORY_LIBFAKETIME"

// FaketimePackage is the Debian package that provides libfaketime.
const FaketimePackage = "libfaketime"

// multiarch is Debian's library directory name for each architecture Go may run on here.
var multiarch = map[string]string{
	"amd64": "x86_64-linux-gnu",
	"arm64": "aarch64-linux-gnu",
}

// faketimeCandidates are where distributions put libfaketime, Debian's multiarch path first.
func faketimeCandidates() []string {
	var paths []string
	if triplet, ok := multiarch[runtime.GOARCH]; ok {
		paths = append(paths, "/usr/lib/"+triplet+"/faketime/libfaketime.so.1")
	}

	return append(paths, "/usr/lib64/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")
}

// findFaketime returns the libfaketime to preload: the one named by FaketimeEnv when set (or "" when that does not
// exist), else the first candidate that exists, else "".
func findFaketime() string {
	candidates := faketimeCandidates()
	if p, ok := os.LookupEnv(FaketimeEnv); ok {
		candidates = []string{p}
	}

	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}

	return ""
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH (decimal seconds since 1970, the reproducible-builds convention). ok is
// false when it is unset or empty; a malformed value is an error, as in the Talos imager, rather than a silently
// unreproducible build.
func sourceDateEpoch() (t time.Time, ok bool, err error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, false, nil
	}

	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs < 0 {
		return time.Time{}, false, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a count of seconds", v)
	}

	return time.Unix(secs, 0).UTC(), true, nil
}

// faketimeEnv returns the environment variables that run a program under libfaketime with its clock stopped at t:
// every timestamp it takes is t, however long it runs. preload is the current LD_PRELOAD, kept after lib.
// Monotonic clocks are left real so that timeouts and thread waits still advance.
func faketimeEnv(lib string, t time.Time, preload string) []string {
	if preload = strings.TrimSpace(preload); preload != "" {
		lib += ":" + preload
	}

	return []string{
		"LD_PRELOAD=" + lib,
		// An absolute time without "@" is frozen; it is read in the local zone, hence TZ.
		"FAKETIME=" + t.UTC().Format(time.DateTime),
		"TZ=UTC",
		"DONT_FAKE_MONOTONIC=1",
	}
}

// underFaketime adds to p what running it at SOURCE_DATE_EPOCH takes, for a tool that stamps the clock into its
// output and has no option to stop it: libfaketime, or a warning that the output will not be reproducible.
func underFaketime(p *plan, why string) error {
	epoch, ok, err := sourceDateEpoch()
	if err != nil || !ok {
		return err
	}

	lib := findFaketime()
	if lib == "" {
		p.changes = append(p.changes, fmt.Sprintf("libfaketime not found (install %s): %s, so outputs differ "+
			"between builds", FaketimePackage, why))
		p.warn = true

		return nil
	}

	p.env = append(p.env, faketimeEnv(lib, epoch, os.Getenv("LD_PRELOAD"))...)
	p.changes = append(p.changes, fmt.Sprintf("clock stopped at SOURCE_DATE_EPOCH %s by %s (%s)",
		epoch.Format(time.RFC3339), lib, why))

	return nil
}

// FaketimeLibrary returns the libfaketime the mkfs.xfs adapter preloads, or "" when there is none: disk images are
// then not reproducible.
func FaketimeLibrary() string {
	return findFaketime()
}
