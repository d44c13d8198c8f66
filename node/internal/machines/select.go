package machines

import (
	"cmp"
	"net/netip"
	"slices"

	api "github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/pxe"
)

// Choose returns the most specific profile whose selectors all match m. Specificity ranks the strongest selector
// first: MAC, then UUID, serial, hostname, the number of labels, and the subnet's prefix length; the default
// profile (no selectors) matches last. Profiles equally specific are taken in name order, so every member chooses
// the same. The profiles must be normalised (as stored).
func Choose(profiles []api.Profile, m pxe.Machine) (api.Profile, bool) {
	var (
		best      api.Profile
		bestScore specificity
		found     bool
	)

	for _, p := range profiles {
		if !matches(p.Selectors, m) {
			continue
		}

		score := score(p.Selectors)
		if !found || compareSpecificity(score, bestScore) > 0 ||
			(compareSpecificity(score, bestScore) == 0 && p.Name < best.Name) {
			best, bestScore, found = p, score, true
		}
	}

	return best, found
}

// specificity orders selectors from the strongest: one of each flag, then counts.
type specificity [6]int

func score(s api.Selectors) specificity {
	var sc specificity

	flag := func(i int, set bool) {
		if set {
			sc[i] = 1
		}
	}

	flag(0, s.MAC != "")
	flag(1, s.UUID != "")
	flag(2, s.Serial != "")
	flag(3, s.Hostname != "")
	sc[4] = len(s.Labels)

	if s.Subnet != "" {
		if p, err := netip.ParsePrefix(s.Subnet); err == nil {
			sc[5] = 1 + p.Bits() // a /0 is still more specific than no subnet at all
		}
	}

	return sc
}

func compareSpecificity(a, b specificity) int {
	return slices.CompareFunc(a[:], b[:], cmp.Compare[int])
}

// matches reports whether every selector of s matches m.
func matches(s api.Selectors, m pxe.Machine) bool {
	if s.MAC != "" && s.MAC != m.MAC.String() {
		return false
	}

	if s.UUID != "" && s.UUID != m.UUID {
		return false
	}

	if s.Serial != "" && s.Serial != m.Serial {
		return false
	}

	if s.Hostname != "" && s.Hostname != m.Hostname {
		return false
	}

	if s.Subnet != "" {
		p, err := netip.ParsePrefix(s.Subnet)
		if err != nil || !m.IP.IsValid() || !p.Contains(m.IP) {
			return false
		}
	}

	for k, v := range s.Labels {
		if got, ok := m.Labels[k]; !ok || got != v {
			return false
		}
	}

	return true
}
