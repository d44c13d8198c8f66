package synthetic

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func pushedOf(rel *release) []Pushed {
	out := make([]Pushed, 0, len(rel.items))
	for _, it := range rel.items {
		out = append(out, it.pushed)
	}

	return out
}

// TestBuildDeterministic builds the release twice from scratch (no release cache) and compares every digest.
func TestBuildDeterministic(t *testing.T) {
	opts, err := Options{Parts: StandInParts()}.complete()
	require.NoError(t, err)

	a, err := buildRelease(opts)
	require.NoError(t, err)

	b, err := buildRelease(opts)
	require.NoError(t, err)

	require.Equal(t, pushedOf(a), pushedOf(b))
	require.Equal(t, a.versions, b.versions)

	// different parts must give a different imager (the comparison above can fail)
	other := StandInParts()
	other.files["amd64/vmlinuz"] = []byte("MZ another kernel")

	c, err := buildRelease(Options{Namespace: opts.Namespace, Versions: opts.Versions, Parts: other})
	require.NoError(t, err)
	require.NotEqual(t, a.versions[0].Imager.Digest, c.versions[0].Imager.Digest)
	require.Equal(t, a.versions[0].Extensions, c.versions[0].Extensions)
}

func TestLowestMinor(t *testing.T) {
	cases := []struct {
		versions []string
		want     string
	}{
		{versions: []string{"v1.12.0", "v1.13.0"}, want: "v1.12.0"},
		{versions: []string{"v1.13.2", "v1.9.5"}, want: "v1.9.0"},
		{versions: []string{"v1.14.0-alpha.1"}, want: "v1.14.0"},
	}

	for _, tc := range cases {
		got, err := lowestMinor(tc.versions)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, tc.versions)
	}
}
