package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocumentsNamedExist: every Markdown document a source comment, script or Makefile names (a bare name such as
// README.md, or one under docs/) is in the repository, since a maintainer has only the repository, and a citation of
// a numbered section names a section the document has. Names inside longer paths (another repository's, a URL) are
// not this repository's documents.
func TestDocumentsNamedExist(t *testing.T) {
	root := RepoRoot(t)
	cite := regexp.MustCompile(`(?:^|[^/\w.-])((?:docs/)?[A-Za-z0-9_-]+\.md)(?: §([0-9]+(?:\.[0-9]+)?))?`)

	sections := map[string][]string{} // document → its numbered headings ("1", "1.1", …)
	headings := regexp.MustCompile(`(?m)^#{2,3} ([0-9]+(?:\.[0-9]+)?)[. ]`)

	walkSources(t, root, func(path string, text string) {
		for _, m := range cite.FindAllStringSubmatch(text, -1) {
			doc := m[1]
			target := filepath.Join(root, doc)
			if !strings.Contains(doc, "/") { // a bare name: beside the file, or at the top
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), doc)); err == nil {
					continue
				}
			}

			raw, err := os.ReadFile(target)
			if !assert.NoError(t, err, "%s names %s, which is not in the repository", rel(root, path), doc) {
				continue
			}

			if m[2] == "" {
				continue
			}

			if _, ok := sections[doc]; !ok {
				for _, h := range headings.FindAllStringSubmatch(string(raw), -1) {
					sections[doc] = append(sections[doc], h[1])
				}
			}

			assert.Contains(t, sections[doc], m[2], "%s cites %s §%s, which has no such section", rel(root, path),
				doc, m[2])
		}
	})
}

// TestDocumentedPathsExist: every repository file a document names in backquotes (`node/internal/peer/server.go`)
// exists, so the documents follow the code when it moves.
func TestDocumentedPathsExist(t *testing.T) {
	root := RepoRoot(t)
	path := regexp.MustCompile("`((?:[a-z0-9_.-]+/)+[A-Za-z0-9_.-]+\\.(?:go|md|sh|yml|yaml|service))`")

	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)

	for _, doc := range append(docs, filepath.Join(root, "README.md")) {
		raw, err := os.ReadFile(doc)
		require.NoError(t, err)

		for _, m := range path.FindAllStringSubmatch(string(raw), -1) {
			_, err := os.Stat(filepath.Join(root, m[1]))
			assert.NoError(t, err, "%s names %s", rel(root, doc), m[1])
		}
	}
}

// TestLayoutDocumented: the README's Layout table and docs/architecture.md name every top-level directory with code
// and every package under node/internal, so the two documents agree with the tree.
func TestLayoutDocumented(t *testing.T) {
	root := RepoRoot(t)

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)

	arch, err := os.ReadFile(filepath.Join(root, "docs/architecture.md"))
	require.NoError(t, err)

	top, err := os.ReadDir(root)
	require.NoError(t, err)

	for _, e := range top {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || slices.Contains([]string{"build", "bin", "data"}, e.Name()) {
			continue
		}

		assert.True(t, strings.Contains(string(readme), "`"+e.Name()+"/"), "README's Layout table names %s/", e.Name())
		assert.True(t, strings.Contains(string(arch), "`"+e.Name()), "docs/architecture.md names %s", e.Name())
	}

	internal, err := os.ReadDir(filepath.Join(root, "node", "internal"))
	require.NoError(t, err)

	for _, e := range internal {
		assert.True(t, strings.Contains(string(readme), "`"+e.Name()+"`"), "README's Layout table names node/internal/%s",
			e.Name())
		assert.True(t, strings.Contains(string(arch), "`node/internal/"+e.Name()+"`"),
			"docs/architecture.md names node/internal/%s", e.Name())
	}
}

// walkSources calls fn with every Go file, shell script and Makefile of the repository (build output aside).
func walkSources(t *testing.T, root string, fn func(path, text string)) {
	t.Helper()

	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "build" || name == "data" ||
				name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}

			return nil
		}

		if !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".sh") && d.Name() != "Makefile" {
			return nil
		}

		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}

		fn(path, string(raw))

		return nil
	}))
}

func rel(root, path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}

	return r
}
