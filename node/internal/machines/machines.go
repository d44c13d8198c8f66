// Package machines keeps the network-boot machine table: the profiles (replicated in Raft as cluster settings
// machine-profile/<name>) that say which Talos a machine boots, the choice of a machine's profile, and the last boots
// this member saw. Profiles are validated before they are written: a profile names a schematic, version and platform
// the cluster can boot, or it is refused with the reason.
package machines

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/frontends"
	api "github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/pxe"
	"github.com/edgefactory/edgefactory/raftstore"
)

const profilePrefix = "machine-profile/"

// Settings reads the replicated cluster settings.
type Settings interface {
	Setting(key string) ([]byte, bool, error)
	Settings(prefix string) (map[string][]byte, error)
}

// Config is what the table needs.
type Config struct {
	// Self is this member's name, recorded with each boot it sees.
	Self     string
	Settings Settings
	// Leader commits writes (the leader's store, or a member forwarding to it).
	Leader raftstore.Applier
	// CheckBoot tells whether the cluster can boot a schematic, version and PXE path ("metal-amd64"); its error
	// says why not.
	CheckBoot func(ctx context.Context, schematic, version, path string) error
	// OthersSeen lists the boots the other live members saw (nil: this member's only).
	OthersSeen func(ctx context.Context) []api.Boot
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Table is the machine table of one member.
type Table struct {
	cfg   Config
	seen  *seenLog
	boots *prometheus.CounterVec
	// writes serialises this member's profile writes, so its checks for a second default or a duplicate selector
	// set see its own earlier writes.
	writes sync.Mutex
}

// New returns the table.
func New(cfg Config) *Table {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	t := &Table{cfg: cfg, seen: newSeenLog(256),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_netboot_boots_total",
			Help: "Network-boot scripts served by this member, by profile and outcome (profile, no_profile).",
		}, []string{"profile", "outcome"})}

	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(t.boots)
	}

	return t
}

// Profiles lists the profiles by name.
func (t *Table) Profiles(context.Context) ([]api.Profile, error) {
	raw, err := t.cfg.Settings.Settings(profilePrefix)
	if err != nil {
		return nil, fmt.Errorf("read machine profiles: %w", err)
	}

	out := make([]api.Profile, 0, len(raw))

	for _, key := range slices.Sorted(maps.Keys(raw)) {
		var p api.Profile
		if err := json.Unmarshal(raw[key], &p); err != nil {
			return nil, fmt.Errorf("decode machine profile %s: %w", key, err)
		}

		p.Name = strings.TrimPrefix(key, profilePrefix)
		out = append(out, p)
	}

	return out, nil
}

// Profile returns one profile, or a NotFound error.
func (t *Table) Profile(_ context.Context, name string) (api.Profile, error) {
	raw, ok, err := t.cfg.Settings.Setting(profilePrefix + name)
	if err != nil {
		return api.Profile{}, fmt.Errorf("read machine profile %s: %w", name, err)
	}

	if !ok {
		return api.Profile{}, frontends.NewError(frontends.ClassNotFound, "no machine profile named "+name, nil)
	}

	var p api.Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		return api.Profile{}, fmt.Errorf("decode machine profile %s: %w", name, err)
	}

	p.Name = name

	return p, nil
}

// PutProfile validates p and stores it under name.
func (t *Table) PutProfile(ctx context.Context, name string, p api.Profile) (api.Profile, bool, error) {
	p, err := normalise(name, p)
	if err != nil {
		return p, false, err
	}

	if err := t.check(ctx, p); err != nil {
		return p, false, err
	}

	t.writes.Lock()
	defer t.writes.Unlock()

	existing, err := t.Profiles(ctx)
	if err != nil {
		return p, false, err
	}

	created := true

	for _, other := range existing {
		if other.Name == name {
			created = false

			continue
		}

		if sameSelectors(other.Selectors, p.Selectors) {
			if p.Selectors.Empty() {
				return p, false, invalidf("profile %s has no selectors, which makes it the default profile, and "+
					"profile %s is the default already: give %s selectors or delete %s first", name, other.Name,
					name, other.Name)
			}

			return p, false, invalidf("profile %s has the same selectors as profile %s: no machine could tell "+
				"them apart", name, other.Name)
		}
	}

	stored := p
	stored.Name = ""

	raw, err := json.Marshal(stored)
	if err != nil {
		return p, false, fmt.Errorf("encode machine profile %s: %w", name, err)
	}

	if err := raftstore.PutSetting(ctx, t.cfg.Leader, profilePrefix+name, raw); err != nil {
		return p, false, err
	}

	t.cfg.Logger.Info("machine profile written", "profile", name, "created", created, "schematic", p.Schematic,
		"version", p.Version, "platform", p.Platform)

	return p, created, nil
}

// check asks the cluster whether it can boot what p names, for the architectures a profile may be used with.
func (t *Table) check(ctx context.Context, p api.Profile) error {
	path := p.Platform + "-amd64"
	if p.SecureBoot {
		path += "-secureboot"
	}

	err := t.cfg.CheckBoot(ctx, p.Schematic, p.Version, path)
	if err == nil {
		return nil
	}

	switch frontends.Classify(err) {
	case frontends.ClassInvalid, frontends.ClassNotFound:
		return frontends.NewError(frontends.ClassInvalid, fmt.Sprintf("profile %s: schematic %s, version %s, "+
			"platform %s: %v", p.Name, p.Schematic, p.Version, p.Platform, err), err)
	default:
		return err
	}
}

// DeleteProfile removes a profile; NotFound when there is none of that name.
func (t *Table) DeleteProfile(ctx context.Context, name string) error {
	existed, err := raftstore.DeleteSetting(ctx, t.cfg.Leader, profilePrefix+name)
	if err != nil {
		return err
	}

	if !existed {
		return frontends.NewError(frontends.ClassNotFound, "no machine profile named "+name, nil)
	}

	t.cfg.Logger.Info("machine profile deleted", "profile", name)

	return nil
}

// ChooseBoot picks the profile for m.
func (t *Table) ChooseBoot(ctx context.Context, m pxe.Machine) (pxe.MachineBoot, bool, error) {
	profiles, err := t.Profiles(ctx)
	if err != nil {
		return pxe.MachineBoot{}, false, err
	}

	p, ok := Choose(profiles, m)
	if !ok {
		return pxe.MachineBoot{}, false, nil
	}

	return pxe.MachineBoot{Profile: p.Name, Schematic: p.Schematic, Version: p.Version, Platform: p.Platform,
		SecureBoot: p.SecureBoot, ExtraKernelArgs: p.ExtraKernelArgs}, true, nil
}

// Booted records a script served: the boots table, the metric and one log line.
func (t *Table) Booted(m pxe.Machine, b pxe.MachineBoot, served string) {
	outcome := "profile"
	if b.Profile == "" {
		outcome = "no_profile"
	}

	t.boots.WithLabelValues(b.Profile, outcome).Inc()
	t.seen.add(api.Boot{Time: time.Now().UTC(), MAC: m.MAC.String(), Member: t.cfg.Self, Profile: b.Profile,
		Stage: "script", Served: served, Arch: m.Arch, UUID: m.UUID, IP: ipString(m)})
	t.cfg.Logger.Info("netboot script", "mac", m.MAC.String(), "arch", m.Arch, "profile", b.Profile,
		"outcome", outcome, "member", t.cfg.Self, "served", served)
}

// Answered records a proxyDHCP answer.
func (t *Table) Answered(b api.Boot) {
	b.Member = t.cfg.Self
	b.Stage = "dhcp"
	b.Time = time.Now().UTC()
	t.seen.add(b)
}

// LocalSeen lists this member's boots, newest first.
func (t *Table) LocalSeen() []api.Boot { return t.seen.list() }

// Seen lists the boots every live member saw, newest first.
func (t *Table) Seen(ctx context.Context) ([]api.Boot, error) {
	all := t.seen.list()
	if t.cfg.OthersSeen != nil {
		all = append(all, t.cfg.OthersSeen(ctx)...)
	}

	slices.SortStableFunc(all, func(a, b api.Boot) int { return b.Time.Compare(a.Time) })

	return all, nil
}

func ipString(m pxe.Machine) string {
	if !m.IP.IsValid() {
		return ""
	}

	return m.IP.String()
}

// seenLog keeps the last boots in a fixed ring.
type seenLog struct {
	mu    sync.Mutex
	boots []api.Boot
	next  int
	full  bool
}

func newSeenLog(n int) *seenLog { return &seenLog{boots: make([]api.Boot, n)} }

func (s *seenLog) add(b api.Boot) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.boots[s.next] = b
	s.next = (s.next + 1) % len(s.boots)
	s.full = s.full || s.next == 0
}

func (s *seenLog) list() []api.Boot {
	s.mu.Lock()
	defer s.mu.Unlock()

	n := s.next
	if s.full {
		n = len(s.boots)
	}

	out := make([]api.Boot, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, s.boots[(s.next-i+len(s.boots))%len(s.boots)])
	}

	return out
}
