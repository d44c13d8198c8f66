package hosttools

import (
	"regexp"
	"strconv"
	"strings"
)

// defaultVersionRE finds the first dotted version in a tool's version output, with any Debian suffix
// ("2.06-13+deb12u2", "1.5.4", "4.5.1").
var defaultVersionRE = regexp.MustCompile(`(\d+\.\d+[0-9A-Za-z.+~-]*)`)

// extractVersion returns the first submatch of re (defaultVersionRE when nil) in out, or "".
func extractVersion(out string, re *regexp.Regexp) string {
	if re == nil {
		re = defaultVersionRE
	}

	m := re.FindStringSubmatch(out)
	if len(m) < 2 {
		return ""
	}

	return strings.TrimRight(m[1], ".-+~")
}

// atLeast reports whether the numeric prefix of version v ("4.6.1", "6.1.0", "257.13-1") is ≥ min. Missing
// components count as zero; an unparsable v is never new enough.
func atLeast(v string, min ...int) bool {
	parts := numericParts(v)
	if len(parts) == 0 {
		return false
	}

	for i, want := range min {
		got := 0
		if i < len(parts) {
			got = parts[i]
		}

		if got != want {
			return got > want
		}
	}

	return true
}

func numericParts(v string) []int {
	var parts []int

	for _, field := range strings.Split(v, ".") {
		end := 0
		for end < len(field) && field[end] >= '0' && field[end] <= '9' {
			end++
		}

		if end == 0 {
			break
		}

		n, err := strconv.Atoi(field[:end])
		if err != nil {
			break
		}

		parts = append(parts, n)

		if end < len(field) {
			break // "13-1": the rest is a suffix
		}
	}

	return parts
}
