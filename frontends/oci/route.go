package oci

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// Resource is what a /v2 path asks for.
type Resource int

// The resources of the pull side of the distribution spec.
const (
	ResourceManifests Resource = iota + 1
	ResourceBlobs
	ResourceTags
	ResourceReferrers
)

// Route is a parsed /v2/<repository>/<resource>/<reference> path.
type Route struct {
	// Source is true for the release's source images (siderolabs/<name…>).
	Source bool
	// Imported is true for an image the cluster holds under its full original name (registry.k8s.io/pause):
	// the repository's first segment is a registry host, or the request named one (?ns=, the registry-mirror form
	// containerd and Talos use). Repository is then the full name.
	Imported bool
	// Repository is the whole repository path; Image and Schematic split an installer repository.
	Repository, Image, Schematic string
	Resource                     Resource
	// Reference is a tag or a digest ("" for tags/list).
	Reference string
}

// sourceNamespace is the first segment of source-image repositories.
const sourceNamespace = "siderolabs"

// Parse parses the part of a /v2 path after "/v2/" the way docs/api.md §5.1 describes: repositories whose first
// segment is a registry host (it holds a dot or a colon, or is localhost) are imported images under their full
// names; installer repositories are exactly <image>/<schematic> (an image name never holds a dot); source
// repositories start with siderolabs/ and may be deeper. Anything else is NAME_UNKNOWN (404); a malformed or
// unsupported digest (blob, referrers subject, or manifest reference) is DIGEST_INVALID (400).
func Parse(p string) (Route, error) { return ParseMirrored(p, "") }

// ParseMirrored is Parse for a request that may name the registry it mirrors (?ns=registry.k8s.io, as containerd
// and Talos ask a registry mirror): with ns, the repository is an imported image's name within that registry.
func ParseMirrored(p, ns string) (Route, error) {
	seg := strings.Split(trimSlashes(p), "/")

	var (
		rt   Route
		repo []string
	)

	switch n := len(seg); {
	case n >= 3 && seg[n-2] == "tags" && seg[n-1] == "list":
		rt.Resource, repo = ResourceTags, seg[:n-2]
	case n >= 3 && seg[n-2] == "manifests":
		rt.Resource, rt.Reference, repo = ResourceManifests, seg[n-1], seg[:n-2]
	case n >= 3 && seg[n-2] == "blobs":
		rt.Resource, rt.Reference, repo = ResourceBlobs, seg[n-1], seg[:n-2]
	case n >= 3 && seg[n-2] == "referrers":
		rt.Resource, rt.Reference, repo = ResourceReferrers, seg[n-1], seg[:n-2]
	default:
		return rt, nameUnknown("unknown registry route %q", p)
	}

	rt.Repository = strings.Join(repo, "/")

	for _, s := range repo {
		if s == "" {
			return rt, nameUnknown("unknown registry route %q", p)
		}
	}

	switch {
	case ns != "":
		if !isRegistryHost(ns) {
			return rt, nameUnknown("ns %q is not a registry host", ns)
		}

		rt.Imported, rt.Repository = true, ns+"/"+rt.Repository
	case isRegistryHost(repo[0]) && len(repo) >= 2:
		rt.Imported = true
	case isRegistryHost(repo[0]):
		return rt, nameUnknown("repository %q names a registry and no image", rt.Repository)
	case repo[0] == sourceNamespace && len(repo) >= 2:
		rt.Source = true
	case repo[0] == sourceNamespace:
		return rt, nameUnknown("source repository %q names no image", rt.Repository)
	case len(repo) != 2:
		return rt, nameUnknown("repository %q is neither <image>/<schematic> nor siderolabs/<name>", rt.Repository)
	case rt.Resource == ResourceTags:
		return rt, nameUnknown("tag listing is not supported for generated installer repositories")
	default:
		rt.Image, rt.Schematic = repo[0], repo[1]
	}

	// Blobs and referrers take digests only; a manifest reference with a colon is a digest too (a tag cannot hold
	// one). Only canonical sha256 digests are served: anything else is refused here, before any lookup or upstream
	// request.
	isDigest := rt.Resource == ResourceBlobs || rt.Resource == ResourceReferrers ||
		(rt.Resource == ResourceManifests && strings.Contains(rt.Reference, ":"))
	if isDigest && !ValidDigest(rt.Reference) {
		return rt, &Error{Code: CodeDigestInvalid, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("invalid digest %q: want sha256:<64 lowercase hex digits>", rt.Reference)}
	}

	return rt, nil
}

// isRegistryHost reports whether a repository's first segment names a registry, as Docker reads references: it
// holds a dot or a colon, or is localhost. A path segment never holds a slash, but ?ns= can: "registry.k8s.io/"
// or "a.io/x" would put an empty or extra segment into the repository of an imported image, so it is no host.
func isRegistryHost(s string) bool {
	return (strings.ContainsAny(s, ".:") || s == "localhost") && !strings.Contains(s, "/")
}

func nameUnknown(format string, args ...any) error {
	return &Error{Code: CodeNameUnknown, Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

// ParseImage maps an installer image name to its platform and secure-boot flag (docs/api.md §5.1):
// installer, installer-secureboot, <platform>-installer, <platform>-installer-secureboot.
func ParseImage(name string) (platform string, secureBoot bool, err error) {
	switch {
	case name == "installer":
		return "metal", false, nil
	case name == "installer-secureboot":
		return "metal", true, nil
	case strings.HasSuffix(name, "-installer-secureboot") && len(name) > len("-installer-secureboot"):
		return strings.TrimSuffix(name, "-installer-secureboot"), true, nil
	case strings.HasSuffix(name, "-installer") && len(name) > len("-installer"):
		return strings.TrimSuffix(name, "-installer"), false, nil
	default:
		return "", false, &Error{Code: CodeNameInvalid, Status: http.StatusBadRequest,
			Message: "invalid image: " + name}
	}
}

// ValidDigest reports whether d is a sha256 digest in canonical form (digest.Valid).
func ValidDigest(d string) bool { return digest.Valid(d) }
