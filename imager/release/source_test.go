package release_test

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// startRelease serves the synthetic release (stand-in parts: nothing boots here) and returns its server.
func startRelease(t *testing.T) *synthetic.Server {
	t.Helper()

	return synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts()})
}

// copyImage tags src (repo:tag in the test registry) as dst.
func copyImage(t *testing.T, addr, src, dst string) {
	t.Helper()
	require.NoError(t, crane.Copy(addr+"/"+src, addr+"/"+dst))
}

func TestListVersions(t *testing.T) {
	srv := startRelease(t)
	src := release.Source{Registry: srv.Addr, Broken: []string{"v1.12.1"}}

	got, err := src.ListVersions(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"v1.12.0", "v1.13.0"}, got)

	for _, tag := range []string{
		"v1.1.0",                     // below the minimum
		"v1.2.0",                     // the minimum
		"v1.12.1",                    // broken
		"v1.13.0-alpha.1",            // pre-release of an older minor than the max
		"v1.14.0-rc.1",               // pre-release of the max minor: listed
		"v1.14.0-alpha.0.13.gabcdef", // four identifiers
		"latest",                     // unparseable
	} {
		copyImage(t, srv.Addr, "siderolabs/imager:v1.13.0", "siderolabs/imager:"+tag)
	}

	got, err = src.ListVersions(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"v1.2.0", "v1.12.0", "v1.13.0", "v1.14.0-rc.1"}, got)

	src.MinVersion = "1.13.0"
	src.Broken = nil

	got, err = src.ListVersions(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"v1.13.0", "v1.14.0-rc.1"}, got)

	_, err = release.Source{Registry: srv.Addr, Namespace: "nobody"}.ListVersions(t.Context())
	require.ErrorContains(t, err, "nobody/imager")
}

func TestReadVersion(t *testing.T) {
	srv := startRelease(t)
	src := release.Source{Registry: srv.Addr}

	for _, want := range srv.Manifest.Versions {
		t.Run(want.Version, func(t *testing.T) {
			v, err := src.ReadVersion(t.Context(), want.Version)
			require.NoError(t, err)

			require.Equal(t, want.Version, v.Version)
			require.Equal(t, release.Image{Repository: "siderolabs/imager", Index: want.Imager.Digest, Arch: want.Imager.Platforms}, v.Imager)
			require.Equal(t, release.Image{Repository: "siderolabs/installer-base", Index: want.InstallerBase.Digest, Arch: want.InstallerBase.Platforms}, v.InstallerBase)

			require.Len(t, v.Extensions, len(want.Extensions))

			for i, e := range v.Extensions {
				w := want.Extensions[i]
				require.Equal(t, w.Repository, e.Name)
				require.Equal(t, w.Ref(srv.Addr), e.Ref, "registry rewritten to the configured one")
				require.Equal(t, w.Digest, e.Digest)
				require.Equal(t, "Sidero Labs", e.Author)
				require.NotEmpty(t, e.Description)
			}

			require.Equal(t, []release.Overlay{{
				Name:   "rpi_generic",
				Image:  "siderolabs/sbc-raspberrypi",
				Ref:    "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.7",
				Digest: want.Overlays[0].Digest,
			}}, v.Overlays)

			ext, ok := release.ResolveExtension(v, "siderolabs/i915-ucode")
			require.True(t, ok)
			require.Equal(t, "siderolabs/i915", ext.Name)

			// the catalog's refs resolve in the registry they name
			for _, e := range v.Extensions {
				d, err := crane.Digest(e.Ref)
				require.NoError(t, err)
				require.Equal(t, e.Digest, d)
			}
		})
	}
}

func TestReadVersionOldRules(t *testing.T) {
	srv := startRelease(t)
	src := release.Source{Registry: srv.Addr}

	// v1.6.0: installer (not installer-base) before 1.10; no overlays below 1.7 (and no overlays image is needed)
	copyImage(t, srv.Addr, "siderolabs/imager:v1.13.0", "siderolabs/imager:v1.6.0")
	copyImage(t, srv.Addr, "siderolabs/installer-base:v1.13.0", "siderolabs/installer:v1.6.0")
	copyImage(t, srv.Addr, "siderolabs/extensions:v1.13.0", "siderolabs/extensions:v1.6.0")

	v, err := src.ReadVersion(t.Context(), "v1.6.0")
	require.NoError(t, err)
	require.Equal(t, "siderolabs/installer", v.InstallerBase.Repository)
	require.NotNil(t, v.Overlays)
	require.Empty(t, v.Overlays)
	require.Len(t, v.Extensions, 3)
}

func TestReadVersionFailures(t *testing.T) {
	srv := startRelease(t)
	src := release.Source{Registry: srv.Addr}

	// v1.9.0 has an imager and an installer, but no extensions catalog
	copyImage(t, srv.Addr, "siderolabs/imager:v1.13.0", "siderolabs/imager:v1.9.0")
	copyImage(t, srv.Addr, "siderolabs/installer-base:v1.13.0", "siderolabs/installer:v1.9.0")
	copyImage(t, srv.Addr, "siderolabs/overlays:v1.13.0", "siderolabs/overlays:v1.9.0")

	// v1.8.0's extensions image holds no image-digests file
	copyImage(t, srv.Addr, "siderolabs/imager:v1.13.0", "siderolabs/imager:v1.8.0")
	copyImage(t, srv.Addr, "siderolabs/installer-base:v1.13.0", "siderolabs/installer:v1.8.0")
	copyImage(t, srv.Addr, "siderolabs/overlays:v1.13.0", "siderolabs/extensions:v1.8.0")

	// v1.11.0 lacks its overlays catalog
	copyImage(t, srv.Addr, "siderolabs/imager:v1.13.0", "siderolabs/imager:v1.11.0")
	copyImage(t, srv.Addr, "siderolabs/installer-base:v1.13.0", "siderolabs/installer-base:v1.11.0")
	copyImage(t, srv.Addr, "siderolabs/extensions:v1.13.0", "siderolabs/extensions:v1.11.0")

	// v1.10.1's imager is a single-architecture image
	require.NoError(t, crane.Copy(srv.Addr+"/siderolabs/imager@"+srv.Manifest.Versions[1].Imager.Platforms["amd64"],
		srv.Addr+"/siderolabs/imager:v1.10.1"))

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	cases := []struct {
		name    string
		ctx     context.Context // table of cases
		version string
		err     string
	}{
		{name: "no such version", ctx: t.Context(), version: "v1.99.0", err: "read siderolabs/imager:v1.99.0"},
		{name: "missing extensions image", ctx: t.Context(), version: "v1.9.0", err: "read extensions catalog siderolabs/extensions:v1.9.0"},
		{name: "no image-digests", ctx: t.Context(), version: "v1.8.0", err: "failed to find image-digests file"},
		{name: "missing overlays image", ctx: t.Context(), version: "v1.11.0", err: "read overlays catalog siderolabs/overlays:v1.11.0"},
		{name: "not an index", ctx: t.Context(), version: "v1.10.1", err: "not a multi-architecture index"},
		{name: "bad version", ctx: t.Context(), version: "vX", err: `read version "vX"`},
		{name: "cancelled", ctx: cancelled, version: "v1.13.0", err: "context canceled"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := src.ReadVersion(tc.ctx, tc.version)
			require.ErrorContains(t, err, tc.err)
			require.Equal(t, release.Version{}, v, "never a partial version")
		})
	}
}
