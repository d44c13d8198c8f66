package release

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFilterVersions(t *testing.T) {
	cases := []struct {
		name   string
		tags   []string
		min    string
		broken []string
		want   []string
	}{
		{name: "empty", tags: nil, want: []string{}},
		{name: "unparseable tags skipped", tags: []string{"latest", "v1.13.0", "main", "sha256-abc.sig"}, want: []string{"v1.13.0"}},
		{name: "below min dropped", tags: []string{"v1.1.9", "v1.2.0", "v1.3.0"}, want: []string{"v1.2.0", "v1.3.0"}},
		{name: "custom min", tags: []string{"v1.5.0", "v1.6.0"}, min: "v1.6.0", want: []string{"v1.6.0"}},
		{name: "broken dropped", tags: []string{"v1.5.0", "v1.5.1", "v1.5.2"}, broken: []string{"v1.5.1", "not-a-version"}, want: []string{"v1.5.0", "v1.5.2"}},
		{name: "broken without v", tags: []string{"v1.5.0", "v1.5.1"}, broken: []string{"1.5.1"}, want: []string{"v1.5.0"}},
		{name: "sorted ascending, semver not text", tags: []string{"v1.10.0", "v1.9.0", "v1.2.0"}, want: []string{"v1.2.0", "v1.9.0", "v1.10.0"}},
		{name: "tolerant parse", tags: []string{"1.13", "v1.12.0"}, want: []string{"v1.12.0", "v1.13.0"}},
		{name: "duplicates after parsing", tags: []string{"v1.13.0", "1.13.0"}, want: []string{"v1.13.0"}},
		{
			name: "prereleases of the max minor with two identifiers",
			tags: []string{"v1.13.0", "v1.14.0-alpha.0", "v1.14.0-beta.2", "v1.14.0-rc.1", "v1.13.1-rc.0"},
			want: []string{"v1.13.0", "v1.14.0-alpha.0", "v1.14.0-beta.2", "v1.14.0-rc.1"},
		},
		{
			name: "rc stays after the release ships",
			tags: []string{"v1.14.0-rc.1", "v1.14.0"},
			want: []string{"v1.14.0-rc.1", "v1.14.0"},
		},
		{
			name: "until a newer minor exists (max computed before filtering, even if it is filtered out)",
			tags: []string{"v1.14.0-rc.1", "v1.14.0", "v1.15.0-alpha.0.13.gabcdef"},
			want: []string{"v1.14.0"},
		},
		{
			name: "identifier rules",
			tags: []string{
				"v1.14.0-rc.1",               // kept
				"v1.14.0-alpha.0.13.gabcdef", // four identifiers
				"v1.14.0-alpha",              // one identifier
				"v1.14.0-beta.x",             // second not numeric
				"v1.14.0-pre.1",              // first not alpha/beta/rc
				"v1.14.0-alpha.0-13-gabcdef", // git describe: second identifier "0-13-gabcdef"
			},
			want: []string{"v1.14.0-rc.1"},
		},
		{name: "prerelease below min", tags: []string{"v1.2.0-rc.1", "v1.2.0"}, want: []string{"v1.2.0"}},
		{name: "max is a prerelease", tags: []string{"v1.13.0", "v1.14.0-alpha.1"}, want: []string{"v1.13.0", "v1.14.0-alpha.1"}},
		{name: "bad min means default", tags: []string{"v1.1.0", "v1.2.0"}, min: "garbage", want: []string{"v1.2.0"}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			minVersion := tc.min
			if minVersion == "" {
				minVersion = DefaultMinVersion
			}

			require.Equal(t, tc.want, FilterVersions(tc.tags, minVersion, tc.broken))
		})
	}
}

func TestResolveExtension(t *testing.T) {
	v := Version{Extensions: []Extension{
		{Name: "siderolabs/i915", Digest: "sha256:i915"},
		{Name: "siderolabs/gasket", Digest: "sha256:old-gasket"},
		{Name: "siderolabs/gasket-driver", Digest: "sha256:gasket-driver"},
		{Name: "siderolabs/amd-ucode", Digest: "sha256:amd"},
	}}

	cases := []struct {
		name, digest string
		ok           bool
	}{
		{name: "siderolabs/amd-ucode", digest: "sha256:amd", ok: true},
		{name: "siderolabs/i915-ucode", digest: "sha256:i915", ok: true},   // alias
		{name: "siderolabs/gasket", digest: "sha256:old-gasket", ok: true}, // exact name wins over the alias
		{name: "siderolabs/amdgpu-firmware", ok: false},                    // alias target missing
		{name: "siderolabs/hello-world-service", ok: false},                // unknown
		{name: "i915-ucode", ok: false},                                    // aliases are full names
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := ResolveExtension(v, tc.name)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.digest, e.Digest)
		})
	}
}

func TestFindOverlay(t *testing.T) {
	v := Version{Overlays: []Overlay{{Name: "rpi_generic", Image: "siderolabs/sbc-raspberrypi", Digest: "sha256:rpi"}}}

	o, ok := FindOverlay(v, "rpi_generic")
	require.True(t, ok)
	require.Equal(t, "sha256:rpi", o.Digest)

	_, ok = FindOverlay(v, "siderolabs/sbc-raspberrypi")
	require.False(t, ok, "lookup is by name only, never by image")
}

func TestSplitImageRef(t *testing.T) {
	cases := []struct {
		in, repo, tag string
		err           bool
	}{
		{in: "ghcr.io/siderolabs/amd-ucode:20250917", repo: "siderolabs/amd-ucode", tag: "20250917"},
		{in: "127.0.0.1:5000/siderolabs/i915:20250917-v1.13.0", repo: "siderolabs/i915", tag: "20250917-v1.13.0"},
		{in: "ghcr.io/siderolabs/sbc-raspberrypi", repo: "siderolabs/sbc-raspberrypi"},
		{in: "no-registry", err: true},
	}

	for _, tc := range cases {
		repo, tag, err := splitImageRef(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)

			continue
		}

		require.NoError(t, err)
		require.Equal(t, tc.repo, repo, tc.in)
		require.Equal(t, tc.tag, tag, tc.in)
	}
}
