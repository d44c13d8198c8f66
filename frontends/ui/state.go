package ui

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/imager/imageropts"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/platforms"
	yaml "go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

// Targets: what kind of machine the image is for (the official wizard's first step).
const (
	TargetMetal = "metal"
	TargetCloud = "cloud"
	TargetSBC   = "sbc"
)

// noExtensions is the official wizard's placeholder for "no extensions chosen" (docs/api.md §7).
const noExtensions = "-"

// Step names a page of the wizard, in order.
type Step string

// The wizard's steps.
const (
	StepTarget     Step = "target"
	StepVersion    Step = "version"
	StepCloud      Step = "cloud"
	StepBoard      Step = "board"
	StepArch       Step = "arch"
	StepExtensions Step = "extensions"
	StepCustomize  Step = "cmdline"
	StepFinal      Step = "final"
)

// State is every choice made so far, as the official wizard keeps it in the query string: a field is set once
// its step is done. The Selected* fields are not choices: they pre-select an answer on a step not yet done (from
// ?schematic-id= or a search that keeps the ticked extensions).
type State struct {
	Target         string
	Version        string // without the "v", as the official wizard writes it
	Platform       string
	Board          string
	Arch           string
	SecureBoot     bool
	Extensions     []string // as posted: may hold "-"
	Cmdline        string
	CmdlineSet     bool
	OverlayOptions string
	Bootloader     string // "", "auto", "sd-boot", "grub", "dual-boot"

	// SchematicID reopens a stored schematic: its choices pre-select the steps, and on the final page it supplies
	// what the URL never carries (the embedded machine configuration).
	SchematicID string
	// Search filters the extensions step.
	Search string
	// SelectedExtensions pre-ticks extensions on the extensions step.
	SelectedExtensions []string
}

// ParseState reads the official wizard's query parameters (target, version, platform, board, arch, secureboot,
// extensions, cmdline, cmdline-set, overlay-options, bootloader) and Edge Factory's schematic-id and search.
// It normalises as the official does: metal and boards run on the metal platform, a board is arm64, a cloud
// platform with one architecture has it chosen.
func ParseState(q url.Values) State {
	s := State{
		Target:             q.Get("target"),
		Version:            strings.TrimPrefix(strings.TrimSpace(q.Get("version")), "v"),
		Platform:           q.Get("platform"),
		Board:              q.Get("board"),
		Arch:               q.Get("arch"),
		SecureBoot:         q.Get("secureboot") == "true" || q.Get("secureboot") == "on",
		Extensions:         slices.DeleteFunc(slices.Clone(q["extensions"]), func(e string) bool { return e == "" }),
		Cmdline:            strings.TrimSpace(q.Get("cmdline")),
		CmdlineSet:         q.Get("cmdline-set") != "",
		OverlayOptions:     strings.TrimSpace(q.Get("overlay-options")),
		Bootloader:         q.Get("bootloader"),
		SchematicID:        strings.TrimSpace(q.Get("schematic-id")),
		Search:             strings.TrimSpace(q.Get("search")),
		SelectedExtensions: q["selected-extensions"],
	}

	switch s.Target {
	case TargetMetal:
		s.Platform = platforms.MetalPlatform().Name
	case TargetSBC:
		s.Platform = platforms.MetalPlatform().Name
		if s.Board != "" && s.Arch == "" {
			s.Arch = platforms.ArchArm64
		}
	case TargetCloud:
		if p, ok := cloudPlatform(s.Platform); ok && len(p.Architectures) == 1 && s.Arch == "" {
			s.Arch = p.Architectures[0]
		}
	default:
		s.Target = ""
	}

	// a real choice of extensions makes the placeholder redundant
	if real := s.RealExtensions(); len(real) > 0 {
		s.Extensions = real
	}

	return s
}

// Step is the page the state asks for: the first step not done yet.
func (s State) Step() Step {
	switch {
	case s.Target == "":
		return StepTarget
	case s.Version == "":
		return StepVersion
	case s.Target == TargetCloud && s.Platform == "":
		return StepCloud
	case s.Target == TargetSBC && s.Board == "":
		return StepBoard
	case s.Arch == "":
		return StepArch
	case len(s.Extensions) == 0 || s.Search != "":
		return StepExtensions
	case !s.CmdlineSet:
		return StepCustomize
	default:
		return StepFinal
	}
}

// Values is the query string of the state (the official parameter names); the embedded machine configuration is
// never part of it.
func (s State) Values() url.Values {
	v := url.Values{}

	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}

	set("target", s.Target)
	set("version", s.Version)
	set("platform", s.Platform)
	set("board", s.Board)
	set("arch", s.Arch)

	if s.SecureBoot {
		v.Set("secureboot", "true")
	}

	if len(s.Extensions) > 0 {
		v["extensions"] = slices.Clone(s.Extensions)
	}

	set("cmdline", s.Cmdline)

	if s.CmdlineSet {
		v.Set("cmdline-set", "true")
	}

	set("overlay-options", s.OverlayOptions)
	set("bootloader", s.Bootloader)
	set("schematic-id", s.SchematicID)
	set("search", s.Search)

	if len(s.SelectedExtensions) > 0 {
		v["selected-extensions"] = slices.Clone(s.SelectedExtensions)
	}

	return v
}

// URL is the wizard page of the state.
func (s State) URL() string {
	if q := s.Values().Encode(); q != "" {
		return "/?" + q
	}

	return "/"
}

// Until is the state as it was when step was shown: the choices of step and every later step removed (what a
// breadcrumb links to).
func (s State) Until(step Step) State {
	out := State{SchematicID: s.SchematicID}
	order := []Step{StepTarget, StepVersion, StepCloud, StepBoard, StepArch, StepExtensions, StepCustomize}
	keep := func(st Step) bool { return slices.Index(order, st) < slices.Index(order, step) }

	if keep(StepTarget) {
		out.Target = s.Target
	}

	if keep(StepVersion) {
		out.Version = s.Version
	}

	if keep(StepCloud) && s.Target == TargetCloud {
		out.Platform = s.Platform
	}

	if keep(StepBoard) {
		out.Board = s.Board
	}

	if keep(StepArch) {
		out.Arch, out.SecureBoot = s.Arch, s.SecureBoot
		if s.Target == TargetCloud {
			out.Platform = s.Platform
		}
	} else if s.Target == TargetCloud {
		// a single-architecture platform has no arch step: going back to it means choosing the platform again
		if p, ok := cloudPlatform(s.Platform); ok && len(p.Architectures) == 1 {
			out.Platform = ""
		}
	}

	if keep(StepExtensions) {
		out.Extensions = s.Extensions
	} else if step == StepExtensions {
		out.SelectedExtensions = s.RealExtensions()
	}

	return out
}

// RealExtensions are the chosen extensions without the placeholder, sorted as the official wizard sorts them.
func (s State) RealExtensions() []string {
	out := slices.DeleteFunc(slices.Clone(s.Extensions), func(e string) bool { return e == noExtensions || e == "" })
	slices.Sort(out)

	return slices.Compact(out)
}

// TalosVersion is the "v"-prefixed version.
func (s State) TalosVersion() string { return "v" + s.Version }

// semver of the state's version; the zero version when it does not parse.
func (s State) semver() semver.Version {
	v, _ := semver.ParseTolerant(s.Version) // a bad version compares as 0.0.0: no optional features

	return v
}

// SecureBootAllowed tells whether the arch step offers secure boot: Talos >= 1.5 on metal or a platform that
// boots secure-boot images.
func (s State) SecureBootAllowed() bool {
	if s.semver().LT(semver.MustParse("1.5.0")) {
		return false
	}

	if s.Target == TargetMetal {
		return true
	}

	p, ok := cloudPlatform(s.Platform)

	return s.Target == TargetCloud && ok && p.SecureBootSupported
}

// BootloaderChoice tells whether the customization step offers a bootloader (Talos >= 1.12.0-alpha.2).
func (s State) BootloaderChoice() bool {
	return s.semver().GTE(semver.MustParse("1.12.0-alpha.2"))
}

// MachineConfigChoice tells whether the customization step offers an embedded machine configuration (Talos >= 1.12).
func (s State) MachineConfigChoice() bool {
	return s.semver().GTE(semver.MustParse("1.12.0-alpha.0"))
}

// OverlayOptionsChoice tells whether the customization step offers overlay options (boards, Talos >= 1.7).
func (s State) OverlayOptionsChoice() bool {
	return s.Target == TargetSBC && quirks.New(s.TalosVersion()).SupportsOverlay()
}

// Schematic is the schematic the official wizard creates for the state (docs/api.md §2.6): extensions sorted and
// without "-", the kernel arguments split on single spaces, the board's overlay with its options, the bootloader
// unless "auto". overlay is the board's overlay image and name (from the catalog). machineConfig is the embedded
// machine configuration, which never travels in the URL. Errors are the client's (bad overlay options or
// bootloader).
func (s State) Schematic(overlay schematic.Overlay, machineConfig string) (*schematic.Schematic, error) {
	out := &schematic.Schematic{}

	if s.Cmdline != "" {
		out.Customization.ExtraKernelArgs = strings.Split(s.Cmdline, " ")
	}

	if exts := s.RealExtensions(); len(exts) > 0 {
		out.Customization.SystemExtensions.OfficialExtensions = exts
	}

	if s.OverlayOptionsChoice() {
		out.Overlay = overlay

		var options map[string]any
		if err := yaml.Unmarshal([]byte(s.OverlayOptions), &options); err != nil {
			return nil, fmt.Errorf("overlay options are not a YAML mapping: %w", err)
		}

		out.Overlay.Options = options
	}

	if s.Bootloader != "" && s.Bootloader != "auto" {
		b, err := imageropts.BootloaderKindString(s.Bootloader)
		if err != nil {
			return nil, fmt.Errorf("unknown bootloader %q (auto, sd-boot, grub, dual-boot)", s.Bootloader)
		}

		out.Customization.Bootloader = b
	}

	out.Customization.EmbeddedMachineConfiguration = machineConfig

	return out, nil
}

// FromSchematic is the state's pre-selections taken from a stored schematic: a board's overlay makes it a
// board image, and its extensions, kernel arguments, overlay options and bootloader are what the steps offer
// first. Choices already made in the state win.
func (s State) FromSchematic(sc *schematic.Schematic) Prefill {
	p := Prefill{
		Target:        TargetMetal,
		Extensions:    sc.Extensions(),
		Cmdline:       strings.Join(sc.Customization.ExtraKernelArgs, " "),
		Bootloader:    "auto",
		MachineConfig: sc.Customization.EmbeddedMachineConfiguration,
	}

	if sc.HasOverlay() {
		p.Target = TargetSBC

		for _, b := range platforms.SBCs() {
			if b.OverlayName == sc.Overlay.Name {
				p.Board = b.Name

				break
			}
		}

		if len(sc.Overlay.Options) > 0 {
			if out, err := yaml.Marshal(sc.Overlay.Options); err == nil {
				p.OverlayOptions = strings.TrimSpace(string(out))
			}
		}
	}

	if sc.Customization.Bootloader != schematic.BootloaderNone {
		p.Bootloader = sc.Customization.Bootloader.String()
	}

	return p
}

// Prefill is what a step shows selected before the user chooses.
type Prefill struct {
	Target, Board, Cmdline, OverlayOptions, Bootloader, MachineConfig string
	Extensions                                                        []string
}

func cloudPlatform(name string) (platforms.Platform, bool) {
	for _, p := range platforms.CloudPlatforms() {
		if p.Name == name {
			return p, true
		}
	}

	return platforms.Platform{}, false
}

func board(name string) (platforms.SBC, bool) {
	for _, b := range platforms.SBCs() {
		if b.Name == name {
			return b, true
		}
	}

	return platforms.SBC{}, false
}
