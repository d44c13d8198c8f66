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
	// Repository is the whole repository path; Image and Schematic split an installer repository.
	Repository, Image, Schematic string
	Resource                     Resource
	// Reference is a tag or a digest ("" for tags/list).
	Reference string
}

// sourceNamespace is the first segment of source-image repositories.
const sourceNamespace = "siderolabs"

// Parse parses the part of a /v2 path after "/v2/" the way docs/api.md §5.1 describes: installer repositories are
// exactly <image>/<schematic>; source repositories start with siderolabs/ and may be deeper. Anything else is
// NAME_UNKNOWN (404); a malformed or unsupported digest (blob, referrers subject, or manifest reference) is
// DIGEST_INVALID (400).
func Parse(p string) (Route, error) {
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
