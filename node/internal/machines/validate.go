package machines

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/edgefactory/edgefactory/frontends"
	api "github.com/edgefactory/edgefactory/frontends/machines"
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// reservedLabels are the boot URL's own parameters; a label of that name could never be given.
var reservedLabels = []string{"mac", "uuid", "serial", "hostname", "arch"}

const (
	maxValue      = 255
	maxKernelArgs = 4096
)

// normalise checks a profile as written and returns it in the form stored and compared: MAC and UUID in lower-case
// canonical form, the subnet masked, the platform defaulted, the version "v"-prefixed. Errors name the field.
func normalise(name string, p api.Profile) (api.Profile, error) {
	if !nameRE.MatchString(name) {
		return p, invalidf("invalid profile name %q: 1-63 characters, lower-case letters, digits, '.', '_' or '-', "+
			"starting with a letter or digit", name)
	}

	p.Name = name

	s, err := normaliseSelectors(p.Selectors)
	if err != nil {
		return p, err
	}

	p.Selectors = s

	if p.Schematic == "" {
		return p, invalidf("profile %s: schematic is required (a schematic ID from POST /schematics)", name)
	}

	if p.Version == "" {
		return p, invalidf("profile %s: version is required (a Talos version such as v1.13.0)", name)
	}

	if !strings.HasPrefix(p.Version, "v") {
		p.Version = "v" + p.Version
	}

	if p.Platform == "" {
		p.Platform = "metal"
	}

	total := 0

	for i, arg := range p.ExtraKernelArgs {
		if arg == "" || strings.ContainsFunc(arg, func(r rune) bool { return r < ' ' || r == 0x7f || r == ' ' }) {
			return p, invalidf("profile %s: extraKernelArgs[%d] %q: one argument per entry, no spaces or control "+
				"characters", name, i, arg)
		}

		total += len(arg) + 1
	}

	if total > maxKernelArgs {
		return p, invalidf("profile %s: extraKernelArgs are %d bytes, more than %d", name, total, maxKernelArgs)
	}

	return p, nil
}

func normaliseSelectors(s api.Selectors) (api.Selectors, error) {
	if s.MAC != "" {
		mac, err := net.ParseMAC(strings.ReplaceAll(s.MAC, "-", ":"))
		if err != nil || len(mac) != 6 {
			return s, invalidf("selectors.mac %q is not an Ethernet MAC address (like 52:54:00:12:34:56)", s.MAC)
		}

		s.MAC = mac.String()
	}

	if s.UUID != "" {
		u, err := uuid.Parse(s.UUID)
		if err != nil {
			return s, invalidf("selectors.uuid %q is not a UUID: %v", s.UUID, err)
		}

		s.UUID = u.String()
	}

	if s.Subnet != "" {
		p, err := netip.ParsePrefix(s.Subnet)
		if err != nil {
			return s, invalidf("selectors.subnet %q is not a CIDR (like 10.0.0.0/24): %v", s.Subnet, err)
		}

		s.Subnet = p.Masked().String()
	}

	for field, v := range map[string]string{"serial": s.Serial, "hostname": s.Hostname} {
		if len(v) > maxValue || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return s, invalidf("selectors.%s: at most %d printable characters", field, maxValue)
		}
	}

	for k, v := range s.Labels {
		if !labelRE.MatchString(k) || slices.Contains(reservedLabels, k) {
			return s, invalidf("selectors.labels: invalid label name %q (letters, digits, '.', '_', '-'; not one "+
				"of %s)", k, strings.Join(reservedLabels, ", "))
		}

		if v == "" || len(v) > maxValue || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return s, invalidf("selectors.labels.%s: 1 to %d printable characters", k, maxValue)
		}
	}

	if len(s.Labels) == 0 {
		s.Labels = nil
	}

	return s, nil
}

// sameSelectors reports whether two normalised selector sets are equal: two such profiles would tie for every
// machine.
func sameSelectors(a, b api.Selectors) bool {
	if a.MAC != b.MAC || a.UUID != b.UUID || a.Serial != b.Serial || a.Hostname != b.Hostname ||
		a.Subnet != b.Subnet || len(a.Labels) != len(b.Labels) {
		return false
	}

	for k, v := range a.Labels {
		if b.Labels[k] != v {
			return false
		}
	}

	return true
}

func invalidf(format string, args ...any) error {
	return frontends.NewError(frontends.ClassInvalid, fmt.Sprintf(format, args...), nil)
}
