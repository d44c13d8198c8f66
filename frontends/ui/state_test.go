package ui

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStateStep(t *testing.T) {
	for _, tc := range []struct {
		query string
		step  Step
		arch  string
	}{
		{"", StepTarget, ""},
		{"target=metal", StepVersion, ""},
		{"target=metal&version=1.13.0", StepArch, ""},
		{"target=cloud&version=1.13.0", StepCloud, ""},
		{"target=cloud&version=1.13.0&platform=aws", StepArch, ""},
		{"target=cloud&version=1.13.0&platform=digital-ocean", StepExtensions, "amd64"}, // one architecture
		{"target=sbc&version=1.13.0", StepBoard, ""},
		{"target=sbc&version=1.13.0&board=rpi_generic", StepExtensions, "arm64"}, // boards are arm64
		{"target=metal&version=v1.13.0&arch=amd64&extensions=-", StepCustomize, "amd64"},
		{"target=metal&version=1.13.0&arch=amd64&extensions=-&search=ucode", StepExtensions, "amd64"},
		{"target=metal&version=1.13.0&arch=amd64&extensions=-&cmdline-set=true", StepFinal, "amd64"},
		{"target=bogus&version=1.13.0", StepTarget, ""},
	} {
		q, err := url.ParseQuery(tc.query)
		require.NoError(t, err)

		s := ParseState(q)
		assert.Equal(t, tc.step, s.Step(), tc.query)
		assert.Equal(t, tc.arch, s.Arch, tc.query)
	}
}

// TestOfficialLinkRoundTrip: a final-step URL of the official wizard reads into the same state and is written
// back with the same parameters.
func TestOfficialLinkRoundTrip(t *testing.T) {
	official := "target=metal&version=1.13.0&arch=amd64&platform=metal&secureboot=true&bootloader=sd-boot" +
		"&extensions=siderolabs%2Fi915&extensions=siderolabs%2Famd-ucode&cmdline=console%3DttyS0+quiet&cmdline-set=true"
	q, err := url.ParseQuery(official)
	require.NoError(t, err)

	s := ParseState(q)
	assert.Equal(t, State{
		Target: "metal", Version: "1.13.0", Platform: "metal", Arch: "amd64", SecureBoot: true, Bootloader: "sd-boot",
		Extensions: []string{"siderolabs/amd-ucode", "siderolabs/i915"}, Cmdline: "console=ttyS0 quiet", CmdlineSet: true,
	}, s)
	assert.Equal(t, StepFinal, s.Step())
	assert.Equal(t, s, ParseState(s.Values()), "Values reads back as the same state")
}

func TestSchematicOfState(t *testing.T) {
	for _, tc := range []struct {
		name, query, config, yaml string
	}{
		{
			name:  "extensions sorted, placeholder dropped, kernel arguments split on single spaces",
			query: "target=metal&version=1.13.0&arch=amd64&extensions=-&extensions=siderolabs/i915&extensions=siderolabs/amd-ucode&cmdline=a=1  b&cmdline-set=true",
			yaml: "customization:\n    extraKernelArgs:\n        - a=1\n        - \"\"\n        - b\n" +
				"    systemExtensions:\n        officialExtensions:\n            - siderolabs/amd-ucode\n            - siderolabs/i915\n",
		},
		{
			name:  "nothing chosen",
			query: "target=metal&version=1.13.0&arch=amd64&extensions=-&cmdline-set=true&bootloader=auto",
			yaml:  "customization: {}\n",
		},
		{
			name:  "board overlay with options, bootloader",
			query: "target=sbc&version=1.13.0&board=rpi_generic&extensions=-&cmdline-set=true&overlay-options=configTxtAppend: x&bootloader=sd-boot",
			yaml: "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n    options:\n        configTxtAppend: x\n" +
				"customization:\n    bootloader: sd-boot\n",
		},
		{
			name:   "embedded machine configuration",
			query:  "target=metal&version=1.13.0&arch=amd64&extensions=-&cmdline-set=true",
			config: "machine: {}",
			yaml:   "customization:\n    embeddedMachineConfiguration: 'machine: {}'\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			require.NoError(t, err)

			s := ParseState(q)
			u := &UI{}
			sc, err := s.Schematic(u.overlay(s), tc.config)
			require.NoError(t, err)

			out, err := sc.Marshal()
			require.NoError(t, err)
			assert.Equal(t, tc.yaml, string(out))
		})
	}
}

func TestSchematicRejectsBadChoices(t *testing.T) {
	for _, query := range []string{
		"target=sbc&version=1.13.0&board=rpi_generic&extensions=-&cmdline-set=true&overlay-options=[1, 2]",
		"target=metal&version=1.13.0&arch=amd64&extensions=-&cmdline-set=true&bootloader=lilo",
	} {
		q, err := url.ParseQuery(query)
		require.NoError(t, err)

		s := ParseState(q)
		_, err = s.Schematic((&UI{}).overlay(s), "")
		assert.Error(t, err, query)
	}
}

func TestUntilReopensTheStep(t *testing.T) {
	q, err := url.ParseQuery("target=cloud&version=1.13.0&platform=nocloud&arch=amd64&secureboot=true" +
		"&extensions=siderolabs/amd-ucode&cmdline-set=true")
	require.NoError(t, err)

	s := ParseState(q)
	for _, step := range []Step{StepTarget, StepVersion, StepCloud, StepArch, StepExtensions, StepCustomize} {
		assert.Equal(t, step, s.Until(step).Step(), step)
	}

	assert.Equal(t, []string{"siderolabs/amd-ucode"}, s.Until(StepExtensions).SelectedExtensions)
}
