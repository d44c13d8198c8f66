package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgefactory/edgefactory/imager/buildprofile"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Who builds: the cluster builds with one build profile (the setting, else the one most live members share), and
// only alive members with that profile, role build and no degraded host tool may build. They form a ring of their
// own; copies stay on the ring of every alive member.

// ProfileSettingPrefix keeps each build profile a member ran with in Raft (build-profile/<id> → the profile's
// JSON, first write wins), so that an ID the cluster builds with, or an asset record names, can be read whole even
// when no live member has it.
const ProfileSettingPrefix = "build-profile/"

// placement is who may build in this member's view.
type placement struct {
	setting string // the buildProfile setting in force ("" = the profile most live members share)
	profile string // the ID of the profile the cluster builds with
	// planning is that profile's architecture and builder, which recipe keys take; Profile is "" when neither a
	// live member nor Raft knows them.
	planning buildprofile.Member
	members  []buildprofile.Member // the alive members, sorted by name
	whyNot   map[string]string     // by member: why it may not build ("" when it may)
}

// builders lists the members that may build.
func (p placement) builders() []string {
	var out []string

	for _, m := range p.members {
		if p.whyNot[m.Name] == "" {
			out = append(out, m.Name)
		}
	}

	return out
}

// place decides who may build among the alive members, under the setting in force.
func (c *Cluster) place(alive []memberMeta) placement {
	p := placement{setting: c.profileSetting(), whyNot: map[string]string{}}

	for _, m := range alive {
		b := buildprofile.Member{}
		if m.Build != nil {
			b = *m.Build
		}

		b.Name = m.Name
		p.members = append(p.members, b)
	}

	slices.SortFunc(p.members, func(a, b buildprofile.Member) int { return strings.Compare(a.Name, b.Name) })
	p.profile = buildprofile.Choose(p.setting, p.members)

	for _, m := range p.members {
		p.whyNot[m.Name] = buildprofile.WhyNot(m, p.profile, len(p.members))

		if m.Profile == p.profile && p.planning.Profile == "" {
			p.planning = buildprofile.Member{Profile: m.Profile, Arch: m.Arch, Builder: m.Builder}
		}
	}

	if p.planning.Profile == "" && p.profile != "" {
		if prof, ok := c.RecordedProfile(p.profile); ok {
			p.planning = buildprofile.Member{Profile: p.profile, Arch: prof.Arch, Builder: prof.Builder}
		}
	}

	return p
}

func (c *Cluster) profileSetting() string {
	s, _ := c.setting.Load().(string)

	return s
}

// SetBuildProfile applies the buildProfile cluster setting ("" = the profile most live members share).
func (c *Cluster) SetBuildProfile(setting string) {
	if c.profileSetting() == setting {
		return
	}

	c.setting.Store(setting)

	select {
	case c.replace <- struct{}{}:
	default:
	}
}

// RecordedProfile reads a build profile from Raft.
func (c *Cluster) RecordedProfile(id string) (buildprofile.Profile, bool) {
	raw, ok, err := c.store.Setting(ProfileSettingPrefix + id)
	if err != nil || !ok {
		return buildprofile.Profile{}, false
	}

	var p buildprofile.Profile
	if json.Unmarshal(raw, &p) != nil {
		return buildprofile.Profile{}, false
	}

	return p, true
}

// RecordProfile records this member's build profile in Raft unless it is there already.
func (c *Cluster) RecordProfile(ctx context.Context, p buildprofile.Profile) error {
	id := p.ID()
	if _, ok := c.RecordedProfile(id); ok {
		return nil
	}

	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode build profile: %w", err)
	}

	if _, err := raftstore.InitSetting(ctx, c, ProfileSettingPrefix+id, raw); err != nil {
		return fmt.Errorf("record build profile %s: %w", id, err)
	}

	return nil
}

// ErrNoBuilder is the class of the errors that say a member may not build, or that none may.
var ErrNoBuilder = errors.New("may not build")

// BuildProfile is the profile the cluster builds with: its ID, architecture and builder, which every member plans
// recipe keys with, whatever its own host.
func (c *Cluster) BuildProfile() (buildprofile.Member, error) {
	p := c.view.placement()
	if p.profile == "" {
		// The view is placed after gossip reports a change, a moment after this member starts: ask gossip now.
		p = c.place(c.members.Alive())
	}

	switch {
	case p.profile == "":
		return buildprofile.Member{}, errors.New("no build profile yet: no member has gossiped one")
	case p.planning.Profile == "":
		return buildprofile.Member{}, fmt.Errorf("the cluster's build profile %s is unknown here: no live member "+
			"has it and Raft holds no record of it (is the buildProfile setting right?)", p.profile)
	}

	return p.planning, nil
}

// Builders lists the members that may build, in ring order for key: the one that builds it first.
func (c *Cluster) Builders(key string) []string {
	r := c.view.builders.Load()

	return r.Holders(key, len(r.Members()))
}

// CannotBuild says why this member may not build (wrapping ErrNoBuilder), or nil when it may.
func (c *Cluster) CannotBuild() error {
	p := c.view.placement()

	why, ok := p.whyNot[c.Self()]
	if !ok {
		why = "not among the alive members yet"
	}

	if why == "" {
		return nil
	}

	return fmt.Errorf("%w: this member (%s): %s", ErrNoBuilder, c.Self(), why)
}

// NoBuilders says why no alive member may build (wrapping ErrNoBuilder).
func (c *Cluster) NoBuilders() error {
	p := c.view.placement()

	var whys []string
	for _, m := range p.members {
		whys = append(whys, m.Name+": "+p.whyNot[m.Name])
	}

	return fmt.Errorf("%w: no member may build: the cluster's build profile is %s and no live member that may "+
		"build has it (%s)", ErrNoBuilder, p.profile, strings.Join(whys, "; "))
}

// BuildState is one alive member's part in building, as this member sees it.
type BuildState struct {
	buildprofile.Member
	// WhyNot says why it may not build; "" when it may.
	WhyNot string
}

// BuildStates reports the profile the cluster builds with, the setting it came from, and every alive member's
// part in building.
func (c *Cluster) BuildStates() (profile, setting string, members []BuildState) {
	p := c.view.placement()

	for _, m := range p.members {
		members = append(members, BuildState{Member: m, WhyNot: p.whyNot[m.Name]})
	}

	return p.profile, p.setting, members
}
