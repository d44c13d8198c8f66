package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/platforms"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

// View is what the templates render: the state, the step it asks for and that step's choices.
type View struct {
	State  State
	Step   Step
	Title  string
	Crumbs []Crumb
	// Hidden carries the choices already made through the step's form.
	Hidden []Field
	// Prefill is what the step shows selected (from ?schematic-id=).
	Prefill Prefill
	Error   string

	Versions  *VersionList
	Platforms []platforms.Platform
	Boards    []BoardChoice
	Archs     []string
	List      *ExtensionList
	Final     *Final
	DocsURL   string
}

// Section names the wizard in the navigation.
func (v *View) Section() string { return "wizard" }

// Crumb is one done step: what was chosen, and the URL that reopens the step.
type Crumb struct {
	Label, URL string
	Current    bool
}

// Field is one hidden form input.
type Field struct{ Name, Value string }

// VersionList is the version step: groups by minor version, newest first.
type VersionList struct {
	Default, LatestStable string
	Groups                []VersionGroup
}

// VersionGroup is the versions of one minor (its pre-releases form a group of their own).
type VersionGroup struct {
	Label    string
	Versions []string
}

// BoardChoice is a single-board computer and whether this cluster's catalog has its overlay.
type BoardChoice struct {
	platforms.SBC

	Available bool
}

// ExtensionList is the extensions step's list.
type ExtensionList struct {
	Search string
	Items  []ExtensionItem
}

// ExtensionItem is one official extension.
type ExtensionItem struct {
	Name, Description string
	Checked           bool
}

// stepFields are the query parameters a step sets: its form carries every other one as hidden inputs.
var stepFields = map[Step][]string{
	StepTarget:     {"target"},
	StepVersion:    {"version"},
	StepCloud:      {"platform"},
	StepBoard:      {"board"},
	StepArch:       {"arch", "secureboot"},
	StepExtensions: {"extensions", "search", "selected-extensions"},
	StepCustomize:  {"cmdline", "cmdline-set", "overlay-options", "bootloader"},
}

var stepTitles = map[Step]string{
	StepTarget:     "Hardware type",
	StepVersion:    "Talos version",
	StepCloud:      "Cloud platform",
	StepBoard:      "Single-board computer",
	StepArch:       "Architecture",
	StepExtensions: "System extensions",
	StepCustomize:  "Customization",
	StepFinal:      "Your image",
}

// view builds the page of state s. machineConfig is a just-posted embedded machine configuration (else it comes
// from the schematic the state names).
func (u *UI) view(r *http.Request, s State, machineConfig string) (*View, error) {
	v := &View{State: s, Step: s.Step(), DocsURL: docsURL(s)}
	v.Title = stepTitles[v.Step]
	v.Crumbs = crumbs(s, v.Step)
	v.Prefill = u.prefill(r, s)

	values := s.Values()
	for _, k := range stepFields[v.Step] {
		values.Del(k)
	}

	for _, k := range sortedKeys(values) {
		for _, val := range values[k] {
			v.Hidden = append(v.Hidden, Field{k, val})
		}
	}

	var err error

	switch v.Step {
	case StepTarget, StepArch, StepCustomize:
		v.Archs = archs(s)
	case StepVersion:
		v.Versions, err = u.versions(r, s)
	case StepCloud:
		v.Platforms = cloudPlatforms(s)
	case StepBoard:
		v.Boards, err = u.boards(r, s)
	case StepExtensions:
		checked := s.SelectedExtensions
		if len(checked) == 0 {
			checked = append(v.Prefill.Extensions, s.RealExtensions()...)
		}

		v.List, err = u.extensionChoices(r, s.Version, s.Search, checked)
	case StepFinal:
		if machineConfig == "" {
			machineConfig = v.Prefill.MachineConfig
		}

		v.Final, err = u.final(r, s, machineConfig)
	}

	return v, err
}

// prefill reads the schematic ?schematic-id= names; an unknown one pre-selects nothing.
func (u *UI) prefill(r *http.Request, s State) Prefill {
	p := Prefill{Target: TargetMetal, Bootloader: "auto"}

	if schematic.ValidID(s.SchematicID) {
		if raw, err := u.Schematics.Schematic(r.Context(), s.SchematicID); err == nil {
			if sc, err := schematic.Unmarshal(raw); err == nil {
				p = s.FromSchematic(sc)
			}
		}
	}

	// choices in the URL win over the schematic's
	if s.Cmdline != "" {
		p.Cmdline = s.Cmdline
	}

	if s.OverlayOptions != "" {
		p.OverlayOptions = s.OverlayOptions
	}

	if s.Bootloader != "" {
		p.Bootloader = s.Bootloader
	}

	if p.Board == "" {
		p.Board = "rpi_generic"
	}

	return p
}

func crumbs(s State, current Step) []Crumb {
	var out []Crumb

	add := func(step Step, label string) {
		out = append(out, Crumb{Label: label, URL: s.Until(step).URL()})
	}

	if s.Target != "" {
		add(StepTarget, map[string]string{TargetMetal: "Bare metal", TargetCloud: "Cloud",
			TargetSBC: "Single-board computer"}[s.Target])
	}

	if s.Version != "" {
		add(StepVersion, "Talos "+s.TalosVersion())
	}

	if p, ok := cloudPlatform(s.Platform); ok && s.Target == TargetCloud && current != StepCloud {
		add(StepCloud, p.Label)
	}

	if b, ok := board(s.Board); ok && s.Target == TargetSBC && current != StepBoard {
		add(StepBoard, b.Label)
	}

	if s.Arch != "" && current != StepArch && !singleArch(s) {
		label := s.Arch
		if s.SecureBoot {
			label += ", secure boot"
		}

		add(StepArch, label)
	}

	if len(s.Extensions) > 0 && current != StepExtensions {
		add(StepExtensions, plural(len(s.RealExtensions()), "extension"))
	}

	if s.CmdlineSet && current == StepFinal {
		add(StepCustomize, "Customization")
	}

	return append(out, Crumb{Label: stepTitles[current], Current: true})
}

// singleArch: a board or single-architecture platform has no architecture step of its own.
func singleArch(s State) bool {
	return len(archs(s)) == 1 && !s.SecureBootAllowed()
}

func archs(s State) []string {
	switch s.Target {
	case TargetSBC:
		return []string{platforms.ArchArm64}
	case TargetCloud:
		if p, ok := cloudPlatform(s.Platform); ok {
			return p.Architectures
		}
	}

	return []string{platforms.ArchAmd64, platforms.ArchArm64}
}

func plural(n int, word string) string {
	switch n {
	case 0:
		return "no " + word + "s"
	case 1:
		return "1 " + word
	default:
		return fmt.Sprintf("%d %ss", n, word)
	}
}

// versions lists the catalog's versions newest first, grouped by minor (pre-releases apart); boards need 1.7+.
func (u *UI) versions(r *http.Request, s State) (*VersionList, error) {
	raw, err := u.Catalog.Versions(r.Context())
	if err != nil {
		return nil, err
	}

	var list []semver.Version

	for _, v := range raw {
		sv, err := semver.ParseTolerant(v)
		if err != nil || (s.Target == TargetSBC && sv.LT(semver.MustParse("1.7.0"))) {
			continue
		}

		list = append(list, sv)
	}

	slices.SortFunc(list, func(a, b semver.Version) int { return b.Compare(a) })

	out := &VersionList{}

	for _, v := range list {
		if len(v.Pre) == 0 && out.LatestStable == "" {
			out.LatestStable = v.String()
		}

		label := fmt.Sprintf("%d.%d", v.Major, v.Minor)
		if len(v.Pre) > 0 {
			label += " pre-releases"
		}

		if n := len(out.Groups); n > 0 && out.Groups[n-1].Label == label {
			out.Groups[n-1].Versions = append(out.Groups[n-1].Versions, v.String())
		} else {
			out.Groups = append(out.Groups, VersionGroup{Label: label, Versions: []string{v.String()}})
		}
	}

	slices.SortStableFunc(out.Groups, func(a, b VersionGroup) int {
		va, _ := semver.ParseTolerant(a.Versions[0]) // parsed above
		vb, _ := semver.ParseTolerant(b.Versions[0]) // parsed above

		return semver.Version{Major: vb.Major, Minor: vb.Minor}.Compare(semver.Version{Major: va.Major, Minor: va.Minor})
	})

	out.Default = out.LatestStable
	if out.Default == "" && len(list) > 0 {
		out.Default = list[0].String()
	}

	return out, nil
}

func cloudPlatforms(s State) []platforms.Platform {
	v := s.semver()

	return slices.DeleteFunc(platforms.CloudPlatforms(), func(p platforms.Platform) bool { return v.LT(p.MinVersion) })
}

// boards lists the single-board computers of the version, marking those whose overlay the catalog lacks.
func (u *UI) boards(r *http.Request, s State) ([]BoardChoice, error) {
	overlays, err := u.Catalog.Overlays(r.Context(), s.TalosVersion())
	if err != nil {
		return nil, err
	}

	v := s.semver()

	var out []BoardChoice

	for _, b := range platforms.SBCs() {
		if v.LT(b.MinVersion) {
			continue
		}

		available := slices.ContainsFunc(overlays, func(o releaseOverlay) bool { return o.Name == b.OverlayName })
		out = append(out, BoardChoice{SBC: b, Available: available})
	}

	return out, nil
}

// extensionChoices is the version's extension list filtered by search (name or description, case-insensitive);
// checked extensions are always listed.
func (u *UI) extensionChoices(r *http.Request, version, search string, checked []string) (*ExtensionList, error) {
	exts, err := u.Catalog.Extensions(r.Context(), "v"+strings.TrimPrefix(version, "v"))
	if err != nil {
		return nil, err
	}

	out := &ExtensionList{Search: search}
	needle := strings.ToLower(search)

	for _, e := range exts {
		if e.Name == "siderolabs/metal-agent" { // internal to Omni; the official wizard hides it too
			continue
		}

		on := slices.Contains(checked, e.Name)
		if !on && needle != "" && !strings.Contains(strings.ToLower(e.Name), needle) &&
			!strings.Contains(strings.ToLower(e.Description), needle) {
			continue
		}

		out.Items = append(out.Items, ExtensionItem{Name: e.Name, Description: e.Description, Checked: on})
	}

	return out, nil
}

func docsURL(s State) string {
	v := s.semver()
	if v.Major == 0 && v.Minor == 0 {
		return "https://docs.siderolabs.com/talos/"
	}

	return fmt.Sprintf("https://docs.siderolabs.com/talos/v%d.%d/", v.Major, v.Minor)
}

func sortedKeys(v url.Values) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}

	slices.Sort(keys)

	return keys
}
