package schematic_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

const emptyID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// TestKnownAnswers pins IDs the official Image Factory returned. Every row is an independent fact about the official
// service, so none of them may be "fixed" by editing the expectation.
func TestKnownAnswers(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name      string
		inputs    []string
		canonical string
		id        string
	}{
		// docs/api.md §2.4, row 1 (also the "well-known" default schematic of the official README).
		{
			name:      "empty",
			inputs:    []string{`{}`, `customization: {}`, `customization: {"extraKernelArgs": []}`},
			canonical: "customization: {}\n",
			id:        emptyID,
		},
		// docs/api.md §2.4, row 2; the first input is from siderolabs/image-factory pkg/schematic/schematic_test.go.
		{
			name: "kernel args",
			inputs: []string{
				`{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}`,
				`{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}`,
			},
			canonical: "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
			id:        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
		},
		// docs/api.md §2.4, row 3; the first input is from siderolabs/image-factory pkg/schematic/schematic_test.go.
		{
			name: "overlay",
			inputs: []string{
				`{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}`,
				`{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},"customization":{}}`,
			},
			canonical: "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\ncustomization: {}\n",
			id:        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
		},
		// siderolabs/image-factory pkg/schematic/schematic_test.go ("meta").
		{
			name: "meta foo",
			inputs: []string{
				`{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], "systemExtensions": {}}}`,
			},
			canonical: "customization:\n    meta:\n        - key: 10\n          value: foo\n",
			id:        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
		},
		// siderolabs/image-factory pkg/schematic/schematic_test.go ("secureboot customization").
		{
			name:      "secureboot well-known certificates",
			inputs:    []string{`{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}`},
			canonical: "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
			id:        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
		},
		// siderolabs/image-factory internal/integration/schematic_test.go (extraArgsSchematicID).
		{
			name:      "integration kernel args",
			inputs:    []string{"customization:\n  extraKernelArgs:\n    - nolapic\n    - nomodeset\n"},
			canonical: "customization:\n    extraKernelArgs:\n        - nolapic\n        - nomodeset\n",
			id:        "e0fb1129bbbdfb5d002e94af4cdce712a8370e850950a33a242d4c3f178c532d",
		},
		// siderolabs/image-factory internal/integration/schematic_test.go (systemExtensionsSchematicID).
		{
			name: "integration extensions",
			inputs: []string{
				`{"customization":{"systemExtensions":{"officialExtensions":` +
					`["siderolabs/amd-ucode","siderolabs/gvisor","siderolabs/gasket-driver"]}}}`,
			},
			canonical: "customization:\n    systemExtensions:\n        officialExtensions:\n" +
				"            - siderolabs/amd-ucode\n            - siderolabs/gvisor\n            - siderolabs/gasket-driver\n",
			id: "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
		},
		// siderolabs/image-factory internal/integration/schematic_test.go (metaSchematicID): key 0xa, JSON value.
		{
			name: "integration meta",
			inputs: []string{
				"customization:\n  meta:\n    - key: 0xa\n      value: '{\"externalIPs\":[\"1.2.3.4\"]}'\n",
				`{"customization":{"meta":[{"key":10,"value":"{\"externalIPs\":[\"1.2.3.4\"]}"}]}}`,
			},
			canonical: "customization:\n    meta:\n        - key: 10\n          value: '{\"externalIPs\":[\"1.2.3.4\"]}'\n",
			id:        "fe866116408a5a13dab7d5003eb57a00954ea81ebeec3fbbcd1a6d4462a00036",
		},
		// siderolabs/talos website/content/v1.9/talos-guides/install/boot-assets.md ("bare-metal.yaml").
		{
			name: "talos docs bare-metal",
			inputs: []string{
				"# bare-metal.yaml\ncustomization:\n  extraKernelArgs:\n    - net.ifnames=0\n  systemExtensions:\n" +
					"    officialExtensions:\n      - siderolabs/gvisor\n      - siderolabs/intel-ucode\n",
			},
			canonical: "customization:\n    extraKernelArgs:\n        - net.ifnames=0\n    systemExtensions:\n" +
				"        officialExtensions:\n            - siderolabs/gvisor\n            - siderolabs/intel-ucode\n",
			id: "b8e8fbbe1b520989e6c52c8dc8303070cb42095997e76e812fa8892393e1d176",
		},
		// siderolabs/talos website/content/v1.9/talos-guides/install/boot-assets.md ("aws.yaml").
		{
			name:      "talos docs aws",
			inputs:    []string{"# aws.yaml\ncustomization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/gvisor\n"},
			canonical: "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/gvisor\n",
			id:        "d9ff89777e246792e7642abd3220a616afb4e49822382e4213a2e528ab826fe5",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			for _, in := range tc.inputs {
				s, canonical, id, err := schematic.Normalize([]byte(in))
				require.NoError(t, err, in)
				require.Equal(t, tc.canonical, string(canonical), in)
				require.Equal(t, tc.id, id, in)

				fromStruct, err := s.ID()
				require.NoError(t, err)
				require.Equal(t, tc.id, fromStruct)
			}
		})
	}
}

func TestZeroValueID(t *testing.T) {
	t.Parallel()

	id, err := (&schematic.Schematic{}).ID()
	require.NoError(t, err)
	require.Equal(t, emptyID, id)
}

// canonicalOf parses in and returns the canonical text, failing the test on error.
func canonicalOf(t *testing.T, in string) string {
	t.Helper()

	_, canonical, _, err := schematic.Normalize([]byte(in))
	require.NoError(t, err, in)

	return string(canonical)
}

// TestScalarStyles checks how the canonical form writes one string, through an extra kernel argument: plain when
// safe, single quotes around YAML indicators, double quotes for type-ambiguous text and control characters.
func TestScalarStyles(t *testing.T) {
	t.Parallel()

	longWords := strings.TrimSpace(strings.Repeat("word ", 30))
	longToken := "x=" + strings.Repeat("a", 120)

	for _, tc := range []struct {
		arg  string
		want string
	}{
		{"console=ttyS0", "console=ttyS0"},
		{"{}", "'{}'"},
		{"key: value", "'key: value'"},
		{"#comment", "'#comment'"},
		{"yes", `"yes"`},
		{"true", `"true"`},
		{"null", `"null"`},
		{"123", `"123"`},
		{"0x1F", `"0x1F"`},
		{"1e3", `"1e3"`},
		{"~", `"~"`},
		{"", `""`},
		{"a\tb", `"a\tb"`},
		{longWords, longWords}, // no folding at 80 columns
		{longToken, longToken},
		{"héllo wörld ✓ 日本語", "héllo wörld ✓ 日本語"}, // UTF-8 written as is
	} {
		t.Run(tc.arg, func(t *testing.T) {
			t.Parallel()

			arg, err := json.Marshal(tc.arg)
			require.NoError(t, err)

			got := canonicalOf(t, `{"customization":{"extraKernelArgs":[`+string(arg)+`]}}`)
			require.Equal(t, "customization:\n    extraKernelArgs:\n        - "+tc.want+"\n", got)
		})
	}
}

// TestCanonicalForm checks the layout rules of docs/api.md §2.2 and the omission rules of §2.1.
func TestCanonicalForm(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{
			name: "embedded config keeps its final newline: literal |",
			in: "customization:\n  embeddedMachineConfiguration: |\n    version: v1alpha1\n    machine:\n" +
				"      type: worker\n",
			want: "customization:\n    embeddedMachineConfiguration: |\n        version: v1alpha1\n        machine:\n" +
				"          type: worker\n",
		},
		{
			name: "multi-line without final newline: literal |-",
			in:   `{"customization":{"embeddedMachineConfiguration":"a: 1\nb: 2"}}`,
			want: "customization:\n    embeddedMachineConfiguration: |-\n        a: 1\n        b: 2\n",
		},
		{
			// Block content is indented to the next multiple of 4 past the mapping inside "- ", i.e. column 12.
			name: "multi-line meta value inside a sequence",
			in:   `{"customization":{"meta":[{"key":12,"value":"line1\nline2"}]}}`,
			want: "customization:\n    meta:\n        - key: 12\n          value: |-\n            line1\n            line2\n",
		},
		{
			name: "meta key given in hex is written in decimal",
			in:   "customization:\n  meta:\n    - key: 0xa\n      value: x\n    - key: 0xFF\n      value: y\n",
			want: "customization:\n    meta:\n        - key: 10\n          value: x\n        - key: 255\n          value: \"y\"\n",
		},
		{
			// The YAML library sorts map keys in natural order (item2 before item10); "y" is quoted because YAML
			// 1.1 reads a plain y as a boolean.
			name: "overlay options keys sorted, nested values kept",
			in: `{"overlay":{"name":"rpi_generic","image":"siderolabs/sbc-raspberrypi","options":` +
				`{"zeta":1,"alpha":"x","item10":true,"item2":false,"b":{"y":[1,"two"],"x":null}}}}`,
			want: "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n    options:\n" +
				"        alpha: x\n        b:\n            x: null\n            \"y\":\n                - 1\n" +
				"                - two\n        item2: false\n        item10: true\n        zeta: 1\ncustomization: {}\n",
		},
		{
			name: "overlay with only options still writes image and name",
			in:   "overlay:\n  options:\n    a: 1\n",
			want: "overlay:\n    image: \"\"\n    name: \"\"\n    options:\n        a: 1\ncustomization: {}\n",
		},
		{
			name: "empty overlay options are omitted",
			in:   `{"overlay":{"name":"n","image":"i","options":{}}}`,
			want: "overlay:\n    image: i\n    name: \"n\"\ncustomization: {}\n",
		},
		{
			name: "every field, given out of order, comes out in struct order",
			in: "customization:\n  diskImage: {sectorSize: 4096}\n  secureboot: {includeWellKnownCertificates: true, enrollKeys: if-safe}\n" +
				"  bootloader: SD-BOOT\n  systemExtensions: {officialExtensions: [siderolabs/gvisor]}\n" +
				"  meta: [{value: foo, key: 0x0a}]\n  extraKernelArgs: [net.ifnames=0]\n" +
				"  embeddedMachineConfiguration: \"version: v1alpha1\\n\"\n" +
				"overlay:\n  options: {configTxtAppend: dtoverlay=vc4-kms-v3d}\n  name: rpi_generic\n  image: siderolabs/sbc-raspberrypi\n",
			want: "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n    options:\n" +
				"        configTxtAppend: dtoverlay=vc4-kms-v3d\n" +
				"customization:\n    embeddedMachineConfiguration: |\n        version: v1alpha1\n" +
				"    extraKernelArgs:\n        - net.ifnames=0\n    meta:\n        - key: 10\n          value: foo\n" +
				"    systemExtensions:\n        officialExtensions:\n            - siderolabs/gvisor\n" +
				"    bootloader: sd-boot\n    secureboot:\n        enrollKeys: if-safe\n        includeWellKnownCertificates: true\n" +
				"    diskImage:\n        sectorSize: 4096\n",
		},
		{
			name: "enrollKeys is not validated at creation",
			in:   `{"customization":{"secureboot":{"enrollKeys":"whatever"}}}`,
			want: "customization:\n    secureboot:\n        enrollKeys: whatever\n",
		},
		{
			name: "zero values are omitted",
			in: "customization:\n  secureboot: {includeWellKnownCertificates: false}\n  diskImage: {sectorSize: 0}\n" +
				"  systemExtensions: {officialExtensions: []}\n  meta: []\n  embeddedMachineConfiguration: \"\"\n",
			want: "customization: {}\n",
		},
		{
			name: "null values behave as omitted",
			in: `{"overlay":null,"customization":{"extraKernelArgs":null,"meta":null,"systemExtensions":null,` +
				`"bootloader":null,"secureboot":null,"diskImage":null,"embeddedMachineConfiguration":null}}`,
			want: "customization: {}\n",
		},
		{name: "null customization", in: "customization: null\n", want: "customization: {}\n"},
		{name: "null document", in: "null\n", want: "customization: {}\n"},
		{
			name: "only the first document is read",
			in:   "customization:\n  extraKernelArgs: [a]\n---\nsomething: [unclosed\n",
			want: "customization:\n    extraKernelArgs:\n        - a\n",
		},
		{
			// Non-string scalars are accepted into string fields, then quoted so they read back as strings.
			name: "scalars into strings",
			in:   "customization:\n  extraKernelArgs: [1, true, 0x1F]\n",
			want: "customization:\n    extraKernelArgs:\n        - \"1\"\n        - \"true\"\n        - \"0x1F\"\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tc.want, canonicalOf(t, tc.in))
		})
	}
}

func TestBootloader(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		in   string
		want string
		kind schematic.Bootloader
	}{
		{"grub", "customization:\n    bootloader: grub\n", schematic.BootloaderGrub},
		{"GRUB", "customization:\n    bootloader: grub\n", schematic.BootloaderGrub},
		{"Dual-Boot", "customization:\n    bootloader: dual-boot\n", schematic.BootloaderDualBoot},
		{"sd-boot", "customization:\n    bootloader: sd-boot\n", schematic.BootloaderSDBoot},
		{"none", "customization: {}\n", schematic.BootloaderNone},
		{"NONE", "customization: {}\n", schematic.BootloaderNone},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()

			s, canonical, id, err := schematic.Normalize([]byte("customization:\n  bootloader: " + tc.in + "\n"))
			require.NoError(t, err)
			require.Equal(t, tc.kind, s.Customization.Bootloader)
			require.Equal(t, tc.want, string(canonical))

			built := schematic.Schematic{Customization: schematic.Customization{Bootloader: tc.kind}}
			builtID, err := built.ID()
			require.NoError(t, err)
			require.Equal(t, id, builtID)
		})
	}
}

func TestIDRules(t *testing.T) {
	t.Parallel()

	id := func(in string) string {
		_, _, id, err := schematic.Normalize([]byte(in))
		require.NoError(t, err, in)

		return id
	}

	t.Run("extension order is part of the ID", func(t *testing.T) {
		t.Parallel()

		ab := id(`{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/a","siderolabs/b"]}}}`)
		ba := id(`{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/b","siderolabs/a"]}}}`)
		require.NotEqual(t, ab, ba)
		require.Equal(t,
			"customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/b\n            - siderolabs/a\n",
			canonicalOf(t, `{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/b","siderolabs/a"]}}}`))
	})

	t.Run("JSON and YAML of the same content", func(t *testing.T) {
		t.Parallel()

		yamlIn := "overlay:\n  name: rpi_generic\n  image: siderolabs/sbc-raspberrypi\n  options:\n    b: [1, 2]\n    a: x\n" +
			"customization:\n  extraKernelArgs:\n    - console=ttyS0\n  meta:\n    - key: 0xa\n      value: \"{}\"\n" +
			"  systemExtensions:\n    officialExtensions:\n      - siderolabs/gvisor\n  bootloader: grub\n"
		jsonIn := `{"customization":{"bootloader":"GRUB","systemExtensions":{"officialExtensions":["siderolabs/gvisor"]},` +
			`"meta":[{"value":"{}","key":10}],"extraKernelArgs":["console=ttyS0"]},` +
			`"overlay":{"options":{"a":"x","b":[1,2]},"image":"siderolabs/sbc-raspberrypi","name":"rpi_generic"}}`
		require.Equal(t, id(yamlIn), id(jsonIn))
	})
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		in   string
		want string // exact error text; empty when only checked with check
		is   error
	}{
		{
			name: "unknown field",
			in:   "something:",
			want: "yaml: construct errors: line 1: field something not found in type schematic.Schematic",
		},
		{
			name: "unknown nested field in JSON",
			in:   `{"customization":{"extensions":[]}}`,
			want: "yaml: construct errors: line 1: field extensions not found in type schematic.Customization",
		},
		{
			name: "duplicate key",
			in:   "customization: {}\ncustomization: {}\n",
			want: `yaml: construct errors: line 2: mapping key "customization" already defined at line 1`,
		},
		{
			name: "meta key 256",
			in:   "customization:\n  meta:\n    - key: 256\n      value: x\n",
			want: "yaml: construct errors: line 3: cannot construct !!int `256` into uint8",
		},
		{
			name: "meta key -1",
			in:   "customization:\n  meta:\n    - key: -1\n      value: x\n",
			want: "yaml: construct errors: line 3: cannot construct !!int `-1` into uint8",
		},
		{
			name: "string for a list",
			in:   "customization:\n  extraKernelArgs: single\n",
			want: "yaml: construct errors: line 2: cannot construct !!str `single` into []string",
		},
		{
			name: "bootloader auto",
			in:   "customization:\n  bootloader: auto\n",
			want: "yaml: construct errors: line 2: auto does not belong to BootloaderKind values",
		},
		{
			name: "owner",
			in:   "owner: someone\n",
			want: "owner field is only supported in Enterprise edition",
			is:   schematic.ErrOwnerNotSupported,
		},
		{name: "empty body", in: "", want: "EOF", is: io.EOF},
		{name: "comments-only body", in: "# nothing here\n# at all\n", want: "EOF", is: io.EOF},
		{name: "whitespace-only body", in: "  \n\n", want: "EOF", is: io.EOF},
		{name: "syntax error", in: "customization: [", want: "yaml: line 2: did not find expected node content"},
		{
			name: "NaN key in options",
			in:   "overlay:\n  options:\n    x: [{y: {.nan: a}}]\n",
			want: "overlay options x[0] y: mapping key .nan is not a number, which never equals itself, so its value " +
				"cannot be looked up and its place among the keys is random; quote it (\".nan\") to use the text",
			is: schematic.ErrNaNKey,
		},
		{
			name: "options without a stable canonical form",
			in:   "overlay:\n  options:\n    x: {1: a, 1.0: b}\n",
			is:   schematic.ErrUnstable,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			s, err := schematic.Unmarshal([]byte(tc.in))
			require.Error(t, err)
			require.Nil(t, s)
			require.True(t, schematic.IsInvalid(err))

			var invalid *schematic.InvalidError
			require.ErrorAs(t, err, &invalid)

			if tc.want != "" {
				require.Equal(t, tc.want, err.Error())
			}

			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}

			_, _, _, err = schematic.Normalize([]byte(tc.in))
			require.True(t, schematic.IsInvalid(err))
		})
	}
}

func TestIsInvalid(t *testing.T) {
	t.Parallel()

	require.False(t, schematic.IsInvalid(nil))
	require.False(t, schematic.IsInvalid(errors.New("storage down")))

	_, err := schematic.Unmarshal([]byte("something:"))
	require.True(t, schematic.IsInvalid(fmt.Errorf("create schematic: %w", err)))
}

func TestValidID(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		id   string
		want bool
	}{
		{emptyID, true},
		{strings.Repeat("0", 64), true},
		{strings.ToUpper(emptyID), false},
		{emptyID[:63], false},
		{emptyID + "0", false},
		{"aaaaaaaaaaaa", false},
		{strings.Repeat("g", 64), false},
		{"", false},
	} {
		require.Equal(t, tc.want, schematic.ValidID(tc.id), tc.id)
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()

	s, err := schematic.Unmarshal([]byte(`{"overlay":{"name":"rpi_generic"},` +
		`"customization":{"systemExtensions":{"officialExtensions":["siderolabs/b","siderolabs/a"]}}}`))
	require.NoError(t, err)
	require.True(t, s.HasOverlay())
	require.Equal(t, []string{"siderolabs/b", "siderolabs/a"}, s.Extensions())

	// The image alone does not select an overlay: the official service looks overlays up by name.
	s, err = schematic.Unmarshal([]byte(`{"overlay":{"image":"siderolabs/sbc-raspberrypi"}}`))
	require.NoError(t, err)
	require.False(t, s.HasOverlay())
	require.Empty(t, s.Extensions())
}

// TestNaNKey is the issue 18 case: a YAML NaN (.nan) used as a mapping key inside overlay options. NaN never equals
// itself, so the key's value could not be looked up (it was written as null) and, next to other keys, the sorted
// order depended on Go's random map order: the same body gave a different ID, or an ErrUnstable refusal, from one
// POST to the next. Such a key is refused, the same way every time; quoted, the same text is an ordinary string key.
func TestNaNKey(t *testing.T) {
	t.Parallel()

	for _, in := range []string{
		"overlay:\n  options:\n    x: {.nan: a}\n",
		"overlay:\n  options:\n    x: {.nan: a, 1: b, 2: c}\n",
		"overlay:\n  options:\n    x: {.nan: a, .inf: b}\n",
		"overlay:\n  options:\n    x: [{y: {.NaN: a, 1: b}}]\n",
		"overlay:\n  options:\n    b: {.nan: 1, 0: 2}\n    a: {.NAN: 1, 0: 2}\n",
		"overlay:\n  options:\n    x: {!!float .nan: a, 1: b}\n",
		"overlay:\n  options:\n    x: {1: {.nan: a}, 1.0: b}\n",
		"overlay:\n  options:\n    x: {1.0: b, 1: {.nan: a}}\n",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()

			// Go's map order changes from one range to the next, so one refusal proves nothing: ask many times.
			for range 50 {
				_, _, _, err := schematic.Normalize([]byte(in))
				require.ErrorIs(t, err, schematic.ErrNaNKey)
				require.True(t, schematic.IsInvalid(err))
			}
		})
	}

	s, canonical, _, err := schematic.Normalize([]byte("overlay:\n  options:\n    x: {\".nan\": a, 1: b}\n"))
	require.NoError(t, err)
	require.Equal(t, "overlay:\n    image: \"\"\n    name: \"\"\n    options:\n        x:\n"+
		"            1: b\n            \".nan\": a\ncustomization: {}\n", string(canonical))
	require.Equal(t, map[any]any{".nan": "a", 1: "b"}, s.Overlay.Options["x"])
}
