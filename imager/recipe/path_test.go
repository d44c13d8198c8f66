package recipe_test

import (
	"fmt"
	"testing"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/machinery/platforms"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

const (
	mib         = 1024 * 1024
	minRaw      = 1246 * mib
	defaultSize = 8192 * mib
)

func kindAsset(path string, kind profile.OutputKind, platform, arch string, sb bool) recipe.Asset {
	return recipe.Asset{Path: path, Kind: kind, Platform: platform, Arch: arch, SecureBoot: sb, OutFormat: profile.OutFormatRaw}
}

func diskAsset(path, platform, arch string, sb bool, out profile.OutFormat, disk profile.DiskFormat, size uint64, opts string) recipe.Asset {
	return recipe.Asset{
		Path: path, Kind: profile.OutKindImage, Platform: platform, Arch: arch, SecureBoot: sb, OutFormat: out,
		DiskFormat: disk, DiskSize: size, DiskFormatOptions: opts,
	}
}

// TestParsePathOfficialTable covers every row of docs/api.md §3.2 (the official service's own parse tests). The two
// secure-boot rows on aws are the one deliberate difference: Edge Factory refuses secure boot on platforms that do
// not support it, so the same shapes are also checked on a platform that does.
func TestParsePathOfficialTable(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		path string
		want recipe.Asset
		err  string
	}{
		{path: "kernel-amd64", want: kindAsset("kernel-amd64", profile.OutKindKernel, "metal", "amd64", false)},
		{path: "kernel-arm64", want: kindAsset("kernel-arm64", profile.OutKindKernel, "metal", "arm64", false)},
		{path: "kernel-foo", err: `invalid architecture: "foo"`},
		{path: "cmdline-metal-arm64", want: kindAsset("cmdline-metal-arm64", profile.OutKindCmdline, "metal", "arm64", false)},
		{
			path: "cmdline-aws-amd64-secureboot",
			want: kindAsset("cmdline-aws-amd64-secureboot", profile.OutKindCmdline, "aws", "amd64", true),
		},
		{
			path: "cmdline-nocloud-amd64-secureboot",
			want: kindAsset("cmdline-nocloud-amd64-secureboot", profile.OutKindCmdline, "nocloud", "amd64", true),
		},
		{path: "initramfs-amd64.xz", want: kindAsset("initramfs-amd64.xz", profile.OutKindInitramfs, "metal", "amd64", false)},
		{
			path: "metal-arm64-secureboot.iso",
			want: kindAsset("metal-arm64-secureboot.iso", profile.OutKindISO, "metal", "arm64", true),
		},
		{
			path: "metal-amd64-secureboot-uki.efi",
			want: kindAsset("metal-amd64-secureboot-uki.efi", profile.OutKindUKI, "metal", "amd64", true),
		},
		{path: "metal-amd64-uki.efi", want: kindAsset("metal-amd64-uki.efi", profile.OutKindUKI, "metal", "amd64", false)},
		{path: "installer-amd64.tar", want: kindAsset("installer-amd64.tar", profile.OutKindInstaller, "metal", "amd64", false)},
		{
			path: "metal-installer-amd64.tar",
			want: kindAsset("metal-installer-amd64.tar", profile.OutKindInstaller, "metal", "amd64", false),
		},
		{
			path: "digital-ocean-installer-amd64.tar",
			want: kindAsset("digital-ocean-installer-amd64.tar", profile.OutKindInstaller, "digital-ocean", "amd64", false),
		},
		{
			path: "metal-arm64.raw.xz",
			want: diskAsset("metal-arm64.raw.xz", "metal", "arm64", false, profile.OutFormatXZ, profile.DiskFormatRaw, minRaw, ""),
		},
		{
			path: "metal-arm64.raw.zst",
			want: diskAsset("metal-arm64.raw.zst", "metal", "arm64", false, profile.OutFormatZSTD, profile.DiskFormatRaw, minRaw, ""),
		},
		// The official service answers `invalid architecture: "rpi_generic-arm64"` (board syntax gone since Talos 1.7);
		// Edge Factory serves the predecessor image-service's board paths too (see TestParsePathBoards).
		{
			path: "metal-rpi_generic-arm64.raw.xz",
			want: withBoard(diskAsset("metal-rpi_generic-arm64.raw.xz", "metal", "arm64", false, profile.OutFormatXZ,
				profile.DiskFormatRaw, minRaw, ""), "rpi_generic"),
		},
		{
			path: "aws-amd64-secureboot.qcow2.tar.gz",
			want: diskAsset("aws-amd64-secureboot.qcow2.tar.gz", "aws", "amd64", true, profile.OutFormatTar,
				profile.DiskFormatQCOW2, defaultSize, "cluster_size=8k"),
		},
		{
			path: "aws-amd64.qcow2.tar.gz",
			want: diskAsset("aws-amd64.qcow2.tar.gz", "aws", "amd64", false, profile.OutFormatTar, profile.DiskFormatQCOW2,
				defaultSize, "cluster_size=8k"),
		},
		{
			path: "cloudstack-amd64-secureboot.qcow2.tar.gz",
			want: diskAsset("cloudstack-amd64-secureboot.qcow2.tar.gz", "cloudstack", "amd64", true, profile.OutFormatTar,
				profile.DiskFormatQCOW2, defaultSize, "cluster_size=8k"),
		},
		{
			path: "azure-amd64.vhd",
			want: diskAsset("azure-amd64.vhd", "azure", "amd64", false, profile.OutFormatRaw, profile.DiskFormatVPC, defaultSize,
				"subformat=fixed,force_size"),
		},
		{
			path: "digital-ocean-amd64.raw.gz",
			want: diskAsset("digital-ocean-amd64.raw.gz", "digital-ocean", "amd64", false, profile.OutFormatGZ,
				profile.DiskFormatRaw, defaultSize, ""),
		},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			checkParse(t, tc.path, tc.want, tc.err)
		})
	}
}

func checkParse(t *testing.T, path string, want recipe.Asset, wantErr string) {
	t.Helper()

	got, err := recipe.ParsePath(path)
	if wantErr != "" {
		require.EqualError(t, err, wantErr)
		require.True(t, recipe.IsInvalid(err), "%T must be invalid", err)
		require.Equal(t, recipe.Asset{}, got)

		return
	}

	require.NoError(t, err)
	require.Equal(t, want, got)

	// The normalised path is a fixed point: parsing it again gives the same asset.
	again, err := recipe.ParsePath(got.Path)
	require.NoError(t, err)
	require.Equal(t, got, again)
}

func TestParsePathDiskDefaults(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		path string
		want recipe.Asset
	}{
		{"hcloud-amd64.raw.xz", diskAsset("hcloud-amd64.raw.xz", "hcloud", "amd64", false, profile.OutFormatXZ, profile.DiskFormatRaw, minRaw, "")},
		{"nocloud-arm64-secureboot.raw.xz", diskAsset("nocloud-arm64-secureboot.raw.xz", "nocloud", "arm64", true, profile.OutFormatXZ, profile.DiskFormatRaw, minRaw, "")},
		{"opennebula-amd64.raw.zst", diskAsset("opennebula-amd64.raw.zst", "opennebula", "amd64", false, profile.OutFormatZSTD, profile.DiskFormatRaw, minRaw, "")},
		{"openstack-amd64.raw.xz", diskAsset("openstack-amd64.raw.xz", "openstack", "amd64", false, profile.OutFormatXZ, profile.DiskFormatRaw, minRaw, "")},
		{"scaleway-arm64.raw.zst", diskAsset("scaleway-arm64.raw.zst", "scaleway", "arm64", false, profile.OutFormatZSTD, profile.DiskFormatRaw, minRaw, "")},
		{"akamai-amd64.raw.gz", diskAsset("akamai-amd64.raw.gz", "akamai", "amd64", false, profile.OutFormatGZ, profile.DiskFormatRaw, minRaw, "")},
		{"exoscale-amd64.qcow2", diskAsset("exoscale-amd64.qcow2", "exoscale", "amd64", false, profile.OutFormatRaw, profile.DiskFormatQCOW2, 10240*mib, "cluster_size=8k")},
		// platform options replace the format's, whatever the format (official behaviour)
		{"exoscale-amd64.raw", diskAsset("exoscale-amd64.raw", "exoscale", "amd64", false, profile.OutFormatRaw, profile.DiskFormatRaw, 10240*mib, "cluster_size=8k")},
		{"azure-arm64.qcow2.xz", diskAsset("azure-arm64.qcow2.xz", "azure", "arm64", false, profile.OutFormatXZ, profile.DiskFormatQCOW2, defaultSize, "subformat=fixed,force_size")},
		{"azure-amd64-secureboot.vhd.xz", diskAsset("azure-amd64-secureboot.vhd.xz", "azure", "amd64", true, profile.OutFormatXZ, profile.DiskFormatVPC, defaultSize, "subformat=fixed,force_size")},
		{"oracle-arm64.qcow2", diskAsset("oracle-arm64.qcow2", "oracle", "arm64", false, profile.OutFormatRaw, profile.DiskFormatQCOW2, defaultSize, "cluster_size=8k")},
		{"vmware-amd64.ova", diskAsset("vmware-amd64.ova", "vmware", "amd64", false, profile.OutFormatRaw, profile.DiskFormatOVA, defaultSize, "")},
		{"gcp-amd64.raw.tar.gz", diskAsset("gcp-amd64.raw.tar.gz", "gcp", "amd64", false, profile.OutFormatTar, profile.DiskFormatRaw, defaultSize, "")},
		{"upcloud-amd64.raw.xz", diskAsset("upcloud-amd64.raw.xz", "upcloud", "amd64", false, profile.OutFormatXZ, profile.DiskFormatRaw, defaultSize, "")},
		{"metal-amd64.qcow2", diskAsset("metal-amd64.qcow2", "metal", "amd64", false, profile.OutFormatRaw, profile.DiskFormatQCOW2, minRaw, "cluster_size=8k")},
		// no default profile: 8192 MiB; camel-case platform names work
		{"equinixMetal-amd64.raw", diskAsset("equinixMetal-amd64.raw", "equinixMetal", "amd64", false, profile.OutFormatRaw, profile.DiskFormatRaw, defaultSize, "")},
		{"equinixMetal-arm64.qcow2.gz", diskAsset("equinixMetal-arm64.qcow2.gz", "equinixMetal", "arm64", false, profile.OutFormatGZ, profile.DiskFormatQCOW2, defaultSize, "cluster_size=8k")},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			checkParse(t, tc.path, tc.want, "")
		})
	}
}

func TestParsePathAliases(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct{ path, normal string }{
		{"kernel-x86_64", "kernel-amd64"},
		{"kernel-i386", "kernel-amd64"},
		{"cmdline-metal-x86_64", "cmdline-metal-amd64"},
		{"cmdline-metal-i386-secureboot", "cmdline-metal-amd64-secureboot"},
		{"initramfs-x86_64.xz", "initramfs-amd64.xz"},
		{"metal-x86_64.iso", "metal-amd64.iso"},
		{"metal-x86_64-secureboot-uki.efi", "metal-amd64-secureboot-uki.efi"},
		{"installer-x86_64-secureboot.tar", "installer-amd64-secureboot.tar"},
		{"digital-ocean-installer-i386.tar", "digital-ocean-installer-amd64.tar"},
		{"metal-x86_64.raw.zst", "metal-amd64.raw.zst"},
		{"digital-ocean-x86_64.raw.gz", "digital-ocean-amd64.raw.gz"},
		{"aws-x86_64.qcow2.tar.gz", "aws-amd64.qcow2.tar.gz"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			got, err := recipe.ParsePath(tc.path)
			require.NoError(t, err)

			want, err := recipe.ParsePath(tc.normal)
			require.NoError(t, err)

			require.Equal(t, want, got)
			require.Equal(t, tc.normal, got.Path)
			require.Equal(t, "amd64", got.Arch)
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct{ path, err string }{
		{"", `invalid profile path: ""`},
		{"metal-amd64.ssd", `invalid profile path: "metal-amd64.ssd"`},
		{"metal-amd64.vmdk", `invalid profile path: "metal-amd64.vmdk"`},
		{"metal-amd64.vmdk.xz", `invalid profile path: "metal-amd64.vmdk"`},
		{"metal-amd64.tar", `invalid profile path: "metal-amd64.tar"`},
		{"initramfs-amd64", `invalid profile path: "initramfs-amd64"`}, // without .xz it is not rule 3
		{"metal.iso", `invalid platform-arch: "metal"`},
		{"metal-secureboot.iso", `invalid platform-arch: "metal"`},
		{"cmdline-metal", `invalid platform-arch: "metal"`},
		{"metal.raw.xz", `invalid platform-arch: "metal"`},
		{"kernel-amd64-secureboot", `invalid architecture: "amd64-secureboot"`},
		{"kernel-", `invalid architecture: ""`},
		{"initramfs-foo.xz", `invalid architecture: "foo"`},
		{"installer-foo.tar", `invalid architecture: "foo"`},
		{"metal-installer-riscv64.tar", `invalid architecture: "riscv64"`},
		{"metal-riscv64.raw", `invalid architecture: "riscv64"`},
		{"metal-amd64-extra.iso", `invalid architecture: "amd64-extra"`},
		{"foo-amd64.iso", `unknown platform: "foo"`},
		{"foo-installer-amd64.tar", `unknown platform: "foo"`},
		{"-installer-amd64.tar", `unknown platform: ""`},
		{"digital-amd64.raw", `unknown platform: "digital"`},
		{"iso-amd64.raw", `unknown platform: "iso"`},             // a profile.Default name, not a platform
		{"installer-amd64.raw", `unknown platform: "installer"`}, // not .tar: a disk image of platform "installer"
		{"Metal-amd64.iso", `unknown platform: "Metal"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			checkParse(t, tc.path, recipe.Asset{}, tc.err)
		})
	}
}

// Every platform Talos machinery lists is accepted for each architecture it lists, and secure boot where machinery
// says the platform supports it.
func TestParsePathKnowsMachineryPlatforms(t *testing.T) {
	t.Parallel()

	for _, p := range append([]platforms.Platform{platforms.MetalPlatform()}, platforms.CloudPlatforms()...) {
		for _, arch := range p.Architectures {
			a, err := recipe.ParsePath(fmt.Sprintf("%s-%s.iso", p.Name, arch))
			require.NoError(t, err, p.Name)
			require.Equal(t, p.Name, a.Platform)

			if p.SecureBootSupported {
				_, err = recipe.ParsePath(fmt.Sprintf("%s-%s-secureboot.iso", p.Name, arch))
				require.NoError(t, err, p.Name)
			}
		}
	}
}

func TestParsePXEPath(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		path string
		want recipe.Asset
		err  string
	}{
		{path: "metal-amd64", want: kindAsset("cmdline-metal-amd64", profile.OutKindCmdline, "metal", "amd64", false)},
		{path: "metal-x86_64", want: kindAsset("cmdline-metal-amd64", profile.OutKindCmdline, "metal", "amd64", false)},
		{path: "metal-arm64-secureboot", want: kindAsset("cmdline-metal-arm64-secureboot", profile.OutKindCmdline, "metal", "arm64", true)},
		{path: "equinixMetal-amd64", want: kindAsset("cmdline-equinixMetal-amd64", profile.OutKindCmdline, "equinixMetal", "amd64", false)},
		{path: "digital-ocean-amd64", want: kindAsset("cmdline-digital-ocean-amd64", profile.OutKindCmdline, "digital-ocean", "amd64", false)},
		{path: "metal", err: `invalid platform-arch: "metal"`},
		{path: "", err: `invalid platform-arch: ""`},
		{path: "metal-foo", err: `invalid architecture: "foo"`},
		{path: "foo-amd64", err: `unknown platform: "foo"`},
		{path: "aws-amd64-secureboot", want: kindAsset("cmdline-aws-amd64-secureboot", profile.OutKindCmdline, "aws", "amd64", true)},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()

			got, err := recipe.ParsePXEPath(tc.path)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				require.True(t, recipe.IsInvalid(err))

				return
			}

			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// The frontends wrap parse errors with the official prefix; the wrapped error must still classify as invalid.
func TestWrappedErrorStaysInvalid(t *testing.T) {
	t.Parallel()

	_, err := recipe.ParsePath("metal-amd64.ssd")
	wrapped := fmt.Errorf("%s: %w", recipe.PathErrorPrefix, err)

	require.EqualError(t, wrapped, `error parsing profile from path: invalid profile path: "metal-amd64.ssd"`)
	require.True(t, recipe.IsInvalid(wrapped))

	var inv interface{ Invalid() bool }
	require.ErrorAs(t, wrapped, &inv)
	require.True(t, inv.Invalid())
}

func TestMediaTypeAndFilename(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct{ path, mediaType string }{
		{"metal-amd64-uki.efi", "application/efi"},
		{"metal-amd64-secureboot-uki.efi", "application/efi"},
		{"metal-amd64.iso", "application/x-iso9660-image"},
		{"metal-amd64.raw.xz", "application/x-xz"},
		{"initramfs-amd64.xz", "application/x-xz"},
		{"digital-ocean-amd64.raw.gz", "application/gzip"},
		{"gcp-amd64.raw.tar.gz", "application/gzip"},
		{"oracle-amd64.qcow2", "application/x-qemu-disk"},
		{"oracle-amd64.qcow2.xz", "application/x-xz"},
		{"installer-amd64.tar", "application/octet-stream"},
		{"metal-amd64.raw.zst", "application/octet-stream"},
		{"metal-amd64.raw", "application/octet-stream"},
		{"azure-amd64.vhd", "application/octet-stream"},
		{"vmware-amd64.ova", "application/octet-stream"},
		{"kernel-amd64", "application/octet-stream"},
		{"cmdline-metal-amd64", "application/octet-stream"},
	} {
		a, err := recipe.ParsePath(tc.path)
		require.NoError(t, err, tc.path)
		require.Equal(t, tc.mediaType, recipe.MediaType(a), tc.path)
		require.Equal(t, tc.path, a.Filename())
	}

	a, err := recipe.ParsePath("metal-x86_64.iso")
	require.NoError(t, err)
	require.Equal(t, "metal-amd64.iso", a.Filename())
}
