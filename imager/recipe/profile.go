package recipe

import (
	"errors"
	"fmt"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/meta"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

// profileName is the OS name the imager writes into boot entries and UKI metadata; the official Community service
// sets it explicitly rather than relying on the imager's build-time default.
const profileName = "Talos"

// Profile is the Talos imager profile that builds the recipe from its inputs on disk. It applies the schematic's
// customizations per output kind as the official service does (docs/api.md §2.3):
//   - kernel, initramfs: no kernel arguments, no META;
//   - installer, UKI: extra kernel arguments only for secure boot or Talos >= 1.10, never META;
//   - ISO: kernel arguments, META (on the command line), bootloader;
//   - disk image: kernel arguments, META (in the META partition), bootloader;
//   - cmdline: kernel arguments and META.
//
// Without an overlay the returned profile passes profile.Validate as is. With one, the overlay's
// profiles/<name>.yaml is its base profile (BaseProfileName), which the imager merges under it after pulling the
// overlay; the result validates then.
func (r Recipe) Profile(p Paths) (profile.Profile, error) {
	s, err := schematic.Unmarshal(r.Schematic)
	if err != nil {
		return profile.Profile{}, fmt.Errorf("profile %s: schematic %s: %w", r.Asset.Path, r.SchematicID, err)
	}

	a := r.Asset
	prof := profile.Profile{
		Arch:       a.Arch,
		Platform:   a.Platform,
		SecureBoot: new(a.SecureBoot),
		Name:       profileName,
		Version:    r.Version,
		Output:     output(a),
	}

	if err = r.setInputs(&prof, p, s); err != nil {
		return profile.Profile{}, fmt.Errorf("profile %s: %w", a.Path, err)
	}

	if err = customize(&prof, s); err != nil {
		return profile.Profile{}, fmt.Errorf("profile %s: %w", a.Path, err)
	}

	if prof.Overlay == nil {
		pinBootloader(&prof.Output, a.Arch, r.Version, a.SecureBoot)
	}

	return prof, nil
}

// output is the profile's Output for the asset, before customization.
func output(a Asset) profile.Output {
	o := profile.Output{Kind: a.Kind, OutFormat: a.OutFormat}

	if a.Kind == profile.OutKindImage {
		o.ImageOptions = &profile.ImageOptions{
			DiskSize:          int64(a.DiskSize),
			DiskFormat:        a.DiskFormat,
			DiskFormatOptions: a.DiskFormatOptions,
		}
	}

	return o
}

// setInputs points the profile at the files and OCI layouts of p, checking the recipe's inputs all have one.
func (r Recipe) setInputs(prof *profile.Profile, p Paths, s *schematic.Schematic) error {
	a := r.Asset

	if p.Kernel == "" || p.Initramfs == "" {
		return errors.New("kernel and initramfs paths are required")
	}

	prof.Input.Kernel.Path = p.Kernel
	prof.Input.Initramfs.Path = p.Initramfs

	switch a.Kind { //nolint:exhaustive // the other kinds never build a UKI
	case profile.OutKindUKI, profile.OutKindISO, profile.OutKindImage, profile.OutKindInstaller:
		if p.SDBoot == "" || p.SDStub == "" {
			return fmt.Errorf("%s output needs the sd-boot and sd-stub paths", a.Kind)
		}

		prof.Input.SDBoot.Path = p.SDBoot
		prof.Input.SDStub.Path = p.SDStub
	}

	if r.Inputs.InstallerBase != nil {
		if p.BaseInstaller == "" {
			return errors.New("installer output needs the base installer path")
		}

		// The imager tags the output tarball with ImageRef; the official service uses the repository and version.
		prof.Input.BaseInstaller = profile.ContainerAsset{
			ImageRef: r.Inputs.InstallerBase.Repository + ":" + r.Version,
			OCIPath:  p.BaseInstaller,
		}
	}

	if err := r.setExtensions(prof, p); err != nil {
		return err
	}

	if err := r.setOverlay(prof, p); err != nil {
		return err
	}

	if a.SecureBoot && a.Kind != profile.OutKindCmdline {
		if p.SecureBoot == nil {
			return errors.New("secure boot output needs the secure boot assets")
		}

		assets := *p.SecureBoot
		assets.IncludeWellKnownCerts = assets.IncludeWellKnownCerts || s.Customization.SecureBoot.IncludeWellKnownCertificates
		prof.Input.SecureBoot = &assets
	}

	return nil
}

// setExtensions lists the official extensions in schematic order, then the schematic extension last, as the
// official service does (the imager appends the embedded-configuration extension after them).
func (r Recipe) setExtensions(prof *profile.Profile, p Paths) error {
	if !buildsInitramfs(r.Asset.Kind) {
		return nil
	}

	if len(p.Extensions) != len(r.Inputs.Extensions) {
		return fmt.Errorf("%d extension paths for %d extensions", len(p.Extensions), len(r.Inputs.Extensions))
	}

	if p.SchematicExtension == "" {
		return errors.New("the schematic extension path is required")
	}

	prof.Input.SystemExtensions = append(append([]profile.ContainerAsset{}, p.Extensions...),
		profile.ContainerAsset{TarballPath: p.SchematicExtension})

	return nil
}

// setOverlay configures the overlay: its host-architecture image (the imager runs its installer here and reads
// its profiles/), its name and options, the overlay's own profile as the base, and for installers the
// target-architecture image the installer image carries.
func (r Recipe) setOverlay(prof *profile.Profile, p Paths) error {
	o := r.Inputs.Overlay
	if o == nil {
		return nil
	}

	if p.Overlay == "" {
		return errors.New("the overlay path is required")
	}

	prof.BaseProfileName = o.Name
	prof.Overlay = &profile.OverlayOptions{
		Name:         o.Name,
		Image:        profile.ContainerAsset{OCIPath: p.Overlay},
		ExtraOptions: o.Options,
	}

	if r.Inputs.OverlayInstaller != nil {
		if p.OverlayInstaller == "" {
			return errors.New("installer output with an overlay needs the overlay installer path")
		}

		prof.Input.OverlayInstaller = profile.ContainerAsset{OCIPath: p.OverlayInstaller}
	}

	return nil
}

// customize applies the schematic's kernel arguments, META, bootloader and embedded configuration per output kind.
func customize(prof *profile.Profile, s *schematic.Schematic) error {
	c := s.Customization
	kind, sb := prof.Output.Kind, prof.SecureBootEnabled()
	q := quirks.New(prof.Version)

	args, metaValues := false, false

	switch kind {
	case profile.OutKindISO, profile.OutKindImage, profile.OutKindCmdline:
		args, metaValues = true, true
	case profile.OutKindInstaller, profile.OutKindUKI:
		args = sb || q.SupportsUnifiedInstaller()
	case profile.OutKindKernel, profile.OutKindInitramfs, profile.OutKindUnknown:
	}

	if args && len(c.ExtraKernelArgs) > 0 {
		prof.Customization.ExtraKernelArgs = append([]string{}, c.ExtraKernelArgs...)
	}

	if metaValues {
		for _, m := range c.Meta {
			prof.Customization.MetaContents = append(prof.Customization.MetaContents, meta.Value{Key: m.Key, Value: m.Value})
		}
	}

	if buildsInitramfs(kind) {
		prof.Customization.EmbeddedMachineConfiguration = c.EmbeddedMachineConfiguration
	}

	switch kind { //nolint:exhaustive // only ISO and disk images have a bootloader choice
	case profile.OutKindISO:
		if sb {
			keys, err := enrollKeys(s)
			if err != nil {
				return err
			}

			prof.Output.ISOOptions = &profile.ISOOptions{SDBootEnrollKeys: keys}
		}

		if c.Bootloader != schematic.BootloaderNone {
			if prof.Output.ISOOptions == nil {
				prof.Output.ISOOptions = &profile.ISOOptions{}
			}

			prof.Output.ISOOptions.Bootloader = c.Bootloader
		}
	case profile.OutKindImage:
		prof.Output.ImageOptions.Bootloader = c.Bootloader
	}

	return nil
}

// pinBootloader sets the bootloader the imager would choose where the profile leaves it unset, so that the profile
// validates on its own. The choice comes from the imager's own defaults, applied to a copy: FillDefaults also grows
// the disk size, which the imager does itself once when it runs.
func pinBootloader(o *profile.Output, arch, version string, secureBoot bool) {
	filled := *o

	if o.ImageOptions != nil {
		opts := *o.ImageOptions
		filled.ImageOptions = &opts
	}

	if o.ISOOptions != nil {
		opts := *o.ISOOptions
		filled.ISOOptions = &opts
	}

	filled.FillDefaults(arch, version, secureBoot)

	if o.ImageOptions != nil && filled.ImageOptions != nil {
		o.ImageOptions.Bootloader = filled.ImageOptions.Bootloader
	}

	if o.ISOOptions != nil && filled.ISOOptions != nil {
		o.ISOOptions.Bootloader = filled.ISOOptions.Bootloader
	}
}
