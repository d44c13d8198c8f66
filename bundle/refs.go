package bundle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// DefaultFrom is where Talos releases are published: the origin of every release image.
const DefaultFrom = "ghcr.io/siderolabs"

// origin is an image's original reference: the repository with its registry host, and a tag, a digest or both
// ("ghcr.io/siderolabs/gvisor:20250101.0@sha256:…" as the extensions catalog names its images).
type origin struct {
	Repository string // "ghcr.io/siderolabs/imager", "registry.k8s.io/kube-apiserver", "docker.io/library/busybox"
	Tag        string
	Digest     string
}

// parseOrigin parses a full image reference. A reference without a registry host is Docker Hub's, as container
// runtimes read it ("busybox" is docker.io/library/busybox).
func parseOrigin(s string) (origin, error) {
	s = strings.TrimSpace(s)
	rest := s

	var o origin

	if before, d, ok := strings.Cut(rest, "@"); ok {
		if err := digest.Check(d); err != nil {
			return origin{}, fmt.Errorf("image reference %q: %w", s, err)
		}

		rest, o.Digest = before, d
	}

	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, o.Tag = rest[:i], rest[i+1:]
	}

	host, path, ok := strings.Cut(rest, "/")
	if !ok || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		host, path = "docker.io", rest
		if !strings.Contains(path, "/") {
			path = "library/" + path
		}
	}

	o.Repository = host + "/" + path

	if o.Tag == "" && o.Digest == "" {
		return origin{}, fmt.Errorf("image reference %q: want a tag or a digest", s)
	}

	if _, err := name.ParseReference(o.String(), name.StrictValidation); err != nil {
		return origin{}, fmt.Errorf("image reference %q: %w", s, err)
	}

	return o, nil
}

// String is the reference as given: repository, then :tag, then @digest.
func (o origin) String() string {
	s := o.Repository
	if o.Tag != "" {
		s += ":" + o.Tag
	}

	if o.Digest != "" {
		s += "@" + o.Digest
	}

	return s
}

// Reference is the name the bundle gives the image: the tag form when it has a tag, else the digest form.
func (o origin) Reference() string {
	if o.Tag != "" {
		return o.Repository + ":" + o.Tag
	}

	return o.Repository + "@" + o.Digest
}

// sourceMap says where images of an origin are read: longest matching origin prefix first, on path boundaries.
type sourceMap []mapping

type mapping struct{ origin, source string }

// parseSourceMap builds the map from --from and --source-map entries (ORIGIN=REGISTRY[/PREFIX]). --from maps
// DefaultFrom; an explicit entry for the same origin wins.
func parseSourceMap(from string, entries []string) (sourceMap, error) {
	var m sourceMap

	seen := map[string]bool{}

	for _, e := range entries {
		o, s, ok := strings.Cut(e, "=")
		o, s = strings.Trim(strings.TrimSpace(o), "/"), strings.Trim(strings.TrimSpace(s), "/")

		if !ok || o == "" || s == "" {
			return nil, fmt.Errorf("source map %q: want ORIGIN=REGISTRY[/PREFIX]", e)
		}

		if err := checkRepoPrefix(o); err != nil {
			return nil, fmt.Errorf("source map %q: origin: %w", e, err)
		}

		if err := checkRepoPrefix(s); err != nil {
			return nil, fmt.Errorf("source map %q: source: %w", e, err)
		}

		if seen[o] {
			return nil, fmt.Errorf("source map: origin %q given twice", o)
		}

		seen[o] = true
		m = append(m, mapping{origin: o, source: s})
	}

	if from != DefaultFrom && !seen[DefaultFrom] {
		m = append(m, mapping{origin: DefaultFrom, source: from})
	}

	slices.SortStableFunc(m, func(a, b mapping) int { return len(b.origin) - len(a.origin) })

	return m, nil
}

// checkRepoPrefix checks "host[/path]": a registry host, then repository path components.
func checkRepoPrefix(s string) error {
	host, path, _ := strings.Cut(s, "/")
	if _, err := name.NewRegistry(host, name.StrictValidation); err != nil {
		return err
	}

	if path != "" {
		if _, err := name.NewRepository(s, name.StrictValidation); err != nil {
			return err
		}
	}

	return nil
}

// source is the repository an origin repository is read from.
func (m sourceMap) source(repo string) string {
	for _, e := range m {
		if rest, ok := strings.CutPrefix(repo, e.origin); ok && (rest == "" || rest[0] == '/') {
			return e.source + rest
		}
	}

	return repo
}

// strings lists the entries as ORIGIN=SOURCE, sorted.
func (m sourceMap) strings() []string {
	out := make([]string, 0, len(m))
	for _, e := range m {
		out = append(out, e.origin+"="+e.source)
	}

	slices.Sort(out)

	return out
}

// splitFrom splits --from into registry and namespace ("ghcr.io/siderolabs" → "ghcr.io", "siderolabs"). A
// registry alone holds the release under the namespace it has on ghcr.io, siderolabs (as a pull-through cache
// does, and as the factory's --upstream-namespace defaults).
func splitFrom(from string) (registry, namespace string, err error) {
	from = strings.Trim(strings.TrimSpace(from), "/")
	if err := checkRepoPrefix(from); err != nil {
		return "", "", fmt.Errorf("--from %q: %w", from, err)
	}

	registry, namespace, _ = strings.Cut(from, "/")
	if namespace == "" {
		namespace = "siderolabs"
	}

	return registry, namespace, nil
}

// repoPath is a repository without its registry host ("ghcr.io/siderolabs/imager" → "siderolabs/imager").
func repoPath(repo string) string {
	_, p, _ := strings.Cut(repo, "/")

	return p
}
