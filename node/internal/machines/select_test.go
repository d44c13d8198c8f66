package machines

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	api "github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/pxe"
)

func TestChoosePrecedence(t *testing.T) {
	mac, err := net.ParseMAC("52:54:00:12:34:56")
	require.NoError(t, err)

	machine := pxe.Machine{MAC: mac, UUID: "8c1c2a4e-5b3f-4c1a-9a0e-0123456789ab", Serial: "SN1", Hostname: "node-1",
		IP: netip.MustParseAddr("10.80.0.150"), Labels: map[string]string{"rack": "r1", "row": "a"}}

	all := []api.Profile{
		{Name: "default"},
		{Name: "lan", Selectors: api.Selectors{Subnet: "10.80.0.0/16"}},
		{Name: "lan-narrow", Selectors: api.Selectors{Subnet: "10.80.0.128/25"}},
		{Name: "rack", Selectors: api.Selectors{Labels: map[string]string{"rack": "r1"}}},
		{Name: "rack-row", Selectors: api.Selectors{Labels: map[string]string{"rack": "r1", "row": "a"}}},
		{Name: "host", Selectors: api.Selectors{Hostname: "node-1"}},
		{Name: "serial", Selectors: api.Selectors{Serial: "SN1"}},
		{Name: "uuid", Selectors: api.Selectors{UUID: "8c1c2a4e-5b3f-4c1a-9a0e-0123456789ab"}},
		{Name: "mac", Selectors: api.Selectors{MAC: "52:54:00:12:34:56"}},
		{Name: "other-mac", Selectors: api.Selectors{MAC: "52:54:00:00:00:01"}},
		{Name: "mac-wrong-rack", Selectors: api.Selectors{MAC: "52:54:00:12:34:56",
			Labels: map[string]string{"rack": "r9"}}},
	}

	// Remove the most specific match each round: the next one down must win.
	for _, want := range []string{"mac", "uuid", "serial", "host", "rack-row", "rack", "lan-narrow", "lan",
		"default"} {
		got, ok := Choose(all, machine)
		require.True(t, ok, "expected %s", want)
		assert.Equal(t, want, got.Name)

		for i, p := range all {
			if p.Name == want {
				all = append(all[:i], all[i+1:]...)

				break
			}
		}
	}

	_, ok := Choose(all, machine)
	assert.False(t, ok, "only profiles for other machines are left: %v", all)
}

func TestChooseTiesAndMissingFacts(t *testing.T) {
	mac, err := net.ParseMAC("52:54:00:12:34:56")
	require.NoError(t, err)

	m := pxe.Machine{MAC: mac, Labels: map[string]string{"a": "1", "b": "2"}}

	tied := []api.Profile{
		{Name: "zeta", Selectors: api.Selectors{Labels: map[string]string{"b": "2"}}},
		{Name: "alpha", Selectors: api.Selectors{Labels: map[string]string{"a": "1"}}},
	}
	got, ok := Choose(tied, m)
	require.True(t, ok)
	assert.Equal(t, "alpha", got.Name, "equally specific profiles are taken in name order")

	// A machine that did not report its address, UUID or hostname matches no selector on them.
	for _, s := range []api.Selectors{{Subnet: "0.0.0.0/0"}, {UUID: "8c1c2a4e-5b3f-4c1a-9a0e-0123456789ab"},
		{Hostname: "x"}, {Serial: "SN1"}} {
		_, ok := Choose([]api.Profile{{Name: "p", Selectors: s}}, m)
		assert.False(t, ok, "%+v", s)
	}
}

func TestNormaliseRefusesBadProfiles(t *testing.T) {
	good := api.Profile{Selectors: api.Selectors{MAC: "52-54-00-AB-CD-EF", UUID: "8C1C2A4E-5B3F-4C1A-9A0E-0123456789AB",
		Subnet: "10.80.0.7/24"}, Schematic: "x", Version: "1.13.0", ExtraKernelArgs: []string{"console=ttyS0"}}

	p, err := normalise("rack-1", good)
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:ab:cd:ef", p.Selectors.MAC)
	assert.Equal(t, "8c1c2a4e-5b3f-4c1a-9a0e-0123456789ab", p.Selectors.UUID)
	assert.Equal(t, "10.80.0.0/24", p.Selectors.Subnet)
	assert.Equal(t, "v1.13.0", p.Version)
	assert.Equal(t, "metal", p.Platform)

	for _, tc := range []struct {
		name, profile, want string
		edit                func(*api.Profile)
	}{
		{"name", "Rack 1", "invalid profile name", nil},
		{"name too long", string(make([]byte, 70)), "invalid profile name", nil},
		{"mac", "p", "selectors.mac", func(p *api.Profile) { p.Selectors.MAC = "52:54:00" }},
		{"uuid", "p", "selectors.uuid", func(p *api.Profile) { p.Selectors.UUID = "nope" }},
		{"subnet", "p", "selectors.subnet", func(p *api.Profile) { p.Selectors.Subnet = "10.0.0.0/33" }},
		{"hostname", "p", "selectors.hostname", func(p *api.Profile) { p.Selectors.Hostname = "a\nb" }},
		{"reserved label", "p", "invalid label name \"mac\"", func(p *api.Profile) {
			p.Selectors.Labels = map[string]string{"mac": "x"}
		}},
		{"empty label value", "p", "selectors.labels.rack", func(p *api.Profile) {
			p.Selectors.Labels = map[string]string{"rack": ""}
		}},
		{"schematic", "p", "schematic is required", func(p *api.Profile) { p.Schematic = "" }},
		{"version", "p", "version is required", func(p *api.Profile) { p.Version = "" }},
		{"kernel arg with a space", "p", "extraKernelArgs[0]", func(p *api.Profile) {
			p.ExtraKernelArgs = []string{"a b"}
		}},
		{"kernel arg with a newline", "p", "extraKernelArgs[1]", func(p *api.Profile) {
			p.ExtraKernelArgs = []string{"ok", "x\nchain http://evil"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			if tc.edit != nil {
				tc.edit(&p)
			}

			_, err := normalise(tc.profile, p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
