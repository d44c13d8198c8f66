package recipe_test

import (
	"fmt"
	"testing"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/machinery/config/merge"
	"github.com/siderolabs/talos/pkg/machinery/meta"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// pathsFor gives every input of r a stand-in path.
func pathsFor(r recipe.Recipe) recipe.Paths {
	p := recipe.Paths{
		Kernel:             "/in/vmlinuz",
		Initramfs:          "/in/initramfs.xz",
		SDBoot:             "/in/systemd-boot.efi",
		SDStub:             "/in/systemd-stub.efi",
		BaseInstaller:      "/in/installer-base",
		SchematicExtension: "/in/schematic.tar",
		Overlay:            "/in/overlay",
		OverlayInstaller:   "/in/overlay-target",
		SecureBoot: &profile.SecureBootAssets{
			SecureBootSigner: profile.SigningKeyAndCertificate{KeyPath: "/keys/uki.key", CertPath: "/keys/uki.crt"},
			PCRSigner:        profile.SigningKey{KeyPath: "/keys/pcr.key"},
		},
	}

	for i := range r.Inputs.Extensions {
		p.Extensions = append(p.Extensions, profile.ContainerAsset{OCIPath: fmt.Sprintf("/in/ext-%d", i)})
	}

	return p
}

func buildProfile(t *testing.T, path, yaml, version string) profile.Profile {
	t.Helper()

	r := mustPlan(t, path, yaml, version)

	prof, err := r.Profile(pathsFor(r))
	require.NoError(t, err)

	return prof
}

// customized sets everything a schematic can set, for every output kind to pick from.
const customized = `customization:
  embeddedMachineConfiguration: |
    version: v1alpha1
  extraKernelArgs: [noapic, nolapic]
  meta:
    - {key: 0xa, value: '{"externalIPs":["1.2.3.4"]}'}
  systemExtensions: {officialExtensions: [siderolabs/amd-ucode]}
  bootloader: grub
  secureboot: {enrollKeys: manual, includeWellKnownCertificates: true}
`

func TestProfileCustomizationsPerKind(t *testing.T) {
	t.Parallel()

	metaValues := meta.Values{{Key: 0xa, Value: `{"externalIPs":["1.2.3.4"]}`}}
	args := []string{"noapic", "nolapic"}

	for _, tc := range []struct {
		path                string
		args, meta, initrd  bool
		wantISOOpts         *profile.ISOOptions
		wantImageBootloader profile.BootloaderKind
	}{
		{path: "kernel-amd64"},
		{path: "initramfs-amd64.xz", initrd: true},
		{path: "cmdline-metal-amd64", args: true, meta: true},
		{path: "cmdline-metal-amd64-secureboot", args: true, meta: true},
		{path: "metal-amd64.iso", args: true, meta: true, initrd: true,
			wantISOOpts: &profile.ISOOptions{Bootloader: profile.BootLoaderKindGrub}},
		{path: "metal-amd64-secureboot.iso", args: true, meta: true, initrd: true, // secure boot always uses sd-boot
			wantISOOpts: &profile.ISOOptions{SDBootEnrollKeys: profile.SDBootEnrollKeysManual, Bootloader: profile.BootLoaderKindSDBoot}},
		{path: "metal-amd64-uki.efi", args: true, initrd: true},
		{path: "metal-amd64-secureboot-uki.efi", args: true, initrd: true},
		{path: "installer-amd64.tar", args: true, initrd: true},
		{path: "installer-amd64-secureboot.tar", args: true, initrd: true},
		{path: "metal-amd64.raw.xz", args: true, meta: true, initrd: true, wantImageBootloader: profile.BootLoaderKindGrub},
		{path: "metal-amd64-secureboot.raw.xz", args: true, meta: true, initrd: true, wantImageBootloader: profile.BootLoaderKindSDBoot},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			a := mustParse(t, tc.path)
			prof := buildProfile(t, tc.path, customized, "v1.13.0")
			require.NoError(t, prof.Validate())

			require.Equal(t, "Talos", prof.Name)
			require.Equal(t, "v1.13.0", prof.Version)
			require.Equal(t, a.Arch, prof.Arch)
			require.Equal(t, a.Platform, prof.Platform)
			require.Equal(t, a.SecureBoot, prof.SecureBootEnabled())
			require.Equal(t, a.Kind, prof.Output.Kind)
			require.Equal(t, a.OutFormat, prof.Output.OutFormat)
			require.Empty(t, prof.BaseProfileName)
			require.Nil(t, prof.Overlay)

			if tc.args {
				require.Equal(t, args, prof.Customization.ExtraKernelArgs)
			} else {
				require.Empty(t, prof.Customization.ExtraKernelArgs)
			}

			if tc.meta {
				require.Equal(t, metaValues, prof.Customization.MetaContents)
			} else {
				require.Empty(t, prof.Customization.MetaContents)
			}

			if tc.initrd {
				require.Equal(t, []profile.ContainerAsset{{OCIPath: "/in/ext-0"}, {TarballPath: "/in/schematic.tar"}},
					prof.Input.SystemExtensions, "official extensions first, the schematic extension last")
				require.Equal(t, "version: v1alpha1\n", prof.Customization.EmbeddedMachineConfiguration)
			} else {
				require.Empty(t, prof.Input.SystemExtensions)
				require.Empty(t, prof.Customization.EmbeddedMachineConfiguration)
			}

			require.Equal(t, tc.wantISOOpts, prof.Output.ISOOptions)

			if a.Kind == profile.OutKindImage {
				require.Equal(t, &profile.ImageOptions{
					DiskSize: int64(a.DiskSize), DiskFormat: a.DiskFormat, Bootloader: tc.wantImageBootloader,
				}, prof.Output.ImageOptions)
			} else {
				require.Nil(t, prof.Output.ImageOptions)
			}

			if a.SecureBoot && a.Kind != profile.OutKindCmdline {
				require.Equal(t, &profile.SecureBootAssets{
					SecureBootSigner:      profile.SigningKeyAndCertificate{KeyPath: "/keys/uki.key", CertPath: "/keys/uki.crt"},
					PCRSigner:             profile.SigningKey{KeyPath: "/keys/pcr.key"},
					IncludeWellKnownCerts: true,
				}, prof.Input.SecureBoot)
			} else {
				require.Nil(t, prof.Input.SecureBoot)
			}

			if a.Kind == profile.OutKindInstaller {
				require.Equal(t, profile.ContainerAsset{ImageRef: "siderolabs/installer-base:v1.13.0", OCIPath: "/in/installer-base"},
					prof.Input.BaseInstaller)
			} else {
				require.Zero(t, prof.Input.BaseInstaller)
			}
		})
	}
}

// Before Talos 1.10 an installer (and a UKI) carries the schematic's kernel arguments only when it is signed: the
// plain installer's boot loader configuration was written on the node.
func TestProfileKernelArgsBeforeUnifiedInstaller(t *testing.T) {
	t.Parallel()

	const s = "customization: {extraKernelArgs: [noapic], meta: [{key: 10, value: x}]}\n"

	for _, tc := range []struct {
		path, version string
		args          bool
	}{
		{"installer-amd64.tar", "v1.9.5", false},
		{"installer-amd64-secureboot.tar", "v1.9.5", true},
		{"metal-amd64-uki.efi", "v1.9.5", false},
		{"metal-amd64-secureboot-uki.efi", "v1.9.5", true},
		{"installer-amd64.tar", "v1.10.0", true},
		{"metal-amd64-uki.efi", "v1.10.0", true},
	} {
		prof := buildProfile(t, tc.path, s, tc.version)
		require.NoError(t, prof.Validate(), tc.path)
		require.Empty(t, prof.Customization.MetaContents, tc.path)

		if tc.args {
			require.Equal(t, []string{"noapic"}, prof.Customization.ExtraKernelArgs, "%s %s", tc.path, tc.version)
		} else {
			require.Empty(t, prof.Customization.ExtraKernelArgs, "%s %s", tc.path, tc.version)
		}
	}

	// Before 1.10 the base installer is siderolabs/installer; its repository names the output tarball's tag.
	v := catalog("v1.9.5")
	v.InstallerBase.Repository = "siderolabs/installer"

	p := parseSchematic(t, s)
	r, err := recipe.Plan(mustParse(t, "installer-amd64.tar"), p.id, p.canonical, p.s, v, planOpts)
	require.NoError(t, err)

	prof, err := r.Profile(pathsFor(r))
	require.NoError(t, err)
	require.Equal(t, "siderolabs/installer:v1.9.5", prof.Input.BaseInstaller.ImageRef)
}

// Without a schematic bootloader the profile pins the one the imager would choose, so it validates on its own.
func TestProfileDefaultBootloaderValidates(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		path    string
		version string
		want    profile.BootloaderKind
	}{
		{"metal-amd64.raw.xz", "v1.13.0", profile.BootLoaderKindDualBoot},
		{"metal-arm64.raw.xz", "v1.13.0", profile.BootLoaderKindSDBoot},
		{"metal-amd64-secureboot.raw.xz", "v1.13.0", profile.BootLoaderKindSDBoot},
		{"metal-amd64.raw.xz", "v1.9.0", profile.BootLoaderKindGrub},
		{"azure-amd64.vhd", "v1.13.0", profile.BootLoaderKindDualBoot},
	} {
		prof := buildProfile(t, tc.path, emptySchematic, tc.version)
		require.NoError(t, prof.Validate(), tc.path)
		require.Equal(t, tc.want, prof.Output.ImageOptions.Bootloader, tc.path)
		require.Equal(t, int64(mustParse(t, tc.path).DiskSize), prof.Output.ImageOptions.DiskSize,
			"the imager grows the disk itself; the profile keeps the asked size")
	}

	prof := buildProfile(t, "metal-amd64-secureboot.iso", emptySchematic, "v1.13.0")
	require.NoError(t, prof.Validate())
	require.Equal(t, &profile.ISOOptions{SDBootEnrollKeys: profile.SDBootEnrollKeysIfSafe, Bootloader: profile.BootLoaderKindSDBoot},
		prof.Output.ISOOptions)

	prof = buildProfile(t, "metal-amd64.iso", emptySchematic, "v1.13.0")
	require.NoError(t, prof.Validate())
	require.Nil(t, prof.Output.ISOOptions, "the imager chooses for a plain ISO")
}

// rpiProfile is an overlay's profiles/rpi_generic.yaml as the official overlays ship it (its outFormat is the enum
// text ".xz").
const rpiProfile = `arch: arm64
platform: metal
secureboot: false
output:
  kind: image
  outFormat: .xz
  imageOptions:
    diskSize: 1306525696
    diskFormat: raw
    bootloader: grub
`

func TestProfileOverlay(t *testing.T) {
	t.Parallel()

	const s = `overlay:
  name: rpi_generic
  image: siderolabs/sbc-raspberrypi
  options: {configTxtAppend: dtoverlay=vc4}
customization: {extraKernelArgs: [noapic]}
`
	for _, path := range []string{"metal-arm64.raw.zst", "installer-arm64.tar"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()

			a := mustParse(t, path)
			prof := buildProfile(t, path, s, "v1.13.0")

			require.Equal(t, "rpi_generic", prof.BaseProfileName)
			require.Equal(t, &profile.OverlayOptions{
				Name:         "rpi_generic",
				Image:        profile.ContainerAsset{OCIPath: "/in/overlay"},
				ExtraOptions: map[string]any{"configTxtAppend": "dtoverlay=vc4"},
			}, prof.Overlay)

			if a.Kind == profile.OutKindInstaller {
				require.Equal(t, profile.ContainerAsset{OCIPath: "/in/overlay-target"}, prof.Input.OverlayInstaller)
			} else {
				require.Zero(t, prof.Input.OverlayInstaller)
				require.Equal(t, profile.BootLoaderKindNone, prof.Output.ImageOptions.Bootloader,
					"left to the overlay's profile")
			}

			// What the imager does once it has read the overlay's profiles: ours merged over the overlay's, defaults
			// filled, validated.
			var merged profile.Profile
			require.NoError(t, yaml.Unmarshal([]byte(rpiProfile), &merged))
			require.Equal(t, profile.OutFormatXZ, merged.Output.OutFormat)

			prof.BaseProfileName = ""
			require.NoError(t, merge.Merge(&merged, &prof))
			merged.Output.FillDefaults(merged.Arch, merged.Version, merged.SecureBootEnabled())
			require.NoError(t, merged.Validate())

			require.Equal(t, a.Kind, merged.Output.Kind)
			require.Equal(t, a.OutFormat, merged.Output.OutFormat, "the asked compression wins over the overlay's")
			require.Equal(t, []string{"noapic"}, merged.Customization.ExtraKernelArgs)

			if a.Kind == profile.OutKindImage {
				require.Equal(t, profile.BootLoaderKindGrub, merged.Output.ImageOptions.Bootloader, "the overlay's bootloader")
			}
		})
	}
}

func TestProfileErrors(t *testing.T) {
	t.Parallel()

	r := mustPlan(t, "installer-arm64-secureboot.tar",
		"overlay: {name: rpi_generic, image: x}\ncustomization: {systemExtensions: {officialExtensions: [siderolabs/amd-ucode]}}\n",
		"v1.13.0")

	for _, tc := range []struct {
		name  string
		clear func(*recipe.Paths)
		err   string
	}{
		{"kernel", func(p *recipe.Paths) { p.Kernel = "" }, "kernel and initramfs paths are required"},
		{"sd-boot", func(p *recipe.Paths) { p.SDBoot = "" }, "installer output needs the sd-boot and sd-stub paths"},
		{"base installer", func(p *recipe.Paths) { p.BaseInstaller = "" }, "installer output needs the base installer path"},
		{"extensions", func(p *recipe.Paths) { p.Extensions = nil }, "0 extension paths for 1 extensions"},
		{"schematic extension", func(p *recipe.Paths) { p.SchematicExtension = "" }, "the schematic extension path is required"},
		{"overlay", func(p *recipe.Paths) { p.Overlay = "" }, "the overlay path is required"},
		{"overlay installer", func(p *recipe.Paths) { p.OverlayInstaller = "" }, "installer output with an overlay needs the overlay installer path"},
		{"secure boot", func(p *recipe.Paths) { p.SecureBoot = nil }, "secure boot output needs the secure boot assets"},
	} {
		p := pathsFor(r)
		tc.clear(&p)

		_, err := r.Profile(p)
		require.EqualError(t, err, "profile installer-arm64-secureboot.tar: "+tc.err, tc.name)
		require.False(t, recipe.IsInvalid(err))
	}

	broken := r
	broken.Schematic = []byte("nope: 1\n")
	_, err := broken.Profile(pathsFor(r))
	require.ErrorContains(t, err, "profile installer-arm64-secureboot.tar: schematic ")
}
