// Package ui serves the web UI of every member: the image wizard at / (the official Image Factory's steps, query
// parameters and schematics), its htmx fragments under /ui/, the cluster page (/ui/cluster), the machines page
// (/ui/machines), the final page's asset badges (/ui/asset-badge), the static files they need, and /llms.txt.
//
// Its guarantee: a page is a function of its URL. Every choice lives in the query string with the official
// wizard's parameter names, so any step can be bookmarked, shared or opened from a link copied from the official
// wizard, and the final page creates exactly the schematic the official wizard would (sorted extensions, kernel
// arguments split on single spaces; docs/api.md §7). Only the embedded machine configuration never enters a URL:
// it is stored in the schematic, which the URL names by ID. Everything is embedded in the binary (no CDN, no
// external fonts) and every page works without JavaScript; htmx, vendored, only makes the steps faster.
package ui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/machines"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed llms.txt
var llmsTxt []byte

// UI holds what the pages need.
type UI struct {
	Schematics frontends.Schematics
	Catalog    frontends.Catalog
	Talosctl   frontends.Talosctl
	Logger     *slog.Logger
	// ExternalURL is the base of the links the final page hands out, e.g. "http://factory.site.example:8080",
	// without a trailing slash; its host names the installer images.
	ExternalURL string
	// PXEURL is the base of the PXE script links (the node's --pxe-url, else ExternalURL).
	PXEURL string
	// Cluster, Assets and Machines feed the cluster page, the final page's asset badges and the machines page; a
	// nil one leaves its page out.
	Cluster  ClusterReader
	Assets   AssetReader
	Machines machines.Table

	tmpl *template.Template
}

// Mount registers the UI's routes.
func (u *UI) Mount(r chi.Router) {
	if u.Logger == nil {
		u.Logger = slog.New(slog.DiscardHandler)
	}

	u.tmpl = template.Must(template.New("ui").Funcs(funcs).Funcs(pageFuncs).ParseFS(templateFS, "templates/*.html"))

	static, _ := fs.Sub(staticFS, "static") // "static" is embedded above
	files := http.FileServerFS(static)

	r.Get("/", u.page)
	r.Post("/ui/wizard", u.wizard)
	r.Post("/ui/extensions-list", u.extensionsList)
	r.Get("/ui/version-doc", u.versionDoc)
	r.Get("/ui/cluster", u.clusterPage)
	r.Get("/ui/machines", u.machinesPage)
	r.Get("/ui/asset-badge", u.assetBadge)
	r.Get("/llms.txt", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(llmsTxt) //nolint:errcheck // the client hung up; static text
	})

	for _, dir := range []string{"/css/*", "/js/*", "/favicons/*"} {
		r.Get(dir, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=3600")
			files.ServeHTTP(w, req)
		})
	}
}

// page answers GET / with the whole page of the step the query string describes (HEAD: 200, empty).
func (u *UI) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("lang") {
		if !u.setLang(w, r) {
			return
		}
	}

	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)

		return
	}

	v, err := u.view(r, ParseState(r.URL.Query()), "")
	if err != nil {
		frontends.WriteError(w, r, u.Logger, err)

		return
	}

	u.render(w, r, http.StatusOK, "page", v)
}

// setLang answers ?lang= as the official does: empty is 400, anything else sets a year-long cookie. Only English
// exists, so the page is the same.
func (u *UI) setLang(w http.ResponseWriter, r *http.Request) bool {
	lang := r.URL.Query().Get("lang")
	if lang == "" {
		http.Error(w, "missing lang param", http.StatusBadRequest)

		return false
	}

	// G124: not Secure, because members are often reached over plain HTTP on a site's network
	http.SetCookie(w, &http.Cookie{Name: "lang", Value: lang, Path: "/", MaxAge: 365 * 24 * 60 * 60, //nolint:gosec // see above
		HttpOnly: true, SameSite: http.SameSiteLaxMode})

	return true
}

// wizard answers a step's form: the next step as a fragment with Hx-Push-Url for htmx, or a redirect to that
// step's page for a browser without JavaScript. The embedded machine configuration arrives only here (a POST
// body): the final step stores it in the schematic and the URL names the schematic instead.
func (u *UI) wizard(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	form := r.PostForm
	if form.Get("action") == "search" {
		// keep the ticked extensions as pre-selections, not as the step's answer
		form["selected-extensions"] = form["extensions"]
		form.Del("extensions")
	}

	if form.Get("search") == "" || form.Get("action") != "search" {
		form.Del("search")
	}

	s := ParseState(form)

	machineConfig := strings.TrimSpace(form.Get("machine-config"))
	if s.Step() == StepFinal && machineConfig != "" && s.MachineConfigChoice() {
		id, err := u.createWithConfig(r, s, machineConfig)
		if err != nil {
			u.answerError(w, r, s, err)

			return
		}

		s.SchematicID = id
	}

	if r.Header.Get("HX-Request") == "" {
		http.Redirect(w, r, s.URL(), http.StatusSeeOther) //nolint:gosec // G710: always "/" or "/?<query>": this host

		return
	}

	v, err := u.view(r, s, machineConfig)
	if err != nil {
		frontends.WriteError(w, r, u.Logger, err)

		return
	}

	w.Header().Set("Hx-Push-Url", s.URL())
	u.render(w, r, http.StatusOK, "wizard", v)
}

// answerError shows a step again with the client's mistake (bad overlay options) where htmx can show it, or
// as plain text.
func (u *UI) answerError(w http.ResponseWriter, r *http.Request, s State, err error) {
	if frontends.Classify(err) != frontends.ClassInvalid || r.Header.Get("HX-Request") == "" {
		frontends.WriteError(w, r, u.Logger, err)

		return
	}

	s.CmdlineSet = false

	v, verr := u.view(r, s, "")
	if verr != nil {
		frontends.WriteError(w, r, u.Logger, verr)

		return
	}

	v.Error = err.Error()
	u.render(w, r, http.StatusOK, "wizard", v)
}

// extensionsList is the extensions step's list filtered by the search text (htmx); ticked extensions stay.
func (u *UI) extensionsList(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)

		return
	}

	s := ParseState(r.PostForm)

	list, err := u.extensionChoices(r, s.Version, r.PostForm.Get("search"), r.PostForm["extensions"])
	if err != nil {
		frontends.WriteError(w, r, u.Logger, err)

		return
	}

	u.render(w, r, http.StatusOK, "extensions-list", list)
}

// versionDoc is a short pointer to the documentation of a Talos version (official route).
func (u *UI) versionDoc(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, http.StatusOK, "version-doc", docsURL(ParseState(r.URL.Query())))
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := u.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		frontends.WriteError(w, r, u.Logger, err)

		return
	}

	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client hung up; html/template escaped it
}

var funcs = template.FuncMap{
	"contains": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}

		return false
	},
	"sub":         func(a, b int) int { return a - b },
	"bootloaders": func() []bootloader { return bootloaderChoices },
}

type bootloader struct{ Value, Label, Help string }

// bootloaderChoices are the official wizard's bootloader radio buttons (Talos >= 1.12.0-alpha.2).
var bootloaderChoices = []bootloader{
	{"auto", "Automatic", "the imager's choice for the platform and architecture"},
	{"sd-boot", "systemd-boot", "UEFI only"},
	{"grub", "GRUB", "BIOS and UEFI"},
	{"dual-boot", "Dual boot", "GRUB for BIOS and systemd-boot for UEFI on one disk"},
}
