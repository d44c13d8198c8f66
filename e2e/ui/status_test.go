//go:build ui

package ui

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
)

// TestStatusPages opens the cluster page and the machines page in Chromium, at desktop and phone width: the member
// and its leadership, a profile and a boot are shown, and axe-core finds nothing serious. (The same pages on a
// three-member cluster, with a build in flight, are tested in node/uipages_test.go.)
func TestStatusPages(t *testing.T) {
	browserCtx := browser(t)
	dev := e2e.StartDev(t)
	id := dev.CreateSchematic(t, "customization: {}\n")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, dev.URL+"/machines/profiles/rack1",
		strings.NewReader(`{"selectors": {"labels": {"rack": "r1"}}, "schematic": "`+id+`", "version": "v1.13.0"}`))
	require.NoError(t, err)

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	boot, err := http.Get(dev.URL + "/pxe/boot.ipxe?mac=52:54:00:00:00:07&arch=x86_64&rack=r1")
	require.NoError(t, err)
	boot.Body.Close()

	for _, width := range []int64{1200, 360} {
		ctx := tab(t, browserCtx, width, 900)
		shots := newShots(t)

		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/ui/cluster"),
			chromedp.WaitVisible(chromedp.CSS("#members"))))

		rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#members tbody tr").length`))
		require.NoError(t, err)
		assert.Equal(t, 1, rows, "the dev member alone")
		assert.NotContains(t, text(t, ctx, "#leader"), "none", "a one-member cluster leads itself")
		checkAccessibility(t, ctx, "cluster")
		cluster := shots.take(ctx, "cluster")

		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/ui/machines"),
			chromedp.WaitVisible(chromedp.CSS("#profiles"))))
		assert.Contains(t, text(t, ctx, "#profiles"), "label rack=r1")
		assert.Contains(t, text(t, ctx, "#boots"), "52:54:00:00:00:07")
		checkAccessibility(t, ctx, "machines")
		shots.take(ctx, "machines")

		if width == 1200 && os.Getenv("EDGEFACTORY_UPDATE_SCREENSHOTS") == "1" {
			require.NoError(t, os.WriteFile(filepath.Join(e2e.RepoRoot(t), "docs", "ui-cluster.png"), cluster, 0o644))
		}
	}
}
