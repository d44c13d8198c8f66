package ring

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/stretchr/testify/require"
)

// keys returns n recipe-like keys (64 hex characters), the same on every run.
func keys(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]string, n)
	b := make([]byte, 32)
	for i := range out {
		for j := 0; j < len(b); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		out[i] = hex.EncodeToString(b)
	}
	return out
}

// names returns node-1 … node-n.
func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i+1)
	}
	return out
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func newRing(t testing.TB, cfg Config, members []string) *Ring {
	t.Helper()
	r := New(cfg)
	r.Set(members)
	return r
}

func TestEmptyRing(t *testing.T) {
	r := New(Config{})
	emptyID := r.ID()

	for _, members := range [][]string{nil, {}, {""}, {"", ""}} {
		require.False(t, r.Set(members), "Set(%q) on an empty ring", members)
	}
	_, ok := r.Owner("k")
	require.False(t, ok)
	require.Nil(t, r.Holders("k", 3))
	require.Empty(t, r.Members())
	require.Zero(t, r.Version())
	require.Equal(t, emptyID, r.ID())
	require.Len(t, emptyID, 16)

	// Back to empty after having members: lookups fail again, no library panic on an empty member list.
	require.True(t, r.Set([]string{"a"}))
	require.True(t, r.Set(nil))
	_, ok = r.Owner("k")
	require.False(t, ok)
	require.Nil(t, r.Holders("k", 1))
	require.Equal(t, emptyID, r.ID())
	require.Equal(t, uint64(2), r.Version())
}

func TestOneMemberOwnsEverything(t *testing.T) {
	r := newRing(t, Config{}, []string{"solo"})
	for _, k := range keys(2000, 1) {
		owner, ok := r.Owner(k)
		require.True(t, ok)
		require.Equal(t, "solo", owner)
		require.Equal(t, []string{"solo"}, r.Holders(k, 3))
	}
}

func TestSameViewSamePlacement(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{"reversed", names(5), reversed(names(5))},
		{"shuffled with duplicates", []string{"c", "a", "b"}, []string{"b", "b", "a", "c", "a", ""}},
		{"ip-like names", []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"},
			[]string{"10.0.0.3:7946", "10.0.0.1:7946", "10.0.0.2:7946"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newRing(t, Config{}, tt.a), newRing(t, Config{}, tt.b)
			require.Equal(t, a.ID(), b.ID())
			require.Equal(t, a.Members(), b.Members())
			require.True(t, slices.IsSorted(a.Members()))
			for _, k := range keys(10000, 2) {
				oa, _ := a.Owner(k)
				ob, _ := b.Owner(k)
				require.Equal(t, oa, ob, "owner of %s", k)
				require.Equal(t, a.Holders(k, 3), b.Holders(k, 3), "holders of %s", k)
			}
		})
	}
}

func TestConfigChangesPlacementAndID(t *testing.T) {
	a := newRing(t, Config{}, names(5))
	b := newRing(t, Config{PartitionCount: 1021}, names(5))
	require.NotEqual(t, a.ID(), b.ID())
	differ := 0
	for _, k := range keys(1000, 3) {
		oa, _ := a.Owner(k)
		ob, _ := b.Owner(k)
		if oa != ob {
			differ++
		}
	}
	t.Logf("another partition count moves %d of 1000 keys", differ)
	require.Greater(t, differ, 500, "changing the partition count should remap most keys")
}

func TestHolders(t *testing.T) {
	r := newRing(t, Config{}, names(4))
	tests := []struct {
		n, want int
	}{
		{-1, 0}, {0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 4}, {100, 4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			for _, k := range keys(500, 4) {
				h := r.Holders(k, tt.n)
				require.Len(t, h, tt.want)
				if tt.want == 0 {
					continue
				}
				owner, _ := r.Owner(k)
				require.Equal(t, owner, h[0], "owner first")
				require.Len(t, slices.Compact(slices.Sorted(slices.Values(h))), len(h), "distinct: %v", h)
				for _, m := range h {
					require.Contains(t, r.Members(), m)
				}
				// A shorter list is a prefix of a longer one: the R holders agree with the first R-1.
				require.Equal(t, h, r.Holders(k, tt.n+1)[:len(h)])
			}
		})
	}
}

func TestVersionAndIDChangeOnlyOnRealChanges(t *testing.T) {
	r := New(Config{})
	steps := []struct {
		set     []string
		changed bool
	}{
		{[]string{"a", "b"}, true},
		{[]string{"b", "a"}, false},
		{[]string{"a", "b", "a", ""}, false},
		{[]string{"a", "b", "c"}, true},
		{[]string{"c", "b", "a"}, false},
		{[]string{"a", "b"}, true},
		{nil, true},
		{[]string{}, false},
	}
	var version uint64
	ids := map[string]string{"": r.ID()}
	for i, s := range steps {
		before := r.ID()
		require.Equal(t, s.changed, r.Set(s.set), "step %d Set(%q)", i, s.set)
		if s.changed {
			version++
		} else {
			require.Equal(t, before, r.ID(), "step %d", i)
		}
		require.Equal(t, version, r.Version(), "step %d", i)

		// The ID is a function of the view: the same member set always gives the same ID.
		view := fmt.Sprint(r.Members())
		if len(r.Members()) == 0 {
			view = ""
		}
		if id, seen := ids[view]; seen {
			require.Equal(t, id, r.ID(), "step %d", i)
		}
		ids[view] = r.ID()
	}
	require.Len(t, ids, 3, "three distinct views, three distinct IDs: %v", ids)
}

// TestNoPanic covers the library's "not enough room to distribute partitions" panic: every member count that
// matters and every edge of a valid Config must place every partition within the load bound.
func TestNoPanic(t *testing.T) {
	configs := []Config{
		{},
		{ReplicationFactor: 2},
		{Load: math.Nextafter(1, 2)},
		{Load: 1.01, ReplicationFactor: 2},
		{PartitionCount: 7, Load: 1.01},
		{PartitionCount: 1},
		{PartitionCount: 64, ReplicationFactor: 2, Load: 1.0001},
		{PartitionCount: 1021, ReplicationFactor: MaxReplicationFactor / 8},
	}
	for _, cfg := range configs {
		require.NoError(t, cfg.Validate())
		counts := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64}
		if p := cfg.PartitionCount; p > 0 && p <= 64 {
			counts = append(counts, max(p-1, 1), p, p+1) // one partition per member, and the limit
		}
		for _, n := range counts {
			t.Run(fmt.Sprintf("%+v/%d", cfg, n), func(t *testing.T) {
				r := New(cfg)
				require.NotPanics(t, func() { r.Set(names(n)) })
				eff := r.Config()
				require.Len(t, r.Members(), min(n, eff.PartitionCount))

				// Every partition has an owner and none is over the bound.
				c := r.c
				members := len(r.Members())
				bound := math.Ceil(float64(eff.PartitionCount/members) * eff.Load)
				for p := 0; p < eff.PartitionCount; p++ {
					require.NotNil(t, c.GetPartitionOwner(p), "partition %d", p)
				}
				for m, load := range c.LoadDistribution() {
					require.LessOrEqual(t, load, bound, "member %s", m)
				}
			})
		}
	}
}

func TestTooManyMembersKeepsTheFirstInOrder(t *testing.T) {
	r := newRing(t, Config{PartitionCount: 7}, names(10))
	want := slices.Sorted(slices.Values(names(10)))[:7]
	require.Equal(t, want, r.Members())
	require.False(t, r.Set(append(names(10), "zzz")), "a name past the limit changes nothing")
}

func TestConfig(t *testing.T) {
	def := Config{DefaultPartitionCount, DefaultReplicationFactor, DefaultLoad}
	tests := []struct {
		name  string
		cfg   Config
		valid bool
		eff   Config
	}{
		{"zero is the default", Config{}, true, def},
		{"explicit", Config{1021, 64, 1.5}, true, Config{1021, 64, 1.5}},
		{"negative partitions", Config{PartitionCount: -1}, false, def},
		{"too many partitions", Config{PartitionCount: MaxPartitionCount + 1}, false, def},
		{"one point per member", Config{ReplicationFactor: 1}, false, def},
		{"too many points", Config{ReplicationFactor: MaxReplicationFactor + 1}, false, def},
		{"load of 1", Config{Load: 1}, false, def},
		{"load below 1", Config{Load: 0.5}, false, def},
		{"negative load", Config{Load: -2}, false, def},
		{"infinite load", Config{Load: math.Inf(1)}, false, def},
		{"NaN load", Config{Load: math.NaN()}, false, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.valid {
				require.NoError(t, tt.cfg.Validate())
			} else {
				require.Error(t, tt.cfg.Validate())
			}
			r := New(tt.cfg)
			require.Equal(t, tt.eff, r.Config())
			require.NotPanics(t, func() { r.Set(names(9)) })
		})
	}
}

// TestPartitionMatchesLibrary pins Ring.partition, which avoids an allocation, to the library's own
// FindPartitionID.
func TestPartitionMatchesLibrary(t *testing.T) {
	for _, pc := range []int{1, 7, 271, 1021} {
		r := newRing(t, Config{PartitionCount: pc}, names(1))
		for _, k := range append(keys(1000, 5), "", "a", "node-1") {
			require.Equal(t, r.c.FindPartitionID([]byte(k)), r.partition(k), "key %q", k)
		}
	}
}

// TestMemberKeysNeverCollide shows why memberKey adds a separator: with bare names the library's point keys
// (name + index) collide for node-1/node-11, and a collision hands one member's point to another.
func TestMemberKeysNeverCollide(t *testing.T) {
	points := func(key func(string) string) int {
		seen := map[string]bool{}
		for _, n := range names(20) {
			for i := 0; i < DefaultReplicationFactor; i++ {
				seen[fmt.Sprintf("%s%d", key(n), i)] = true
			}
		}
		return len(seen)
	}
	want := 20 * DefaultReplicationFactor
	require.Less(t, points(func(n string) string { return n }), want, "bare names collide")
	require.Equal(t, want, points(memberKey))
	require.Equal(t, memberKey("node-1"), consistent.Member(member("node-1")).String())
}

// TestShares: the shares are the fraction of partitions each member owns, summing to one, close to even.
func TestShares(t *testing.T) {
	r := New(Config{})
	require.Empty(t, r.Shares())

	r.Set([]string{"a"})
	require.Equal(t, map[string]float64{"a": 1}, r.Shares())

	r.Set([]string{"a", "b", "c"})
	shares := r.Shares()
	require.Len(t, shares, 3)

	sum := 0.0
	for name, s := range shares {
		sum += s
		require.InDelta(t, 1.0/3, s, 0.1, name)
	}

	require.InDelta(t, 1.0, sum, 1e-9)

	owned := map[string]int{}
	for p := range r.Config().PartitionCount {
		m, _ := r.Owner(strconv.Itoa(p))
		owned[m]++
	}

	require.Len(t, owned, 3, "every member owns keys")
}
