package release

import (
	"slices"

	"github.com/blang/semver/v4"
)

// DefaultMinVersion is the oldest Talos version listed unless Source.MinVersion says otherwise.
const DefaultMinVersion = "1.2.0"

// FilterVersions turns imager tags into the listed versions, exactly as the official factory does:
//  1. tags are parsed as tolerant semver; unparseable tags are skipped;
//  2. the highest parsed tag is the reference for pre-releases, taken before any filtering;
//  3. versions below minVersion, and those equal to a broken version, are dropped;
//  4. a pre-release stays only when it has the reference's major.minor and exactly two identifiers, the first
//     alpha, beta or rc and the second numeric (so 1.14.0-rc.1 stays listed after 1.14.0 ships, until a 1.15 tag);
//  5. the result is sorted ascending, duplicates removed, rendered "v"+semver.
//
// minVersion and broken are tolerant semver too; unparseable entries of broken are ignored, an unparseable
// minVersion means DefaultMinVersion.
func FilterVersions(tags []string, minVersion string, broken []string) []string {
	parsed := make([]semver.Version, 0, len(tags))

	for _, tag := range tags {
		if v, err := semver.ParseTolerant(tag); err == nil {
			parsed = append(parsed, v)
		}
	}

	if len(parsed) == 0 {
		return []string{}
	}

	maxVersion := slices.MaxFunc(parsed, semver.Version.Compare)

	minV, err := semver.ParseTolerant(minVersion)
	if err != nil {
		minV = semver.MustParse(DefaultMinVersion)
	}

	var brokenV []semver.Version

	for _, b := range broken {
		if v, err := semver.ParseTolerant(b); err == nil {
			brokenV = append(brokenV, v)
		}
	}

	kept := parsed[:0]

	for _, v := range parsed {
		if v.LT(minV) || slices.ContainsFunc(brokenV, v.Equals) || !listablePrerelease(v, maxVersion) {
			continue
		}

		kept = append(kept, v)
	}

	slices.SortFunc(kept, semver.Version.Compare)

	out := make([]string, 0, len(kept))

	for i, v := range kept {
		if i > 0 && v.Equals(kept[i-1]) {
			continue
		}

		out = append(out, "v"+v.String())
	}

	return out
}

func listablePrerelease(v, maxVersion semver.Version) bool {
	if len(v.Pre) == 0 {
		return true
	}

	if v.Major != maxVersion.Major || v.Minor != maxVersion.Minor || len(v.Pre) != 2 {
		return false
	}

	switch v.Pre[0].VersionStr {
	case "alpha", "beta", "rc":
	default:
		return false
	}

	return v.Pre[1].IsNum
}

// parseVersion parses a catalog version ("v1.13.0", tolerant) into semver.
func parseVersion(version string) (semver.Version, error) {
	return semver.ParseTolerant(version)
}

// coreAtLeast reports whether the major.minor.patch of v (pre-release ignored) is at least want.
func coreAtLeast(v semver.Version, major, minor, patch uint64) bool {
	core := semver.Version{Major: v.Major, Minor: v.Minor, Patch: v.Patch}

	return core.GTE(semver.Version{Major: major, Minor: minor, Patch: patch})
}
