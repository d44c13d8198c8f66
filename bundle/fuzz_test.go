package bundle

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// FuzzParseOrigin drives image references (the catalog's, and those an operator lists for import) through
// parseOrigin. A refusal is an error; an accepted reference has a registry host, a tag or a canonical digest, reads
// back as itself from String(), and names an image go-containerregistry can pull by Reference(): a bundle records
// images under these names and pulls them again by them.
func FuzzParseOrigin(f *testing.F) {
	d := "sha256:" + strings.Repeat("b", 64)

	for _, seed := range []string{
		"ghcr.io/siderolabs/imager:v1.13.0", "localhost:5000/a/b@" + d, "busybox:1.36", "rancher/local-path:v0.1",
		"ghcr.io/siderolabs/gvisor:2025@" + d, " registry.k8s.io/pause:3.10 ", "ghcr.io/siderolabs/imager",
		"ghcr.io/x:y@sha256:short", "Ghcr.io/UPPER/case:v1", "", "@", ":", "a:b:c", "host:5000:tag", "a/b@" + d + "@" + d,
		"localhost/x:1", "[::1]:5000/a:b", "docker.io/busybox:1", "index.docker.io/library/busybox:1",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOrigin(s)
		if err != nil {
			require.Equal(t, origin{}, o)

			return
		}

		require.True(t, o.Tag != "" || o.Digest != "", "%+v", o)
		require.True(t, o.Digest == "" || digest.Valid(o.Digest), "%+v", o)

		host, _, ok := strings.Cut(o.Repository, "/")
		require.True(t, ok, "%q has no path", o.Repository)
		require.True(t, strings.ContainsAny(host, ".:") || host == "localhost", "%q names no registry", o.Repository)

		again, err := parseOrigin(o.String())
		require.NoError(t, err, "%q (from %q)", o.String(), s)
		require.Equal(t, o, again)

		_, err = name.ParseReference(o.Reference(), name.StrictValidation)
		require.NoError(t, err, "%q (from %q)", o.Reference(), s)
	})
}

// FuzzSourceMap drives one --source-map entry and an image repository through the source map. An accepted entry
// maps a repository either not at all or, on a path boundary of its origin, to the entry's source: a mirror prefix
// that matched "registry.k8s.io.evil" for "registry.k8s.io" would read images from the wrong place.
func FuzzSourceMap(f *testing.F) {
	for _, seed := range []struct{ entry, repo string }{
		{"registry.k8s.io=127.0.0.1:5000/registry.k8s.io", "registry.k8s.io/kube-apiserver"},
		{"registry.k8s.io=cache.local", "registry.k8s.io.evil/x"},
		{"registry.k8s.io/coredns=cache.local/dns", "registry.k8s.io/coredns/coredns"},
		{"ghcr.io/siderolabs=localhost:5000", "ghcr.io/siderolabs"},
		{" /a.io/ = /b.io/ ", "a.io/x"},
		{"=x.io", "x.io/y"},
		{"a.io=B.io/UP", "a.io/y"},
		{"a.io", ""},
	} {
		f.Add(seed.entry, seed.repo)
	}

	f.Fuzz(func(t *testing.T, entry, repo string) {
		m, err := parseSourceMap(DefaultFrom, []string{entry})
		if err != nil {
			return
		}

		require.Len(t, m, 1)
		require.Equal(t, []string{m[0].origin + "=" + m[0].source}, m.strings())

		got := m.source(repo)
		if got == repo && !strings.HasPrefix(repo, m[0].origin) {
			return
		}

		rest, ok := strings.CutPrefix(repo, m[0].origin)
		if !ok || (rest != "" && rest[0] != '/') {
			require.Equal(t, repo, got, "%q is not under %q", repo, m[0].origin)

			return
		}

		require.Equal(t, m[0].source+rest, got)
	})
}
