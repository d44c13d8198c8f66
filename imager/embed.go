package imager

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	talosimager "github.com/siderolabs/talos/pkg/imager"
	"github.com/siderolabs/talos/pkg/imager/profile"
)

// The Talos imager writes its whole profile to standard error before it builds, and that stream is the node's log
// (CaptureStderr), whose last lines are attached to a failed build's error record. An embedded machine
// configuration carries join tokens and the cluster CA key, so it must never be in the profile the imager gets.
// The imager itself turns the configuration into a virtual "embedded-config" extension, appended after the
// others, with the function it exports for that: doing the same here, before the imager runs, leaves it a profile
// that names only the extension's tarball, whatever YAML style the configuration's text would have been dumped in,
// and gives the same bytes. Filtering standard error instead would have to recognise the configuration in every
// quoting and folding the dump may choose.

// embeddedConfigFile is the extension tarball's name in the build's directory.
const embeddedConfigFile = "embedded-config.tar"

// embedConfig moves the profile's embedded machine configuration into an extension tarball in dir.
func embedConfig(prof *profile.Profile, dir string) error {
	config := prof.Customization.EmbeddedMachineConfiguration
	if config == "" {
		return nil
	}

	tarball, err := talosimager.BuildEmbeddedConfigExtension([]byte(config))
	if err != nil {
		return err
	}

	data, err := io.ReadAll(tarball)
	if err != nil {
		return err
	}

	path := filepath.Join(dir, embeddedConfigFile)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", embeddedConfigFile, err)
	}

	prof.Input.SystemExtensions = append(prof.Input.SystemExtensions, profile.ContainerAsset{TarballPath: path})
	prof.Customization.EmbeddedMachineConfiguration = ""

	return nil
}
