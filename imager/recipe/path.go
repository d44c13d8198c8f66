package recipe

import (
	"strings"

	"github.com/siderolabs/talos/pkg/imager/profile"
)

// platforms are the platform names the Talos v1.13 imager builds for (its runtime's platform switch, which the
// kernel command line needs). The official service accepts any name and fails inside the imager with a 500; Edge
// Factory answers 400 up front. "container" and "packet" (the old name of equinixMetal) are not in machinery's
// platform list but the imager builds them, so the official serves them too. Secure boot is accepted on every
// platform, as the official service does (docs/api.md §3.2 has aws secure-boot rows), although only metal, azure,
// nocloud and cloudstack machines boot such assets.
var platforms = map[string]bool{
	"akamai":        true,
	"aws":           true,
	"azure":         true,
	"cloudstack":    true,
	"container":     true,
	"digital-ocean": true,
	"equinixMetal":  true,
	"exoscale":      true,
	"gcp":           true,
	"hcloud":        true,
	"metal":         true,
	"nocloud":       true,
	"opennebula":    true,
	"openstack":     true,
	"oracle":        true,
	"packet":        true,
	"scaleway":      true,
	"upcloud":       true,
	"vmware":        true,
	"vultr":         true,
}

// archAliases maps the architecture names a path may use to the Talos architecture. x86_64 and i386 exist for iPXE's
// ${buildarch}.
var archAliases = map[string]string{
	"amd64":  "amd64",
	"arm64":  "arm64",
	"x86_64": "amd64",
	"i386":   "amd64",
}

const (
	platformMetal   = "metal"
	secureBootPart  = "-secureboot"
	qcow2Options    = "cluster_size=8k" // qemu-img 7.2 rejects an empty -o, so qcow2 always gets options
	installerMiddle = "-installer-"
)

// ParsePath parses the last segment of /image/{schematic}/{version}/{path} (docs/api.md §3.1, in its order; the first
// rule that matches decides). The result is normalised: architecture aliases are resolved and Path is rebuilt from
// the parts, so two spellings of one asset give equal Assets. Every error is an *InvalidError.
//
// The command line and disk image forms also take the predecessor image-service's board syntax,
// cmdline-<platform>-<board>-<arch>[-secureboot] and <platform>-<board>-<arch>[-secureboot].<disk>[.<compression>]
// (Asset.Board, arm64 only); Plan maps the board to the overlay of that name.
func ParsePath(p string) (Asset, error) {
	switch {
	case strings.HasPrefix(p, "kernel-"):
		return parseArchOnly(profile.OutKindKernel, strings.TrimPrefix(p, "kernel-"), "kernel-", "")
	case strings.HasPrefix(p, "cmdline-"):
		return parseTargeted(profile.OutKindCmdline, strings.TrimPrefix(p, "cmdline-"), "cmdline-", "")
	case strings.HasPrefix(p, "initramfs-") && strings.HasSuffix(p, ".xz"):
		return parseArchOnly(profile.OutKindInitramfs, strings.TrimSuffix(strings.TrimPrefix(p, "initramfs-"), ".xz"),
			"initramfs-", ".xz")
	case strings.HasSuffix(p, ".iso"):
		return parseTargeted(profile.OutKindISO, strings.TrimSuffix(p, ".iso"), "", ".iso")
	case strings.HasSuffix(p, "-uki.efi"):
		return parseTargeted(profile.OutKindUKI, strings.TrimSuffix(p, "-uki.efi"), "", "-uki.efi")
	case strings.HasPrefix(p, "installer-") && strings.HasSuffix(p, ".tar"):
		return parseArchOnly(profile.OutKindInstaller, strings.TrimSuffix(strings.TrimPrefix(p, "installer-"), ".tar"),
			"installer-", ".tar")
	case strings.HasSuffix(p, ".tar") && strings.Contains(p, installerMiddle):
		return parsePlatformInstaller(strings.TrimSuffix(p, ".tar"))
	default:
		return parseDiskImage(p)
	}
}

// ParsePXEPath parses the last segment of /pxe/{schematic}/{version}/{path}, <platform>[-<board>]-<arch>[-secureboot],
// into the cmdline asset the script needs (docs/api.md §4).
func ParsePXEPath(p string) (Asset, error) {
	return ParsePath("cmdline-" + p)
}

// parseArchOnly handles the platform-less forms: kernel-<arch>, initramfs-<arch>.xz and
// installer-<arch>[-secureboot].tar. The platform is metal: these outputs do not depend on it.
func parseArchOnly(kind profile.OutputKind, rest, prefix, suffix string) (Asset, error) {
	a := Asset{Kind: kind, Platform: platformMetal, OutFormat: profile.OutFormatRaw}

	if kind == profile.OutKindInstaller {
		rest, a.SecureBoot = strings.CutSuffix(rest, secureBootPart)
	}

	arch, err := parseArch(rest)
	if err != nil {
		return Asset{}, err
	}

	a.Arch = arch
	a.Path = prefix + arch + secureBootSuffix(a.SecureBoot) + suffix

	return a, nil
}

// parseTargeted handles prefix<platform>-<arch>[-secureboot]suffix; the legacy board form
// prefix<platform>-<board>-<arch>[-secureboot] only for the command line (ISO and UKI never had one).
func parseTargeted(kind profile.OutputKind, target, prefix, suffix string) (Asset, error) {
	a := Asset{Kind: kind, OutFormat: profile.OutFormatRaw}

	if err := a.parseTarget(target, kind == profile.OutKindCmdline); err != nil {
		return Asset{}, err
	}

	a.Path = prefix + a.target() + suffix

	return a, nil
}

// parsePlatformInstaller handles <platform>-installer-<arch>[-secureboot].tar: the platform is everything before
// the first "-installer-", so dashed platforms (digital-ocean) need no special case here.
func parsePlatformInstaller(rest string) (Asset, error) {
	platform, arch, _ := strings.Cut(rest, installerMiddle)
	a := Asset{Kind: profile.OutKindInstaller, OutFormat: profile.OutFormatRaw}

	arch, a.SecureBoot = strings.CutSuffix(arch, secureBootPart)

	var err error
	if a.Arch, err = parseArch(arch); err != nil {
		return Asset{}, err
	}

	if err = a.setPlatform(platform); err != nil {
		return Asset{}, err
	}

	a.Path = a.Platform + installerMiddle + a.Arch + secureBootSuffix(a.SecureBoot) + ".tar"

	return a, nil
}

// parseDiskImage handles everything else, from the end: compression, disk format, then the target. Size and format
// options come from Talos' default profile for the platform when it has one; like the official service, the
// platform's options replace the format's own (any azure-*.qcow2 gets azure's vhd options).
func parseDiskImage(p string) (Asset, error) {
	a := Asset{Kind: profile.OutKindImage, OutFormat: profile.OutFormatRaw}
	rest := p

	for _, f := range []profile.OutFormat{profile.OutFormatTar, profile.OutFormatGZ, profile.OutFormatXZ, profile.OutFormatZSTD} {
		if r, ok := strings.CutSuffix(rest, f.String()); ok {
			rest, a.OutFormat = r, f

			break
		}
	}

	for _, f := range []profile.DiskFormat{profile.DiskFormatRaw, profile.DiskFormatQCOW2, profile.DiskFormatVPC, profile.DiskFormatOVA} {
		if r, ok := strings.CutSuffix(rest, "."+f.String()); ok {
			rest, a.DiskFormat = r, f

			break
		}
	}

	if a.DiskFormat == profile.DiskFormatUnknown {
		return Asset{}, invalidf("invalid profile path: %q", rest)
	}

	if err := a.parseTarget(rest, true); err != nil {
		return Asset{}, err
	}

	a.DiskSize = profile.DefaultRAWDiskSize
	if a.DiskFormat == profile.DiskFormatQCOW2 {
		a.DiskFormatOptions = qcow2Options
	}

	if def, ok := profile.Default[a.Platform]; ok && def.Output.ImageOptions != nil {
		if def.Output.ImageOptions.DiskSize != 0 {
			a.DiskSize = uint64(def.Output.ImageOptions.DiskSize)
		}

		if def.Output.ImageOptions.DiskFormatOptions != "" {
			a.DiskFormatOptions = def.Output.ImageOptions.DiskFormatOptions
		}
	}

	a.Path = a.target() + "." + a.DiskFormat.String()
	if a.OutFormat != profile.OutFormatRaw {
		a.Path += a.OutFormat.String()
	}

	return a, nil
}

// parseTarget parses <platform>-<arch>[-secureboot] into a: the secure-boot suffix first, then a split on the first
// dash ("digital-ocean" is the only dashed platform), then, where the form allows one (withBoard), a legacy board
// between platform and architecture, then the architecture, then the platform.
func (a *Asset) parseTarget(s string, withBoard bool) error {
	s, a.SecureBoot = strings.CutSuffix(s, secureBootPart)

	platform, rest, ok := strings.Cut(s, "-")
	if !ok {
		return invalidf("invalid platform-arch: %q", s)
	}

	if platform == "digital" && strings.HasPrefix(rest, "ocean-") {
		platform, rest = "digital-ocean", strings.TrimPrefix(rest, "ocean-")
	}

	if withBoard {
		a.Board, rest = splitBoard(platform, rest)
	}

	arch, err := parseArch(rest)
	if err != nil {
		return err
	}

	a.Arch = arch

	// Boards are single-board computers, all arm64; the overlays that replaced them build nothing else.
	if a.Board != "" && arch != "arm64" {
		return invalidf("board %q is arm64 only: there is no %s build of a board", a.Board, arch)
	}

	// The image-service had no secure-boot board images, and the UKI a secure-boot PXE boot needs takes no board.
	if a.Board != "" && a.SecureBoot {
		return invalidf("board %q has no secure-boot images: drop -secureboot", a.Board)
	}

	return a.setPlatform(platform)
}

// splitBoard recognises the legacy image-service board syntax, <platform>-<board>-<arch> (metal-rpi_generic-arm64):
// rest holds a board when the platform is one we know and rest's last dash-separated segment is an architecture;
// the board is everything before it, so overlay names with dashes work too. Anything else is left whole and parsed
// as before ("amd64-extra" stays an invalid architecture). Whether the board exists is for Plan to say: the
// overlays catalog is per Talos version.
func splitBoard(platform, rest string) (board, remaining string) {
	i := strings.LastIndex(rest, "-")
	if i <= 0 || !platforms[platform] {
		return "", rest
	}

	if _, ok := archAliases[rest[i+1:]]; !ok {
		return "", rest
	}

	return rest[:i], rest[i+1:]
}

// setPlatform checks the platform is one the imager builds.
func (a *Asset) setPlatform(platform string) error {
	if !platforms[platform] {
		return invalidf("unknown platform: %q", platform)
	}

	a.Platform = platform

	return nil
}

// target renders <platform>[-<board>]-<arch>[-secureboot].
func (a *Asset) target() string {
	t := a.Platform
	if a.Board != "" {
		t += "-" + a.Board
	}

	return t + "-" + a.Arch + secureBootSuffix(a.SecureBoot)
}

func parseArch(s string) (string, error) {
	arch, ok := archAliases[s]
	if !ok {
		return "", invalidf("invalid architecture: %q", s)
	}

	return arch, nil
}

func secureBootSuffix(sb bool) string {
	if sb {
		return secureBootPart
	}

	return ""
}
