package oci

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse drives /v2 paths (and the ?ns= of a registry mirror) through the route grammar. A refusal must be a
// registry *Error with a 400 or 404, as the distribution spec asks; an accepted route is exactly one kind of
// repository, takes only canonical digests where a digest goes, and, written back as a path, parses to the same
// route: the handlers and the cache look content up by these fields, so a route that read differently the second
// time would serve one repository's content under another's name.
func FuzzParse(f *testing.F) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	digest := "sha256:" + strings.Repeat("ab", 32)

	for _, seed := range []struct{ path, ns string }{
		{"installer/" + id + "/manifests/v1.13.0", ""},
		{"metal-installer/" + id + "/blobs/" + digest, ""},
		{"installer/" + id + "/referrers/" + digest, ""},
		{"installer/" + id + "/manifests/" + digest, ""},
		{"siderolabs/a/b/blobs/" + digest, ""},
		{"siderolabs/talosctl/tags/list", ""},
		{"registry.k8s.io/coredns/coredns/tags/list", ""},
		{"/localhost:5000/a/manifests/v1/", ""},
		{"kube-apiserver/manifests/v1.35.0", "registry.k8s.io"},
		{"siderolabs/installer/manifests/v1.13.0", "ghcr.io"},
		{"pause/manifests/3.10", "not a host"},
		{"a//b/manifests/v1", ""},
		{"installer/" + id + "/manifests/sha256:xyz", ""},
		{"tags/list/tags/list", ""},
		{"manifests/manifests/manifests", ""},
	} {
		f.Add(seed.path, seed.ns)
	}

	f.Fuzz(func(t *testing.T, p, ns string) {
		rt, err := ParseMirrored(p, ns)
		if err != nil {
			var e *Error
			require.True(t, errors.As(err, &e), "%T is not a registry error: %v", err, err)
			require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, e.Status, "%+v", e)
			require.NotEmpty(t, e.Code)

			return
		}

		requireRouteShape(t, rt)

		again, err := ParseMirrored(renderRoute(rt, ns), ns)
		require.NoError(t, err, "route %+v written as %q", rt, renderRoute(rt, ns))
		require.Equal(t, rt, again)

		if rt.Image != "" {
			_, _, _ = ParseImage(rt.Image) // any name: an error or a platform, never a panic
		}
	})
}

// requireRouteShape checks the invariants the handlers rely on without re-checking.
func requireRouteShape(t *testing.T, rt Route) {
	t.Helper()

	installer := rt.Image != "" || rt.Schematic != ""
	kinds := 0

	for _, k := range []bool{rt.Source, rt.Imported, installer} {
		if k {
			kinds++
		}
	}

	require.Equal(t, 1, kinds, "a route is one kind of repository: %+v", rt)

	if installer {
		require.Equal(t, rt.Image+"/"+rt.Schematic, rt.Repository)
		require.NotContains(t, rt.Image+rt.Schematic, "/")
	}

	for seg := range strings.SplitSeq(rt.Repository, "/") {
		require.NotEmpty(t, seg, "empty segment in %q", rt.Repository)
	}

	switch rt.Resource {
	case ResourceTags:
		require.Empty(t, rt.Reference)
	case ResourceBlobs, ResourceReferrers:
		require.True(t, ValidDigest(rt.Reference), "%q", rt.Reference)
	case ResourceManifests:
		require.NotEmpty(t, rt.Reference)
		require.True(t, !strings.Contains(rt.Reference, ":") || ValidDigest(rt.Reference), "%q", rt.Reference)
	default:
		t.Fatalf("unknown resource %d", rt.Resource)
	}
}

// renderRoute writes a route back as the path a client would send (with ns, the repository within that registry).
func renderRoute(rt Route, ns string) string {
	repo := rt.Repository
	if ns != "" {
		repo = strings.TrimPrefix(repo, ns+"/")
	}

	switch rt.Resource {
	case ResourceTags:
		return repo + "/tags/list"
	case ResourceBlobs:
		return repo + "/blobs/" + rt.Reference
	case ResourceReferrers:
		return repo + "/referrers/" + rt.Reference
	default:
		return repo + "/manifests/" + rt.Reference
	}
}
