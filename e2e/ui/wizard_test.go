//go:build ui

package ui

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
)

// walk is one way through the wizard: what to choose on each step, and the schematic the API makes of it.
type walk struct {
	name             string
	target, platform string
	secureBoot       bool
	extensions       []string // ticked on the extensions step (the second one found with the search box)
	cmdline          string
	// yaml is the same choices written for POST /schematics, extensions sorted as the official wizard sorts them.
	yaml string
	// steps the walk passes, in order.
	steps []string
	// width of the window: one walk runs at phone width.
	width int64
}

var walks = []walk{
	{
		name: "metal", target: "metal",
		extensions: []string{"siderolabs/i915", "siderolabs/amd-ucode"},
		cmdline:    "console=ttyS0 net.ifnames=0",
		yaml: "customization:\n  extraKernelArgs: [console=ttyS0, net.ifnames=0]\n" +
			"  systemExtensions:\n    officialExtensions: [siderolabs/amd-ucode, siderolabs/i915]\n",
		steps: []string{"target", "version", "arch", "extensions", "cmdline", "final"},
		width: 1200,
	},
	{
		name: "raspberry-pi", target: "sbc",
		yaml:  "overlay:\n  image: siderolabs/sbc-raspberrypi\n  name: rpi_generic\ncustomization: {}\n",
		steps: []string{"target", "version", "board", "extensions", "cmdline", "final"},
		width: 360,
	},
	{
		name: "nocloud-secureboot", target: "cloud", platform: "nocloud", secureBoot: true,
		extensions: []string{"siderolabs/amd-ucode"},
		cmdline:    "console=ttyS0",
		yaml: "customization:\n  extraKernelArgs: [console=ttyS0]\n" +
			"  systemExtensions:\n    officialExtensions: [siderolabs/amd-ucode]\n",
		steps: []string{"target", "version", "cloud", "arch", "extensions", "cmdline", "final"},
		width: 1200,
	},
}

func TestWizard(t *testing.T) {
	browserCtx := browser(t)
	e2e.RequireBuilds(t)

	dev := e2e.StartDev(t)

	for _, w := range walks {
		t.Run(w.name, func(t *testing.T) {
			ctx := tab(t, browserCtx, w.width, 900)
			shots := newShots(t)
			want := dev.CreateSchematic(t, w.yaml)

			require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/")))
			w.choose(t, ctx, shots, false)

			id := text(t, ctx, "#schematic-id")
			assert.Equal(t, want, id, "the wizard's schematic is the API's for the same choices")
			finalURL := location(t, ctx)
			assert.Contains(t, finalURL, "cmdline-set=true", "the final page has a URL of its own")

			t.Run("links answer", func(t *testing.T) { headLinks(t, ctx) })

			t.Run("badges", func(t *testing.T) {
				// The links were just fetched, so every asset is built: each badge says cached.
				require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(finalURL),
					chromedp.WaitVisible(chromedp.CSS(".asset-status.badge"))))

				badges, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
					`[...document.querySelectorAll(".asset-status")].map(e => e.textContent)`))
				require.NoError(t, err)
				require.NotEmpty(t, badges)

				for _, b := range badges {
					assert.True(t, b == "" || strings.HasPrefix(b, "cached"), "badge %q", b)
				}
			})

			t.Run("final URL reopens the final page", func(t *testing.T) {
				require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(finalURL),
					chromedp.WaitVisible(chromedp.CSS("#schematic-id"))))
				assert.Equal(t, want, text(t, ctx, "#schematic-id"))
			})

			t.Run("back", func(t *testing.T) {
				// The previous step, as the browser's Back button shows it (htmx restores the pushed step).
				require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/"),
					chromedp.WaitVisible(chromedp.CSS(`form[data-step="target"]`))))
				w.choose(t, ctx, nil, false)
				_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`history.back(); true`))
				require.NoError(t, err)
				waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				require.NoError(t, chromedp.Do(waitCtx, chromedp.WaitVisible(chromedp.CSS(`form[data-step="cmdline"]`))),
					"after Back, at %s", location(t, ctx))
				assert.NotContains(t, location(t, ctx), "cmdline-set", "Back leaves the final step's URL")
			})

			t.Run("reopen", func(t *testing.T) {
				require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(dev.URL+"/?schematic-id="+id)))
				w.choose(t, ctx, shots, true)
				assert.Equal(t, want, text(t, ctx, "#schematic-id"), "the reopened schematic is the same")
			})

			if w.name == "metal" && os.Getenv("EDGEFACTORY_UPDATE_SCREENSHOTS") == "1" {
				docs := filepath.Join(e2e.RepoRoot(t), "docs")
				first, err := os.ReadFile(filepath.Join(shots.dir, "01-target.png"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(docs, "ui-wizard.png"), first, 0o644))
				final, err := os.ReadFile(filepath.Join(shots.dir, "06-final.png"))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(docs, "ui-final.png"), final, 0o644))
			}
		})
	}
}

// choose walks the wizard from the current page to the final page. With reopened, the page came from
// ?schematic-id=: what the schematic holds must already be selected, and only what it cannot hold (hardware type
// for a cloud, platform, secure boot) is chosen.
func (w walk) choose(t *testing.T, ctx context.Context, shots *shots, reopened bool) {
	t.Helper()

	for _, step := range w.steps {
		require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`[data-step="`+step+`"], #schematic-id`))),
			"step %s", step)

		if step != "final" {
			require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`form[data-step="`+step+`"]`))),
				"step %s", step)
		}

		if shots != nil {
			name := step
			if reopened {
				name = "reopened-" + step
			}

			shots.take(ctx, name)
			checkAccessibility(t, ctx, step)
			if w.width <= 360 {
				fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
					`document.documentElement.scrollWidth <= window.innerWidth`))
				require.NoError(t, err)
				assert.True(t, fits, "the %s step fits %d px without scrolling sideways", step, w.width)
			}
		}

		switch step {
		case "target":
			if reopened && w.target != "cloud" {
				assert.True(t, checked(t, ctx, `input[name=target][value=`+w.target+`]`), "target pre-selected")
			}

			click(t, ctx, `input[name=target][value=`+w.target+`]`)
		case "version":
			require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#version"), "1.13.0")))
		case "cloud":
			click(t, ctx, `input[name=platform][value=`+w.platform+`]`)
		case "board":
			assert.True(t, checked(t, ctx, `input[name=board][value=rpi_generic]`), "rpi_generic pre-selected")
		case "arch":
			click(t, ctx, `input[name=arch][value=amd64]`)

			if w.secureBoot {
				click(t, ctx, `input[name=secureboot]`)
			}
		case "extensions":
			w.extensionsStep(t, ctx, reopened)
		case "cmdline":
			if reopened {
				v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#cmdline")))
				require.NoError(t, err)
				assert.Equal(t, w.cmdline, v, "kernel arguments restored")
			} else if w.cmdline != "" {
				require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#cmdline"), w.cmdline)))
			}
		case "final":
			return
		}

		// the keyboard path: Enter on the focused Next button submits the step
		require.NoError(t, chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#next")), chromedp.KeyEvent("\r")))
	}
}

// extensionsStep ticks the walk's extensions: the first from the list, the second after searching for it, so the
// search must keep the first ticked. Reopened, they must be ticked already.
func (w walk) extensionsStep(t *testing.T, ctx context.Context, reopened bool) {
	t.Helper()

	box := func(name string) string { return `input[name=extensions][value="` + name + `"]` }

	if reopened {
		for _, e := range w.extensions {
			assert.True(t, checked(t, ctx, box(e)), "extension %s restored", e)
		}

		return
	}

	for i, e := range w.extensions {
		if i > 0 {
			require.NoError(t, chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#search"), strings.TrimPrefix(e, "siderolabs/"))))
			require.NoError(t, chromedp.Do(ctx, chromedp.WaitNotPresent(chromedp.CSS(box("siderolabs/hello-world-service")))),
				"the search filters the list")
			assert.True(t, checked(t, ctx, box(w.extensions[0])), "a ticked extension stays through a search")
		}

		click(t, ctx, box(e))
	}
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))), "click %s", sel)
}

func checked(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()

	on, err := chromedp.Run(ctx, chromedp.JavascriptAttribute[bool](chromedp.CSS(sel), "checked"))
	require.NoError(t, err, "read %s", sel)

	return on
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()

	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, "read %s", sel)

	return strings.TrimSpace(s)
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()

	u, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)

	return u
}

// headLinks sends HEAD to every download link of the final page, in parallel (disk images build on first
// request), and wants 200 from each.
func headLinks(t *testing.T, ctx context.Context) {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll(".links a, .talosctl a")).map(a => a.href)`))
	require.NoError(t, err)
	require.NotEmpty(t, raw)

	var wg sync.WaitGroup

	for _, link := range raw {
		wg.Go(func() {
			reqCtx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			req, err := http.NewRequestWithContext(reqCtx, http.MethodHead, link, nil)
			if !assert.NoError(t, err) {
				return
			}

			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err, link) {
				return
			}

			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, "HEAD %s", link)
			t.Logf("HEAD %s: %d in %s", link, resp.StatusCode, time.Since(start).Round(time.Millisecond))
		})
	}

	wg.Wait()
}
