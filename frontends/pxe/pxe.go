// Package pxe serves iPXE boot scripts (docs/api.md §4): GET /pxe/{schematic}/{version}/{platform}-{arch}[-secureboot].
// The script's URLs point at the node that served it, so a machine downloads its kernel from the same nearby node.
package pxe

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/internal/memo"
)

// PXE holds what the handler needs.
type PXE struct {
	Assets frontends.Assets
	// BaseURL is this node's advertised URL (or the --pxe-url override) that scripts point at.
	BaseURL *url.URL
	Logger  *slog.Logger
	// Fixed makes /pxe/boot.ipxe scripts point at BaseURL too (--pxe-url given) rather than at the address the
	// machine reached this member on.
	Fixed bool
	// Machines chooses a machine's profile for /pxe/boot.ipxe; nil leaves that route out.
	Machines Machines

	// scripts remembers rendered scripts: a rack booting asks for the same few thousand times a minute.
	scripts *memo.Memo[rendering, []byte]
}

// rendering is everything a script's bytes depend on besides BaseURL, which never changes.
type rendering struct {
	schematic string
	boot      frontends.PXEBoot
}

// Mount registers the PXE route. Like the official service it is GET only (HEAD is answered by the router).
func (p *PXE) Mount(r chi.Router) {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}

	p.scripts = memo.New[rendering, []byte](10_000)

	if p.Machines != nil {
		r.Get("/pxe/boot.ipxe", p.machine)
	}

	r.Get("/pxe/{schematic}/{version}/{path}", p.script)
}

func (p *PXE) script(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "schematic")

	boot, err := p.Assets.PXE(r.Context(), id, chi.URLParam(r, "version"), chi.URLParam(r, "path"))
	if err != nil {
		frontends.WriteError(w, r, p.Logger, err)

		return
	}

	key := rendering{schematic: id, boot: boot}

	script, ok := p.scripts.Get(key)
	if !ok {
		script = Script(p.BaseURL, id, boot)
		p.scripts.Put(key, script)
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(script) //nolint:errcheck // the client hung up; nothing to do
}

// Script renders the exact bytes of the official service's iPXE script.
func Script(base *url.URL, schematicID string, b frontends.PXEBoot) []byte {
	asset := func(file string) string { return base.JoinPath("image", schematicID, b.Version, file).String() }

	var s strings.Builder

	s.WriteString("#!ipxe\n\nimgfree\n")

	if b.SecureBoot {
		s.WriteString("kernel " + asset(b.Platform+"-"+b.Arch+"-secureboot-uki.efi") + " " + b.Cmdline + "\n")
	} else {
		s.WriteString("kernel " + asset("kernel-"+b.Arch) + " " + b.Cmdline + "\n")
		s.WriteString("initrd " + asset("initramfs-"+b.Arch+".xz") + "\n")
	}

	s.WriteString("boot\n")

	return []byte(s.String())
}
