package bundle

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/blang/semver/v4"
	"golang.org/x/sync/errgroup"

	"github.com/edgefactory/edgefactory/imager/release"
)

// versionSpec is Options.Versions: a list of versions, or a semver range over the published ones.
type versionSpec struct {
	list []string // "v"-prefixed semver
	rng  semver.Range
	expr string
	pre  bool // the range names a pre-release, so pre-releases may match
}

// rangeVersion finds versions written with a "v" inside a range expression (">=v1.12.0").
var rangeVersion = regexp.MustCompile(`(^|[\s<>=!~^])v(\d)`)

// listSep is a comma with the spaces around it.
var listSep = regexp.MustCompile(`\s*,\s*`)

func parseVersions(s string) (versionSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return versionSpec{}, nil // no release: extra images only
	}

	// A range has an operator, a space (other than around commas) or a wildcard; anything else is a list, every
	// element of which must be a version.
	if l := listSep.ReplaceAllString(s, ","); !strings.ContainsAny(l, "<>=!~^|* ") && !strings.Contains(strings.ToLower(l), ".x") {
		var list []string

		for f := range strings.SplitSeq(s, ",") {
			f = strings.TrimSpace(f)

			v, err := semver.ParseTolerant(f)
			if err != nil || strings.Count(strings.TrimPrefix(f, "v"), ".") != 2 {
				return versionSpec{}, fmt.Errorf("--versions %q: %q is not a version such as v1.13.0", s, f)
			}

			list = append(list, "v"+v.String())
		}

		return versionSpec{list: sortedVersions(list)}, nil
	}

	expr := rangeVersion.ReplaceAllString(listSep.ReplaceAllString(s, " "), "$1$2")

	rng, err := semver.ParseRange(expr)
	if err != nil {
		return versionSpec{}, fmt.Errorf("--versions %q: neither a list of versions (v1.12.0,v1.13.0) nor a semver "+
			"range (>=v1.12.0 <v1.14.0): %w", s, err)
	}

	return versionSpec{rng: rng, expr: s, pre: strings.Contains(expr, "-")}, nil
}

// compareVersions orders "v"-prefixed versions by semver (unparseable ones last, by name).
func compareVersions(a, b string) int {
	va, ea := semver.ParseTolerant(a)
	vb, eb := semver.ParseTolerant(b)

	switch {
	case ea == nil && eb == nil:
		return va.Compare(vb)
	case ea == nil:
		return -1
	case eb == nil:
		return 1
	default:
		return strings.Compare(a, b)
	}
}

// item is an image to copy, under its original reference.
type item struct {
	origin   origin
	role     Role
	versions []string
}

// plan is what a run copies.
type plan struct {
	versions []string
	items    []*item
	failures []Failure
}

// planner collects items, once per original reference.
type planner struct {
	mu       sync.Mutex
	byRef    map[string]*item
	order    []*item
	failures []Failure
}

func (p *planner) add(o origin, role Role, version string) {
	p.mu.Lock()
	defer p.mu.Unlock()

	key := o.String()

	it, ok := p.byRef[key]
	if !ok {
		it = &item{origin: o, role: role}
		p.byRef[key] = it
		p.order = append(p.order, it)
	}

	if role.rank() < it.role.rank() {
		it.role = role
	}

	if version != "" && !slices.Contains(it.versions, version) {
		it.versions = append(it.versions, version)
	}
}

func (p *planner) fail(what string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.failures = append(p.failures, Failure{What: what, Error: err.Error()})
}

// releaseSource reads the release at From through the store.
func (m *mirror) releaseSource() release.Source {
	reg, ns, _ := strings.Cut(m.from, "/")

	return release.Source{Registry: reg, Namespace: ns, Insecure: m.opts.Insecure, MinVersion: "0.0.0",
		Transport: m.client.cached}
}

// plan reads the release's catalogs and lists every image to copy. A version that cannot be read, an unknown
// extension or overlay, or a failed cluster image listing is a failure, not the end of the run.
func (m *mirror) plan(ctx context.Context) plan {
	p := &planner{byRef: map[string]*item{}}
	src := m.releaseSource()

	versions := m.versions.list
	if m.versions.rng != nil {
		published, err := src.ListVersions(ctx)
		if err != nil {
			p.fail("versions "+m.versions.expr, err)
		}

		for _, v := range published {
			sv, err := semver.ParseTolerant(v)
			if err == nil && m.versions.rng(sv) && (len(sv.Pre) == 0 || m.versions.pre) {
				versions = append(versions, v)
			}
		}

		if err == nil && len(versions) == 0 {
			p.fail("versions "+m.versions.expr, fmt.Errorf("no version of %s/imager matches", m.from))
		}

		m.log.Info("versions in range", "range", m.versions.expr, "versions", versions)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Jobs)

	for _, v := range versions {
		g.Go(func() error {
			m.planVersion(gctx, src, v, p)

			return nil
		})
	}

	_ = g.Wait() // planVersion records its failures

	for _, e := range m.opts.ExtraImages {
		o, _ := parseOrigin(e) // checked by prepare
		p.add(o, RoleExtra, "")
	}

	return plan{versions: versions, items: p.order, failures: p.failures}
}

func (m *mirror) planVersion(ctx context.Context, src release.Source, version string, p *planner) {
	rv, err := src.ReadVersion(ctx, version)
	if err != nil {
		p.fail(version, err)

		return
	}

	origin := func(component string) string { return DefaultFrom + "/" + component }

	p.add(pinned(origin("imager"), version, rv.Imager.Index), RoleImager, version)

	installer := path.Base(rv.InstallerBase.Repository)
	role := RoleInstallerBase

	if installer == "installer" {
		role = RoleInstaller
	}

	p.add(pinned(origin(installer), version, rv.InstallerBase.Index), role, version)
	p.add(tagged(origin("extensions"), version), RoleExtensions, version)

	if sv, err := semver.ParseTolerant(version); err == nil && sv.GTE(semver.MustParse("1.7.0-0")) {
		p.add(tagged(origin("overlays"), version), RoleOverlays, version)
	}

	m.planExtensions(rv, p)
	m.planOverlays(rv, p)

	if m.opts.Talosctl {
		if release.ServesTalosctl(version) {
			p.add(tagged(origin(release.TalosctlComponent), version), RoleTalosctlAll, version)
		} else {
			m.log.Info("no talosctl-all image before Talos 1.11", "version", version)
		}
	}

	if m.opts.ClusterImages {
		refs, err := m.clusterImages(ctx, version)
		if err != nil {
			p.fail(version+" cluster images", err)

			return
		}

		for _, o := range refs {
			p.add(o, RoleCluster, version)
		}
	}
}

func pinned(repo, tag, digest string) origin {
	return origin{Repository: repo, Tag: tag, Digest: digest}
}

func tagged(repo, tag string) origin { return origin{Repository: repo, Tag: tag} }

// selects reports whether a --extensions/--overlays list takes the name (the catalog's, or its last element).
func selects(want []string, names ...string) bool {
	for _, w := range want {
		if w == "all" {
			return true
		}

		for _, n := range names {
			if n != "" && (w == n || w == path.Base(n)) {
				return true
			}
		}
	}

	return false
}

func (m *mirror) planExtensions(rv release.Version, p *planner) {
	if len(m.opts.Extensions) == 0 {
		return
	}

	registry, _, _ := strings.Cut(DefaultFrom, "/")

	for _, e := range rv.Extensions {
		if !selects(m.opts.Extensions, e.Name) {
			continue
		}

		p.add(pinned(registry+"/"+e.Name, tagOf(e.Ref), e.Digest), RoleExtension, rv.Version)
	}

	for _, w := range m.opts.Extensions {
		if w == "all" {
			continue
		}

		if slices.ContainsFunc(rv.Extensions, func(e release.Extension) bool { return selects([]string{w}, e.Name) }) {
			continue
		}

		// A renamed extension, asked for by its old name.
		e, ok := release.ResolveExtension(rv, w)
		if !ok {
			p.fail(rv.Version+" extension "+w, fmt.Errorf("not in the extensions catalog of %s", rv.Version))

			continue
		}

		p.add(pinned(registry+"/"+e.Name, tagOf(e.Ref), e.Digest), RoleExtension, rv.Version)
	}
}

func (m *mirror) planOverlays(rv release.Version, p *planner) {
	if len(m.opts.Overlays) == 0 {
		return
	}

	for _, o := range rv.Overlays {
		if !selects(m.opts.Overlays, o.Name, o.Image) {
			continue
		}

		org, err := parseOrigin(o.Ref)
		if err != nil {
			p.fail(rv.Version+" overlay "+o.Name, err)

			continue
		}

		org.Digest = o.Digest
		p.add(org, RoleOverlay, rv.Version)
	}

	for _, w := range m.opts.Overlays {
		if w != "all" && !slices.ContainsFunc(rv.Overlays, func(o release.Overlay) bool { return selects([]string{w}, o.Name, o.Image) }) {
			p.fail(rv.Version+" overlay "+w, fmt.Errorf("not in the overlays catalog of %s", rv.Version))
		}
	}
}

// tagOf is the tag of "host/repo:tag" ("" without one).
func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}

	return ""
}
