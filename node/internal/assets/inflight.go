package assets

import (
	"slices"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/recipe"
)

// Stages of a build after the imager's (imager.Stage): the asset service's own steps.
const (
	StageStoring   = "storing"            // into the CAS, verified, and recorded through Raft
	StageCopying   = "copying to holders" // asking the key's other holders to keep a copy
	stageAskLeader = "checking the index" // asking the leader whether the key was built meanwhile
)

// Build is one build this member runs, as status pages show it.
type Build struct {
	Key       string
	Schematic string // "" for a talosctl binary
	Version   string
	Path      string // the asset's normalised path, or the talosctl binary's name
	Kind      string
	Arch      string
	Stage     string
	Started   time.Time
}

// building is the table of the builds in flight on this member, by recipe key (one per key: single flight).
type building struct {
	mu sync.Mutex
	m  map[string]*Build
}

// begin enters r's build in the table and returns the function that moves it to a stage, and the one that ends it.
func (b *building) begin(r recipe.Recipe, now time.Time) (stage func(string), end func()) {
	entry := &Build{Key: r.Key, Schematic: r.SchematicID, Version: r.Version, Path: r.Asset.Path, Kind: r.Kind(),
		Arch: r.Asset.Arch, Stage: stageAskLeader, Started: now}
	if r.Talosctl != nil {
		entry.Path = r.Talosctl.Name
	}

	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]*Build{}
	}
	b.m[r.Key] = entry
	b.mu.Unlock()

	stage = func(s string) {
		b.mu.Lock()
		entry.Stage = s
		b.mu.Unlock()
	}
	end = func() {
		b.mu.Lock()
		if b.m[r.Key] == entry {
			delete(b.m, r.Key)
		}
		b.mu.Unlock()
	}

	return stage, end
}

// all lists the builds in flight, oldest first.
func (b *building) all() []Build {
	b.mu.Lock()
	out := make([]Build, 0, len(b.m))
	for _, e := range b.m {
		out = append(out, *e)
	}
	b.mu.Unlock()

	slices.SortFunc(out, func(x, y Build) int { return x.Started.Compare(y.Started) })

	return out
}

// of is the build of key, if one is in flight.
func (b *building) of(key string) (Build, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()

	e, ok := b.m[key]
	if !ok {
		return Build{}, false
	}

	return *e, true
}

// Building lists the builds this member runs now, oldest first.
func (s *Service) Building() []Build { return s.building.all() }

// BuildOf is the build of a recipe key this member runs now, if any.
func (s *Service) BuildOf(key string) (Build, bool) { return s.building.of(key) }

// imagerStages adapts a stage setter to the imager's reports.
func imagerStages(stage func(string)) imager.Report {
	return func(s imager.Stage) { stage(string(s)) }
}
