//go:build ui

package ui

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

//go:embed testdata/axe.min.js
var axeSource string

// browser starts headless Chromium for the test (one tab per returned context), or skips the test without it.
func browser(t *testing.T) context.Context {
	t.Helper()

	path := ""

	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p

			break
		}
	}

	if path == "" {
		t.Skip("chromium is not installed: apt-get install --no-install-recommends chromium (make deps)")
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.Flag("headless", "new"),
		chromedp.WindowSize(1200, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)

	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start chromium")

	return ctx
}

// tab opens a new tab of the browser with a deadline.
func tab(t *testing.T, browserCtx context.Context, width, height int64) context.Context {
	t.Helper()

	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)

	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(cancelTimeout)

	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(width, height)))

	return ctx
}

// shots writes numbered screenshots of a walk into the test's output directory (t.ArtifactDir).
type shots struct {
	t   *testing.T
	dir string
	n   int
}

func newShots(t *testing.T) *shots {
	dir := t.ArtifactDir()
	t.Logf("screenshots in %s", dir)

	return &shots{t: t, dir: dir}
}

// take saves the page as <n>-<name>.png and returns the PNG.
func (s *shots) take(ctx context.Context, name string) []byte {
	s.t.Helper()

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(s.t, err, "screenshot %s", name)

	s.n++
	require.NoError(s.t, os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name)), png, 0o644))

	return png
}

// violation is one axe-core finding.
type violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// checkAccessibility runs axe-core (WCAG 2 A/AA and best practices) on the page and fails on serious or critical
// violations, printing them.
func checkAccessibility(t *testing.T, ctx context.Context, page string) {
	t.Helper()

	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.axe !== "undefined"`))
	require.NoError(t, err)

	if !loaded {
		_, err = chromedp.Run(ctx, chromedp.Evaluate[any](axeSource+"\n;true"))
		require.NoError(t, err, "inject axe-core")
	}

	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {
		runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}
	}).then(r => JSON.stringify(r.violations.map(v => ({
		id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))
	}))))`, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "axe.run")

	var found []violation
	require.NoError(t, json.Unmarshal([]byte(raw), &found))

	var serious []string

	for _, v := range found {
		line := fmt.Sprintf("%s [%s] %s: %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			serious = append(serious, line)
		} else {
			t.Logf("axe (%s, not failing): %s", page, line)
		}
	}

	require.Empty(t, serious, "accessibility violations on the %s page", page)
}
