// Package buildprofile names what decides the bytes a member would build — its build profile: the Edge Factory
// version, the builder and Talos imager it drives, its architecture, and the versions of the host tools the imager
// runs with their adapters — and chooses which profile builds for a cluster and which members may build.
//
// Guarantee: every member given the same members and the same setting chooses the same profile (Choose is a pure
// function, ties broken by the lowest ID), and a profile's ID changes whenever anything in it does.
package buildprofile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/edgefactory/edgefactory/imager/hosttools"
)

// Profile is what decides the bytes a member would build.
type Profile struct {
	// EdgeFactory is the member's Edge Factory version (its adapters are part of it).
	EdgeFactory string `json:"edgefactory"`
	// Builder names the builder and the Talos imager it drives (imager.Version); recipe keys carry it.
	Builder string `json:"builder"`
	// Arch is the architecture the member builds on (linux/<arch> imager image); recipe keys carry it.
	Arch string `json:"arch"`
	// Tools are the host tools the imager runs, as hosttools.Check found them, in hosttools.Tools' order.
	Tools []Tool `json:"tools"`
}

// Tool is one host tool in a profile: what runs, not where it was found (paths differ between hosts that build
// the same bytes).
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Status is ok, adapted (an adapter translates its arguments or picks another binary) or missing.
	Status string `json:"status"`
	// Degraded: it runs, but makes less than a proper one would (hosttools.ToolStatus.Degraded).
	Degraded bool `json:"degraded,omitempty"`
}

// New is the profile of a member running version, with builder and arch, whose host tools report says what runs.
func New(version, builder, arch string, report hosttools.Report) Profile {
	p := Profile{EdgeFactory: version, Builder: builder, Arch: arch, Tools: []Tool{}}

	for _, t := range report.Tools {
		if t.Name == "busybox" { // the synthetic release's, never a build's
			continue
		}

		p.Tools = append(p.Tools, Tool{Name: t.Name, Version: t.Version, Status: string(t.Status), Degraded: t.Degraded})
	}

	return p
}

// idDomain starts the hashed encoding, so that a later encoding never collides with this one.
const idDomain = "edgefactory build profile v1\n"

// ID is a short name of the profile: 16 hex digits of the sha256 of its JSON.
func (p Profile) ID() string {
	data, err := json.Marshal(p)
	if err != nil { // strings, bools and slices of them: unreachable
		panic(fmt.Sprintf("encode build profile: %v", err))
	}

	sum := sha256.Sum256(append([]byte(idDomain), data...))

	return hex.EncodeToString(sum[:8])
}

// Degraded names the tools that run but make less than a proper one would: such a member never builds.
func (p Profile) Degraded() []string {
	var out []string

	for _, t := range p.Tools {
		if t.Degraded {
			out = append(out, t.Name)
		}
	}

	return out
}

// Roles a member is started with.
const (
	RoleBuild = "build" // builds what its profile may build (the default)
	RoleCache = "cache" // never builds: fetches, serves and holds copies
)

// ParseRole checks a role given on the command line; "" is RoleBuild.
func ParseRole(s string) (string, error) {
	switch s {
	case "", RoleBuild:
		return RoleBuild, nil
	case RoleCache:
		return RoleCache, nil
	}

	return "", fmt.Errorf("unknown role %q: want %s (builds, the default) or %s (never builds; fetches, serves "+
		"and holds copies)", s, RoleBuild, RoleCache)
}

// Member is one live member as far as building goes: what it gossips of its profile and role.
type Member struct {
	Name string `json:"name,omitempty"`
	// Profile is the ID of the member's profile; Arch and Builder are what recipe keys take from it.
	Profile string `json:"profile"`
	Arch    string `json:"arch,omitempty"`
	Builder string `json:"builder,omitempty"`
	// Role is RoleBuild or RoleCache ("" from a member older than roles: RoleBuild).
	Role string `json:"role,omitempty"`
	// Degraded names its degraded host tools.
	Degraded []string `json:"degraded,omitempty"`
}

// MemberOf is how a member with profile p and role gossips itself.
func MemberOf(name string, p Profile, role string) Member {
	return Member{Name: name, Profile: p.ID(), Arch: p.Arch, Builder: p.Builder, Role: role, Degraded: p.Degraded()}
}

// candidate reports whether m could build if the cluster chose its profile.
func (m Member) candidate() bool {
	return m.Role != RoleCache && len(m.Degraded) == 0 && m.Profile != ""
}

// Choose returns the profile that builds: setting when it names one; else the profile the most candidate members
// share (role build, no degraded tool), the lowest ID on a tie. With no candidate at all it is the profile the most
// members share, so that keys are still planned alike and what was built is still served; "" for no member.
func Choose(setting string, members []Member) string {
	if setting != "" {
		return setting
	}

	if id := mostShared(members, Member.candidate); id != "" {
		return id
	}

	return mostShared(members, func(Member) bool { return true })
}

func mostShared(members []Member, counted func(Member) bool) string {
	count := map[string]int{}

	for _, m := range members {
		if m.Profile != "" && counted(m) {
			count[m.Profile]++
		}
	}

	best := ""

	for id, n := range count {
		if best == "" || n > count[best] || n == count[best] && id < best {
			best = id
		}
	}

	return best
}

// WhyNot says why m may not build when the cluster builds with profile and has alive members, or "" when it may. A
// member alone builds even with degraded tools (it warned at start): nothing else could, and a lab or a one-node
// site would answer 503 to every build. Beside other members, one with degraded tools never builds.
func WhyNot(m Member, profile string, alive int) string {
	switch {
	case m.Role == RoleCache:
		return "role cache: never builds"
	case len(m.Degraded) > 0 && (alive > 1 || m.Profile != profile):
		return fmt.Sprintf("degraded host tools (%s): its builds would differ; run `make deps` or `edgefactory "+
			"doctor` there", joinNames(m.Degraded))
	case m.Profile == "":
		return "no build profile gossiped (an older member)"
	case m.Profile != profile:
		return fmt.Sprintf("build profile %s, the cluster builds with %s", m.Profile, profile)
	}

	return ""
}

func joinNames(names []string) string { return strings.Join(slices.Sorted(slices.Values(names)), ", ") }
