package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/platforms"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

type releaseOverlay = release.Overlay

// Final is the last page: the schematic and everything that boots or installs it from this cluster.
type Final struct {
	ID, YAML string
	// Links are the first-boot downloads; each has the /image (or /pxe) path a status badge can be keyed by.
	Links []Link
	// Installer and SecureBootInstaller are image references on this cluster's registry.
	Installer, SecureBootInstaller string
	Talosctl                       []Link
	Commands                       []Command
	HasMachineConfig               bool
}

// Link is one download.
type Link struct {
	Label, URL string
	// Asset is the asset's path under /image/<id>/<version>/ (or "pxe:<path>"): the key of its status.
	Asset string
	Note  string
}

// Command is a command line to copy.
type Command struct{ Label, Text string }

// final creates the schematic of the state (with the embedded machine configuration, if any) and lists its links.
func (u *UI) final(r *http.Request, s State, machineConfig string) (*Final, error) {
	id, canonical, err := u.create(r, s, machineConfig)
	if err != nil {
		return nil, err
	}

	f := &Final{ID: id, YAML: string(canonical), HasMachineConfig: machineConfig != ""}
	imageBase := u.ExternalURL + "/image/" + id + "/" + s.TalosVersion() + "/"
	pxeBase := strings.TrimSuffix(u.PXEURL, "/") + "/pxe/" + id + "/" + s.TalosVersion() + "/"

	for _, l := range assetLinks(s) {
		if strings.HasPrefix(l.Asset, "pxe:") {
			l.URL = pxeBase + strings.TrimPrefix(l.Asset, "pxe:")
		} else {
			l.URL = imageBase + l.Asset
		}

		f.Links = append(f.Links, l)
	}

	if s.SecureBoot {
		f.Links = append(f.Links, Link{Label: "Secure boot signing certificate", Asset: "signing-cert.pem",
			URL: u.ExternalURL + "/secureboot/signing-cert.pem", Note: "enroll it where keys are not enrolled automatically"})
	}

	f.Installer, f.SecureBootInstaller = u.installers(s, id)

	files, err := u.Talosctl.TalosctlFiles(r.Context(), s.TalosVersion())
	if err != nil && frontends.Classify(err) != frontends.ClassUnavailable {
		return nil, err
	}

	for _, file := range files {
		f.Talosctl = append(f.Talosctl, Link{Label: file, URL: u.ExternalURL + "/talosctl/" + s.TalosVersion() + "/" + file})
	}

	installer := f.Installer
	if s.SecureBoot {
		installer = f.SecureBootInstaller
	}

	f.Commands = []Command{
		{"Upgrade a running machine to this image", "talosctl upgrade --image " + installer},
		{"Try it in local QEMU virtual machines", "talosctl cluster create qemu --schematic-id " + id +
			" --talos-version " + s.TalosVersion()},
	}

	return f, nil
}

// create stores the state's schematic. When the URL names a stored schematic that is this state's schematic plus
// an embedded machine configuration, that one is meant: the configuration never travels in the URL.
func (u *UI) create(r *http.Request, s State, machineConfig string) (string, []byte, error) {
	sc, err := s.Schematic(u.overlay(s), machineConfig)
	if err != nil {
		return "", nil, frontends.NewError(frontends.ClassInvalid, err.Error(), err)
	}

	if machineConfig != "" && schematic.ValidID(s.SchematicID) {
		if id, err := sc.ID(); err != nil || id != s.SchematicID {
			// the stored configuration belongs to another set of choices: this state has none
			sc.Customization.EmbeddedMachineConfiguration = ""
		}
	}

	return u.Schematics.CreateSchematic(r.Context(), sc)
}

// createWithConfig stores the state's schematic with a just-posted machine configuration, returning its ID.
func (u *UI) createWithConfig(r *http.Request, s State, machineConfig string) (string, error) {
	sc, err := s.Schematic(u.overlay(s), machineConfig)
	if err != nil {
		return "", frontends.NewError(frontends.ClassInvalid, err.Error(), err)
	}

	id, _, err := u.Schematics.CreateSchematic(r.Context(), sc)

	return id, err
}

// overlay is the board's overlay as the official wizard names it (Talos machinery's board list).
func (u *UI) overlay(s State) schematic.Overlay {
	b, ok := board(s.Board)
	if !ok {
		return schematic.Overlay{}
	}

	return schematic.Overlay{Image: b.OverlayImage, Name: b.OverlayName}
}

// installers are the installer image references on this cluster: <host>/<platform>-installer/<id>:<v> from Talos
// 1.10, <host>/installer/<id>:<v> before, and their secure-boot variants.
func (u *UI) installers(s State, id string) (string, string) {
	host := u.ExternalURL
	if parsed, err := url.Parse(u.ExternalURL); err == nil && parsed.Host != "" {
		host = parsed.Host
	}

	repo := "installer"
	if quirks.New(s.TalosVersion()).SupportsUnifiedInstaller() {
		repo = s.Platform + "-installer"
	}

	return fmt.Sprintf("%s/%s/%s:%s", host, repo, id, s.TalosVersion()),
		fmt.Sprintf("%s/%s-secureboot/%s:%s", host, repo, id, s.TalosVersion())
}

// assetLinks are the first-boot assets of the state's target, platform, architecture and secure boot choice.
func assetLinks(s State) []Link {
	arch, sb := s.Arch, ""
	if s.SecureBoot {
		sb = "-secureboot"
	}

	if s.Target == TargetSBC {
		b, _ := board(s.Board)

		return []Link{{Label: "Disk image", Asset: b.DiskImagePath(s.TalosVersion()),
			Note: "write it to the board's SD card or eMMC"}}
	}

	p := platforms.MetalPlatform()
	if s.Target == TargetCloud {
		p, _ = cloudPlatform(s.Platform)
	}

	target := p.Name + "-" + arch + sb

	var links []Link

	for _, method := range p.BootMethods {
		switch method {
		case platforms.BootMethodISO:
			links = append(links, Link{Label: "ISO", Asset: target + ".iso", Note: "boot it from a USB stick or virtual media"})
		case platforms.BootMethodDiskImage:
			links = append(links, Link{Label: "Disk image", Asset: target + "." + p.DiskImageSuffix,
				Note: "write it to the boot disk, or import it as the VM's disk"})
		case platforms.BootMethodPXE:
			links = append(links, Link{Label: "PXE script (iPXE)", Asset: "pxe:" + target,
				Note: "chain it from iPXE: the kernel and initramfs follow from this cluster"})
		}
	}

	if !p.NotOnlyDiskImage() {
		return links
	}

	links = append(links, Link{Label: "Unified kernel image (UKI)", Asset: target + "-uki.efi",
		Note: "boot it directly from UEFI"})

	if !s.SecureBoot {
		links = append(links,
			Link{Label: "Kernel", Asset: "kernel-" + arch},
			Link{Label: "Initramfs", Asset: "initramfs-" + arch + ".xz"},
			Link{Label: "Kernel command line", Asset: "cmdline-" + target})
	}

	return links
}
