package oci

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	digest := "sha256:" + strings.Repeat("ab", 32)

	for _, tc := range []struct {
		path string
		want Route
	}{
		{"installer/" + id + "/manifests/v1.13.0", Route{Repository: "installer/" + id, Image: "installer",
			Schematic: id, Resource: ResourceManifests, Reference: "v1.13.0"}},
		{"metal-installer/" + id + "/blobs/" + digest, Route{Repository: "metal-installer/" + id,
			Image: "metal-installer", Schematic: id, Resource: ResourceBlobs, Reference: digest}},
		{"installer/" + id + "/referrers/" + digest, Route{Repository: "installer/" + id, Image: "installer",
			Schematic: id, Resource: ResourceReferrers, Reference: digest}},
		{"siderolabs/imager/manifests/v1.13.0", Route{Source: true, Repository: "siderolabs/imager",
			Resource: ResourceManifests, Reference: "v1.13.0"}},
		{"siderolabs/talosctl/tags/list", Route{Source: true, Repository: "siderolabs/talosctl", Resource: ResourceTags}},
		{"siderolabs/a/b/blobs/" + digest, Route{Source: true, Repository: "siderolabs/a/b", Resource: ResourceBlobs,
			Reference: digest}},
		// Imported images under their full names: the first segment is a registry host.
		{"registry.k8s.io/kube-apiserver/manifests/v1.35.0", Route{Imported: true,
			Repository: "registry.k8s.io/kube-apiserver", Resource: ResourceManifests, Reference: "v1.35.0"}},
		{"registry.k8s.io/coredns/coredns/tags/list", Route{Imported: true, Repository: "registry.k8s.io/coredns/coredns",
			Resource: ResourceTags}},
		{"ghcr.io/siderolabs/imager/blobs/" + digest, Route{Imported: true, Repository: "ghcr.io/siderolabs/imager",
			Resource: ResourceBlobs, Reference: digest}},
		{"localhost:5000/a/manifests/v1", Route{Imported: true, Repository: "localhost:5000/a",
			Resource: ResourceManifests, Reference: "v1"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := Parse(tc.path)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	// The registry-mirror form (?ns=): the repository is a name within that registry, even one of two segments
	// that would otherwise read as an installer repository.
	for _, tc := range []struct {
		path, ns string
		want     Route
	}{
		{"kube-apiserver/manifests/v1.35.0", "registry.k8s.io", Route{Imported: true,
			Repository: "registry.k8s.io/kube-apiserver", Resource: ResourceManifests, Reference: "v1.35.0"}},
		{"coredns/coredns/blobs/" + digest, "registry.k8s.io", Route{Imported: true,
			Repository: "registry.k8s.io/coredns/coredns", Resource: ResourceBlobs, Reference: digest}},
		{"siderolabs/installer/manifests/v1.13.0", "ghcr.io", Route{Imported: true,
			Repository: "ghcr.io/siderolabs/installer", Resource: ResourceManifests, Reference: "v1.13.0"}},
	} {
		t.Run(tc.ns+" "+tc.path, func(t *testing.T) {
			got, err := ParseMirrored(tc.path, tc.ns)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	// ns is one host; with a slash it would change the repository path (FuzzParse found "./").
	for _, ns := range []string{"not a host", "registry.k8s.io/", "./", "a.io/x", "/a.io"} {
		_, err := ParseMirrored("pause/manifests/3.10", ns)

		var e *Error
		require.ErrorAs(t, err, &e, "ns %q must name a registry", ns)
		assert.Equal(t, CodeNameUnknown, e.Code)
	}

	// The official service's asserted 404s (docs/api.md §5.1), and digests that are not digests.
	for _, tc := range []struct {
		path   string
		code   string
		status int
	}{
		{"foo", CodeNameUnknown, 404},
		{"foo/bar", CodeNameUnknown, 404},
		{"foo/manifests/v1", CodeNameUnknown, 404},
		{"a/b/c/manifests/v1", CodeNameUnknown, 404},
		{"image/schematic/tags/v1", CodeNameUnknown, 404},
		{"image/schematic/tags/list", CodeNameUnknown, 404},
		{"siderolabs/manifests/v1", CodeNameUnknown, 404},
		{"siderolabs/talosctl/tags/v1", CodeNameUnknown, 404},
		{"siderolabs/talosctl/tags/foo", CodeNameUnknown, 404},
		{"installer/" + id + "/blobs/sha256:xyz", CodeDigestInvalid, 400},
		{"installer/" + id + "/blobs/md5:" + strings.Repeat("a", 32), CodeDigestInvalid, 400},
		{"installer/" + id + "/referrers/" + strings.ToUpper(digest), CodeDigestInvalid, 400},
		// A manifest reference with a colon is a digest (tags cannot hold one): only canonical sha256 is served.
		{"installer/" + id + "/manifests/sha256:xyz", CodeDigestInvalid, 400},
		{"installer/" + id + "/manifests/" + strings.ToUpper(digest), CodeDigestInvalid, 400},
		{"installer/" + id + "/manifests/sha512:" + strings.Repeat("ab", 64), CodeDigestInvalid, 400},
		{"siderolabs/imager/manifests/sha256:xyz", CodeDigestInvalid, 400},
		{"siderolabs/imager/manifests/sha256:" + strings.Repeat("AB", 32), CodeDigestInvalid, 400},
		{"siderolabs/imager/manifests/sha512:" + strings.Repeat("ab", 64), CodeDigestInvalid, 400},
		{"siderolabs/imager/manifests/md5:" + strings.Repeat("a", 32), CodeDigestInvalid, 400},
		{"registry.k8s.io/manifests/v1", CodeNameUnknown, 404},
		{"registry.k8s.io/pause/blobs/sha256:xyz", CodeDigestInvalid, 400},
	} {
		t.Run("error "+tc.path, func(t *testing.T) {
			_, err := Parse(tc.path)

			var e *Error
			require.True(t, errors.As(err, &e), "%v", err)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.status, e.Status)
		})
	}
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		name, platform string
		sb             bool
	}{
		{"installer", "metal", false},
		{"installer-secureboot", "metal", true},
		{"metal-installer", "metal", false},
		{"aws-installer-secureboot", "aws", true},
		{"digital-ocean-installer", "digital-ocean", false},
	} {
		p, sb, err := ParseImage(tc.name)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.platform, p, tc.name)
		assert.Equal(t, tc.sb, sb, tc.name)
	}

	for _, bad := range []string{"foo", "-installer", "installer-foo", "imager"} {
		_, _, err := ParseImage(bad)

		var e *Error
		require.True(t, errors.As(err, &e), bad)
		assert.Equal(t, CodeNameInvalid, e.Code)
		assert.Equal(t, http.StatusBadRequest, e.Status)
		assert.Equal(t, "invalid image: "+bad, e.Message)
	}
}
