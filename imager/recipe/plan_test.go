package recipe_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
)

const emptySchematic = "customization: {}\n"

func TestPlanInputs(t *testing.T) {
	t.Parallel()

	v := catalog("v1.13.0")

	t.Run("iso pins the host's imager and nothing else", func(t *testing.T) {
		t.Parallel()

		r := mustPlan(t, "metal-arm64.iso", emptySchematic, "v1.13.0")
		require.Equal(t, recipe.Inputs{
			Imager: recipe.Image{Repository: "siderolabs/imager", Digest: v.Imager.Arch["amd64"], Tag: "v1.13.0"},
		}, r.Inputs)
		require.Equal(t, "v1.13.0", r.Version)
		require.Equal(t, "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba", r.SchematicID)
		require.Equal(t, []byte(emptySchematic), r.Schematic)
		require.Empty(t, r.SecureBootKeys, "not a secure boot asset")

		opts := planOpts
		opts.HostArch = "arm64"
		r, err := plan(t, "metal-amd64.iso", emptySchematic, "v1.13.0", opts)
		require.NoError(t, err)
		require.Equal(t, v.Imager.Arch["arm64"], r.Inputs.Imager.Digest)
	})

	t.Run("installer pins installer-base for the target", func(t *testing.T) {
		t.Parallel()

		r := mustPlan(t, "installer-arm64.tar", emptySchematic, "v1.13.0")
		require.Equal(t, &recipe.Image{
			Repository: "siderolabs/installer-base",
			Digest:     v.InstallerBase.Arch["arm64"],
			Platform:   "linux/arm64",
			Tag:        "v1.13.0",
		}, r.Inputs.InstallerBase)
	})

	t.Run("extensions resolve aliases in schematic order", func(t *testing.T) {
		t.Parallel()

		r := mustPlan(t, "metal-arm64.raw.xz", `customization:
  systemExtensions:
    officialExtensions: [siderolabs/gasket, siderolabs/amd-ucode, siderolabs/i915-ucode, siderolabs/nvidia-container-toolkit]
`, "v1.13.0")
		require.Equal(t, []recipe.Image{
			{Repository: "siderolabs/gasket-driver", Digest: digest("siderolabs/gasket-driver"), Platform: "linux/arm64", Tag: "97aeba5-v1.13.0"},
			{Repository: "siderolabs/amd-ucode", Digest: digest("siderolabs/amd-ucode"), Platform: "linux/arm64", Tag: "20240115"},
			{Repository: "siderolabs/i915", Digest: digest("siderolabs/i915"), Platform: "linux/arm64", Tag: "20240115-v1.13.0"},
			{
				Repository: "siderolabs/nvidia-container-toolkit-lts", Digest: digest("siderolabs/nvidia-container-toolkit-lts"),
				Platform: "linux/arm64", Tag: "570.124.06-v1.17.5",
			},
		}, r.Inputs.Extensions)
	})

	t.Run("kernel and cmdline take no extensions and no overlay", func(t *testing.T) {
		t.Parallel()

		const s = `overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi}
customization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode]}}
`
		for _, path := range []string{"kernel-arm64", "cmdline-metal-arm64"} {
			r := mustPlan(t, path, s, "v1.13.0")
			require.Empty(t, r.Inputs.Extensions, path)
			require.Nil(t, r.Inputs.Overlay, path)
			require.Empty(t, r.Author, path)
		}
	})

	t.Run("overlay runs on the host, installer carries the target's", func(t *testing.T) {
		t.Parallel()

		const s = `overlay:
  name: rpi_generic
  image: ignored/for-lookup
  options: {configTxtAppend: dtoverlay=vc4-kms-v3d}
customization: {}
`
		host := recipe.Image{
			Repository: "siderolabs/sbc-raspberrypi", Digest: digest("siderolabs/sbc-raspberrypi"),
			Platform: "linux/amd64", Tag: "v0.1.7",
		}

		r := mustPlan(t, "metal-arm64.raw.xz", s, "v1.13.0")
		require.Equal(t, &recipe.Overlay{
			Image: host, Name: "rpi_generic", Options: map[string]any{"configTxtAppend": "dtoverlay=vc4-kms-v3d"},
		}, r.Inputs.Overlay)
		require.Nil(t, r.Inputs.OverlayInstaller)

		r = mustPlan(t, "installer-arm64.tar", s, "v1.13.0")
		require.Equal(t, host, r.Inputs.Overlay.Image)

		target := host
		target.Platform = "linux/arm64"
		require.Equal(t, &target, r.Inputs.OverlayInstaller)
	})
}

func TestPlanValidation(t *testing.T) {
	t.Parallel()

	const (
		unknownExt     = "customization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode, siderolabs/foo]}}\n"
		overlay        = "overlay: {name: rpi_generic, image: x}\ncustomization: {}\n"
		unknownOverlay = "overlay: {name: foo, image: siderolabs/sbc-raspberrypi}\ncustomization: {}\n"
		embedded       = "customization: {embeddedMachineConfiguration: 'version: v1alpha1'}\n"
		badEnroll      = "customization: {secureboot: {enrollKeys: always}}\n"
		upperEnroll    = "customization: {secureboot: {enrollKeys: FORCE}}\n"
		sector4k       = "customization: {diskImage: {sectorSize: 4096}}\n"
		sector512      = "customization: {diskImage: {sectorSize: 512}}\n"
	)

	noKeys := planOpts
	noKeys.SecureBootKeys = ""

	for _, tc := range []struct {
		name, path, schematic, version string
		opts                           *recipe.PlanOptions
		err                            string
	}{
		{name: "unknown extension iso", path: "metal-amd64.iso", schematic: unknownExt,
			err: `official extension "siderolabs/foo" is not available for Talos version v1.13.0`},
		{name: "unknown extension initramfs", path: "initramfs-amd64.xz", schematic: unknownExt,
			err: `official extension "siderolabs/foo" is not available for Talos version v1.13.0`},
		{name: "unknown extension installer", path: "installer-amd64.tar", schematic: unknownExt,
			err: `official extension "siderolabs/foo" is not available for Talos version v1.13.0`},
		{name: "unknown extension uki", path: "metal-amd64-uki.efi", schematic: unknownExt,
			err: `official extension "siderolabs/foo" is not available for Talos version v1.13.0`},
		{name: "unknown extension image", path: "aws-arm64.raw.xz", schematic: unknownExt, version: "v1.7.0",
			err: `official extension "siderolabs/foo" is not available for Talos version v1.7.0`},
		{name: "unknown extension kernel", path: "kernel-amd64", schematic: unknownExt},
		{name: "unknown extension cmdline", path: "cmdline-metal-amd64", schematic: unknownExt},

		{name: "overlay too old kernel", path: "kernel-arm64", schematic: overlay, version: "v1.6.7",
			err: "overlay is not supported for Talos version v1.6.7"},
		{name: "overlay too old cmdline", path: "cmdline-metal-arm64", schematic: overlay, version: "v1.6.0",
			err: "overlay is not supported for Talos version v1.6.0"},
		{name: "overlay too old image", path: "metal-arm64.raw.xz", schematic: overlay, version: "v1.6.0",
			err: "overlay is not supported for Talos version v1.6.0"},
		{name: "overlay 1.7", path: "metal-arm64.raw.xz", schematic: overlay, version: "v1.7.0"},

		{name: "unknown overlay image", path: "metal-arm64.raw.xz", schematic: unknownOverlay,
			err: `official overlay "foo" is not available for Talos version v1.13.0`},
		{name: "unknown overlay installer", path: "installer-arm64.tar", schematic: unknownOverlay,
			err: `official overlay "foo" is not available for Talos version v1.13.0`},
		{name: "unknown overlay kernel", path: "kernel-arm64", schematic: unknownOverlay},
		{name: "unknown overlay cmdline", path: "cmdline-metal-arm64", schematic: unknownOverlay},

		{name: "embedded too old iso", path: "metal-amd64.iso", schematic: embedded, version: "v1.11.5",
			err: "embedding configuration is not supported for Talos version v1.11.5"},
		{name: "embedded too old initramfs", path: "initramfs-amd64.xz", schematic: embedded, version: "v1.11.0",
			err: "embedding configuration is not supported for Talos version v1.11.0"},
		{name: "embedded too old kernel", path: "kernel-amd64", schematic: embedded, version: "v1.11.0"},
		{name: "embedded too old cmdline", path: "cmdline-metal-amd64", schematic: embedded, version: "v1.11.0"},
		{name: "embedded 1.12", path: "metal-amd64.iso", schematic: embedded, version: "v1.12.0"},

		{name: "sb disabled iso", path: "metal-amd64-secureboot.iso", opts: &noKeys, err: "secure boot is disabled"},
		{name: "sb disabled uki", path: "metal-amd64-secureboot-uki.efi", opts: &noKeys, err: "secure boot is disabled"},
		{name: "sb disabled installer", path: "installer-amd64-secureboot.tar", opts: &noKeys, err: "secure boot is disabled"},
		{name: "sb disabled image", path: "metal-amd64-secureboot.raw.zst", opts: &noKeys, err: "secure boot is disabled"},
		{name: "sb disabled cmdline", path: "cmdline-metal-amd64-secureboot", opts: &noKeys, err: "secure boot is disabled"},
		{name: "no keys non-sb", path: "metal-amd64.iso", opts: &noKeys},
		{name: "sb too old", path: "metal-amd64-secureboot.iso", version: "v1.4.8",
			err: "secure boot is not supported for Talos version v1.4.8"},
		{name: "uki too old", path: "metal-amd64-uki.efi", version: "v1.4.8",
			err: "UKI output is not supported for Talos version v1.4.8"},

		{name: "bad enroll sb iso", path: "metal-amd64-secureboot.iso", schematic: badEnroll,
			err: `invalid secureboot enrollKeys value: "always" (want one of off, manual, if-safe, force)`},
		{name: "bad enroll sb image", path: "metal-amd64-secureboot.raw.xz", schematic: badEnroll,
			err: `invalid secureboot enrollKeys value: "always" (want one of off, manual, if-safe, force)`},
		{name: "bad enroll non-sb iso", path: "metal-amd64.iso", schematic: badEnroll},
		{name: "bad enroll sb uki", path: "metal-amd64-secureboot-uki.efi", schematic: badEnroll},
		{name: "bad enroll sb installer", path: "installer-amd64-secureboot.tar", schematic: badEnroll},
		{name: "enroll any case", path: "metal-amd64-secureboot.iso", schematic: upperEnroll},

		{name: "sector 4k image", path: "metal-amd64.raw.xz", schematic: sector4k,
			err: "disk image sector size 4096 is not supported: only 512"},
		{name: "sector 4k iso", path: "metal-amd64.iso", schematic: sector4k},
		{name: "sector 512 image", path: "metal-amd64.raw.xz", schematic: sector512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			s, version, opts := tc.schematic, tc.version, planOpts
			if s == "" {
				s = emptySchematic
			}

			if version == "" {
				version = "v1.13.0"
			}

			if tc.opts != nil {
				opts = *tc.opts
			}

			r, err := plan(t, tc.path, s, version, opts)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotEmpty(t, r.Key)

				return
			}

			require.EqualError(t, err, tc.err)
			require.True(t, recipe.IsInvalid(err), "%T must be invalid", err)
			require.Equal(t, recipe.Recipe{}, r)
		})
	}

	_, err := plan(t, "metal-amd64-secureboot.iso", emptySchematic, "v1.13.0", noKeys)
	require.ErrorIs(t, err, recipe.ErrSecureBootDisabled)
}

func TestPlanProgrammingErrors(t *testing.T) {
	t.Parallel()

	p := parseSchematic(t, emptySchematic)
	a := mustParse(t, "installer-arm64.tar")

	v := catalog("v1.13.0")
	delete(v.InstallerBase.Arch, "arm64")

	_, err := recipe.Plan(a, p.id, p.canonical, p.s, v, planOpts)
	require.EqualError(t, err, "catalog v1.13.0: no siderolabs/installer-base image for linux/arm64")
	require.False(t, recipe.IsInvalid(err))

	opts := planOpts
	opts.HostArch = "riscv64"
	_, err = recipe.Plan(a, p.id, p.canonical, p.s, catalog("v1.13.0"), opts)
	require.ErrorContains(t, err, `unsupported build host architecture "riscv64"`)
	require.False(t, recipe.IsInvalid(err))

	_, err = recipe.Plan(a, "0000", p.canonical, p.s, catalog("v1.13.0"), planOpts)
	require.ErrorContains(t, err, "does not hash to 0000")

	_, err = recipe.Plan(a, p.id, p.canonical, nil, catalog("v1.13.0"), planOpts)
	require.Error(t, err)
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestPlanKey(t *testing.T) {
	t.Parallel()

	// An asset that uses every input: secure boot installer with extensions and an overlay.
	const full = `overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi, options: {a: 1}}
customization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode, siderolabs/gasket]}}
`
	const path = "installer-arm64-secureboot.tar"

	base := mustPlan(t, path, full, "v1.13.0")
	require.Regexp(t, hexKey, base.Key)
	require.Equal(t, base.Key, mustPlan(t, path, full, "v1.13.0").Key, "same inputs, same key")

	key, err := base.ComputeKey()
	require.NoError(t, err)
	require.Equal(t, base.Key, key)

	withCatalog := func(mutate func(*release.Version)) string {
		t.Helper()

		p := parseSchematic(t, full)
		v := catalog("v1.13.0")
		mutate(&v)

		r, err := recipe.Plan(mustParse(t, path), p.id, p.canonical, p.s, v, planOpts)
		require.NoError(t, err)

		return r.Key
	}

	withOpts := func(mutate func(*recipe.PlanOptions)) string {
		t.Helper()

		opts := planOpts
		mutate(&opts)

		r, err := plan(t, path, full, "v1.13.0", opts)
		require.NoError(t, err)

		return r.Key
	}

	changed := map[string]string{
		"imager digest":         withCatalog(func(v *release.Version) { v.Imager.Arch["amd64"] = digest("other imager") }),
		"installer-base digest": withCatalog(func(v *release.Version) { v.InstallerBase.Arch["arm64"] = digest("other base") }),
		"extension digest":      withCatalog(func(v *release.Version) { v.Extensions[2].Digest = digest("other gasket") }),
		"overlay digest":        withCatalog(func(v *release.Version) { v.Overlays[0].Digest = digest("other overlay") }),
		"version":               mustPlan(t, path, full, "v1.13.1").Key,
		"schematic":             mustPlan(t, path, "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi, options: {a: 2}}\ncustomization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode, siderolabs/gasket]}}\n", "v1.13.0").Key,
		"extension order":       mustPlan(t, path, "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi, options: {a: 1}}\ncustomization: {systemExtensions: {officialExtensions: [siderolabs/gasket, siderolabs/amd-ucode]}}\n", "v1.13.0").Key,
		"asset":                 mustPlan(t, "metal-arm64-secureboot.iso", full, "v1.13.0").Key,
		"key fingerprint":       withOpts(func(o *recipe.PlanOptions) { o.SecureBootKeys = "sha256:other" }),
		"author":                withOpts(func(o *recipe.PlanOptions) { o.Author = "Someone else" }),
		"builder":               withOpts(func(o *recipe.PlanOptions) { o.Builder = "edgefactory next" }),
		"host arch":             withOpts(func(o *recipe.PlanOptions) { o.HostArch = "arm64" }),
	}

	seen := map[string]string{base.Key: "base"}

	for what, key := range changed {
		require.Regexp(t, hexKey, key, what)

		if other, dup := seen[key]; dup {
			t.Fatalf("%s gives the same key as %s", what, other)
		}

		seen[key] = what
	}
}

func TestPlanKeyIgnoresSpellingAndUnusedSettings(t *testing.T) {
	t.Parallel()

	for _, pair := range [][2]string{
		{"metal-x86_64.iso", "metal-amd64.iso"},
		{"kernel-i386", "kernel-amd64"},
		{"cmdline-metal-x86_64-secureboot", "cmdline-metal-amd64-secureboot"},
		{"installer-x86_64.tar", "installer-amd64.tar"},
		{"digital-ocean-x86_64.raw.gz", "digital-ocean-amd64.raw.gz"},
	} {
		require.Equal(t, mustPlan(t, pair[1], emptySchematic, "v1.13.0").Key, mustPlan(t, pair[0], emptySchematic, "v1.13.0").Key, pair[0])
	}

	// The kernel carries no schematic extension, and non-secure-boot assets are not signed.
	otherAuthor, otherKeys := planOpts, planOpts
	otherAuthor.Author = "Someone else"
	otherKeys.SecureBootKeys = "sha256:other"

	kernel := mustPlan(t, "kernel-amd64", emptySchematic, "v1.13.0")
	r, err := plan(t, "kernel-amd64", emptySchematic, "v1.13.0", otherAuthor)
	require.NoError(t, err)
	require.Equal(t, kernel.Key, r.Key)

	iso := mustPlan(t, "metal-amd64.iso", emptySchematic, "v1.13.0")
	r, err = plan(t, "metal-amd64.iso", emptySchematic, "v1.13.0", otherKeys)
	require.NoError(t, err)
	require.Equal(t, iso.Key, r.Key)
}

// Overlay options are free-form YAML: mappings with non-string keys and NaN must still hash, and stably.
func TestPlanKeyFreeFormOverlayOptions(t *testing.T) {
	t.Parallel()

	const s = `overlay:
  name: rpi_generic
  image: siderolabs/sbc-raspberrypi
  options:
    nested: {1: one, true: yes-string, 2.5: x}
    list: [{3: three}, .nan, .inf]
customization: {}
`
	a := mustPlan(t, "metal-arm64.raw.xz", s, "v1.13.0")
	b := mustPlan(t, "metal-arm64.raw.xz", s, "v1.13.0")
	require.Regexp(t, hexKey, a.Key)
	require.Equal(t, a.Key, b.Key)

	// The recipe keeps the options as the schematic has them; only the key's encoding rewrites them.
	nested, ok := a.Inputs.Overlay.Options["nested"].(map[any]any)
	require.True(t, ok, "%T", a.Inputs.Overlay.Options["nested"])
	require.Equal(t, "one", nested[1])
}

func TestPlanKeyErrorIsNotInvalid(t *testing.T) {
	t.Parallel()

	r := mustPlan(t, "metal-arm64.raw.xz", "overlay: {name: rpi_generic, image: x}\ncustomization: {}\n", "v1.13.0")
	r.Inputs.Overlay.Options = map[string]any{"f": func() {}}

	_, err := r.ComputeKey()
	require.Error(t, err)
	require.False(t, errors.As(err, new(*recipe.InvalidError)))
}

// TestPlanOverlayOptionKeysDeterministic: mapping keys that differ in YAML but print alike (null and "<nil>", .inf
// and "+Inf", a timestamp and its text) would collide in the key's encoding, the survivor chosen by map iteration
// order. Planning the same schematic again and again must give one outcome: one key, or one error naming the keys.
func TestPlanOverlayOptionKeysDeterministic(t *testing.T) {
	t.Parallel()

	schematicWith := func(options string) string {
		return "overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi, options: " + options + "}\ncustomization: {}\n"
	}

	for _, tc := range []struct {
		name, path, options, err string
	}{
		{name: "null and <nil>", path: "metal-arm64.raw.xz", options: `{n: {null: x, "<nil>": y}}`,
			err: `overlay options: keys "<nil>" and null read alike ("<nil>"): rename one`},
		{name: "-inf and -Inf", path: "metal-arm64.raw.xz", options: `{n: {-.inf: x, "-Inf": y}}`,
			err: `overlay options: keys "-Inf" and -.inf read alike ("-Inf"): rename one`},
		{name: "inf and +Inf", path: "installer-arm64.tar", options: `{list: [{.inf: x, "+Inf": y}]}`,
			err: `overlay options: keys "+Inf" and .inf read alike ("+Inf"): rename one`},
		{name: "timestamp and its text", path: "metal-arm64.iso",
			options: `{n: {2001-12-14: x, "2001-12-14 00:00:00 +0000 UTC": y}}`,
			err:     `overlay options: keys "2001-12-14 00:00:00 +0000 UTC" and 2001-12-14T00:00:00Z read alike ("2001-12-14 00:00:00 +0000 UTC"): rename one`},
		{name: "first clash in key order", path: "metal-arm64.raw.xz",
			options: `{b: {.inf: x, "+Inf": y}, a: {null: x, "<nil>": y}}`,
			err:     `overlay options: keys "<nil>" and null read alike ("<nil>"): rename one`},
		{name: "overlay unused", path: "kernel-arm64", options: `{n: {null: x, "<nil>": y}}`},
		{name: "no clash", path: "metal-arm64.raw.xz", options: `{n: {null: x, 1: y, true: z, 2.5: w}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			outcomes := map[string]int{}

			for range 200 {
				r, err := plan(t, tc.path, schematicWith(tc.options), "v1.13.0", planOpts)
				if err != nil {
					require.True(t, recipe.IsInvalid(err), "%T must be invalid: %v", err, err)
					outcomes["error: "+err.Error()]++

					continue
				}

				outcomes["key: "+r.Key]++
			}

			require.Len(t, outcomes, 1, "one schematic, one outcome: %v", outcomes)

			for got := range outcomes {
				if tc.err == "" {
					require.Regexp(t, `^key: [0-9a-f]{64}$`, got)
				} else {
					require.Equal(t, "error: "+tc.err, got)
				}
			}
		})
	}
}

// TestComputeKeyRefusesKeysReadAlike: a recipe not made by Plan gets an error, not a key left to chance.
func TestComputeKeyRefusesKeysReadAlike(t *testing.T) {
	t.Parallel()

	r := mustPlan(t, "metal-arm64.raw.xz", "overlay: {name: rpi_generic, image: x}\ncustomization: {}\n", "v1.13.0")
	r.Inputs.Overlay.Options = map[string]any{"n": map[any]any{nil: "x", "<nil>": "y"}}

	for range 50 {
		_, err := r.ComputeKey()
		require.EqualError(t, err, `encode recipe: overlay options: keys "<nil>" and null read alike ("<nil>"): rename one`)
	}
}
