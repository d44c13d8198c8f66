package synthetic_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/siderolabs/talos/pkg/imager/overlay/executor"
	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/machinery/overlay"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// TestOverlayInstaller extracts the overlay image from the registry as the Talos imager does and drives its
// installer through Talos' own protocol client (the executor the imager uses), on this build host.
func TestOverlayInstaller(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts()})
	vi, ok := srv.Manifest.Version("v1.13.0")
	require.True(t, ok)

	// extract the arm64 image: the installer must run here whatever the image's architecture
	overlayDir := t.TempDir()

	for p, f := range flatten(t, pull(t, srv.Addr, vi.Overlays[0])["arm64"]) {
		dst := filepath.Join(overlayDir, p)
		if f.typ == '5' { // directory
			require.NoError(t, os.MkdirAll(dst, 0o755))

			continue
		}

		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		require.NoError(t, os.WriteFile(dst, f.data, os.FileMode(f.mode)))
	}

	// the profile fragment is a valid Talos imager profile (the imager unmarshals it the same way)
	var prof profile.Profile
	require.NoError(t, yaml.Unmarshal(files(t, overlayDir, "profiles/rpi_generic.yaml"), &prof))
	require.Equal(t, "arm64", prof.Arch)
	require.Equal(t, profile.OutKindImage, prof.Output.Kind)
	require.Equal(t, profile.OutFormatXZ, prof.Output.OutFormat)

	installer := executor.New(filepath.Join(overlayDir, "installers", synthetic.OverlayName))

	opts, err := installer.GetOptions(t.Context(), overlay.ExtraOptions{"configTxtAppend": "dtoverlay=disable-bt"})
	require.NoError(t, err)
	require.Equal(t, overlay.Options{Name: "rpi_generic", KernelArgs: synthetic.OverlayKernelArgs}, opts)

	mount := t.TempDir()
	require.NoError(t, installer.Install(t.Context(), overlay.InstallOptions[overlay.ExtraOptions]{
		InstallDisk:   "/dev/null",
		MountPrefix:   mount,
		ArtifactsPath: filepath.Join(overlayDir, "artifacts"),
		ExtraOptions:  overlay.ExtraOptions{"configTxtAppend": "dtoverlay=disable-bt"},
	}))

	for _, f := range []string{"u-boot.bin", "start4.elf", "bcm2711-rpi-4-b.dtb", "config.txt"} {
		require.FileExists(t, filepath.Join(mount, "boot/EFI", f))
	}

	cfg, err := os.ReadFile(filepath.Join(mount, "boot/EFI/config.txt"))
	require.NoError(t, err)
	require.Contains(t, string(cfg), "kernel=u-boot.bin\n")
	require.Contains(t, string(cfg), "dtoverlay=disable-bt\n")

	// no mount prefix must never mean "install into this host's /boot"
	err = installer.Install(t.Context(), overlay.InstallOptions[overlay.ExtraOptions]{
		ArtifactsPath: filepath.Join(overlayDir, "artifacts"),
	})
	require.ErrorContains(t, err, "mountPrefix")

	_, err = executor.New(filepath.Join(overlayDir, "installers", synthetic.OverlayName)).GetOptions(t.Context(), nil)
	require.NoError(t, err)
}

func files(t *testing.T, dir, name string) []byte {
	t.Helper()

	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)

	return b
}
