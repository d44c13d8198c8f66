package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ReadmeBlocks returns the fenced blocks of language lang ("sh", "yaml") of one README section (heading as
// written, "## …" or "### …"), up to the next heading of the same or a higher level: what tests run as written.
func ReadmeBlocks(t testing.TB, heading, lang string) []string {
	t.Helper()

	f, err := os.Open(filepath.Join(RepoRoot(t), "README.md"))
	require.NoError(t, err)

	defer f.Close()

	var (
		blocks    []string
		inSection bool
		fenced    bool // inside any fenced block
		inBlock   bool // inside a lang block of the section
		current   strings.Builder
	)

	level := headingLevel(heading)

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()

		switch {
		case strings.HasPrefix(line, "```") && !fenced:
			fenced, inBlock = true, inSection && line == "```"+lang

			current.Reset()
		case strings.HasPrefix(line, "```"):
			if inBlock {
				blocks = append(blocks, current.String())
			}

			fenced, inBlock = false, false
		case inBlock:
			current.WriteString(line + "\n")
		case fenced:
		case line == heading:
			inSection = true
		case headingLevel(line) > 0 && headingLevel(line) <= level:
			inSection = false
		}
	}

	require.NoError(t, sc.Err())

	return blocks
}

// headingLevel is the level of a Markdown heading line ("## x" is 2), or 0 for any other line.
func headingLevel(line string) int {
	hashes := len(line) - len(strings.TrimLeft(line, "#"))
	if hashes == 0 || !strings.HasPrefix(line[hashes:], " ") {
		return 0
	}

	return hashes
}
