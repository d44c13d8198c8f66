package schematic_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

var fuzzSeeds = []string{
	"",
	"{}",
	"customization: {}",
	`{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}`,
	`{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},"customization":{}}`,
	"customization:\n  meta:\n    - key: 0xa\n      value: '{\"externalIPs\":[\"1.2.3.4\"]}'\n",
	"customization:\n  embeddedMachineConfiguration: |\n    version: v1alpha1\n  bootloader: Grub\n",
	"overlay:\n  options:\n    b: {y: [1, two], x: null}\n    t: 2001-12-14\n    f: 1.0\n    n: -0.0\n",
	"customization:\n  extraKernelArgs: [\"a\\tb\", \"#c\", \"yes\", \"\", \" lead\", \"é\"]\n",
	"customization:\n  secureboot: {enrollKeys: force, includeWellKnownCertificates: true}\n  diskImage: {sectorSize: 4096}\n",
	"a: &x [1]\nb: *x\n",
	"something:",
	"overlay:\n  options:\n    x: {.nan: a, 1: b, 2: c}\n",
	"overlay:\n  options:\n    .nan: {.inf: [-.inf, .nan]}\n",
	"overlay:\n  options:\n    x: {1: a, 1.0: b}\n",
}

// FuzzCanonical checks that whatever Unmarshal accepts has a canonical form that is a fixed point: reading the
// canonical text back and writing it again gives the same bytes and therefore the same ID. Stored schematics are
// re-read from that text, so a schematic that drifted on a round trip would change its ID after being saved. It also
// checks that the answer does not depend on Go's map order: the same body, posted again, gets the same ID or the
// same refusal (a NaN key once broke that).
func FuzzCanonical(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := schematic.Unmarshal(data)
		requireSameAnswer(t, data, s, err)

		if err != nil {
			require.True(t, schematic.IsInvalid(err), "%v", err)

			return
		}

		first, err := s.Marshal()
		require.NoError(t, err)

		again, err := schematic.Unmarshal(first)
		require.NoError(t, err, "canonical text does not parse back:\n%s", first)

		second, err := again.Marshal()
		require.NoError(t, err)
		require.Equal(t, string(first), string(second))

		id, err := s.ID()
		require.NoError(t, err)
		require.True(t, schematic.ValidID(id))

		againID, err := again.ID()
		require.NoError(t, err)
		require.Equal(t, id, againID)

		_, canonical, normalizedID, err := schematic.Normalize(data)
		require.NoError(t, err)
		require.Equal(t, string(first), string(canonical))
		require.Equal(t, id, normalizedID)
	})
}

// requireSameAnswer parses data a few more times: map order changes on every range, so a body whose answer hangs on
// it shows a different ID or error within a few tries.
func requireSameAnswer(t *testing.T, data []byte, first *schematic.Schematic, firstErr error) {
	t.Helper()

	var firstID string

	if firstErr == nil {
		var err error

		firstID, err = first.ID()
		require.NoError(t, err)
	}

	for range 4 {
		_, _, id, err := schematic.Normalize(data)
		if firstErr != nil {
			require.EqualError(t, err, firstErr.Error())

			continue
		}

		require.NoError(t, err)
		require.Equal(t, firstID, id)
	}
}

func BenchmarkID(b *testing.B) {
	s := schematic.Schematic{
		Overlay: schematic.Overlay{
			Image:   "siderolabs/sbc-raspberrypi",
			Name:    "rpi_generic",
			Options: map[string]any{"configTxtAppend": "dtoverlay=vc4-kms-v3d"},
		},
		Customization: schematic.Customization{
			ExtraKernelArgs: []string{"net.ifnames=0", "console=ttyS0", "talos.dashboard.disabled=1"},
			Meta:            []schematic.MetaValue{{Key: 0xa, Value: `{"externalIPs":["1.2.3.4"]}`}},
			SystemExtensions: schematic.SystemExtensions{OfficialExtensions: []string{
				"siderolabs/amd-ucode", "siderolabs/gvisor", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools",
			}},
			Bootloader: schematic.BootloaderSDBoot,
		},
	}

	b.ReportAllocs()

	for b.Loop() {
		if _, err := s.ID(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	in := []byte("customization:\n  extraKernelArgs: [net.ifnames=0, console=ttyS0]\n  meta:\n    - key: 0xa\n" +
		"      value: '{}'\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/gvisor\n      - siderolabs/amd-ucode\n")

	b.ReportAllocs()

	for b.Loop() {
		if _, _, _, err := schematic.Normalize(in); err != nil {
			b.Fatal(err)
		}
	}
}
