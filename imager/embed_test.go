package imager

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/inspect"
)

// embedSecret stands for a join token: it must reach the asset and nothing the node logs.
const embedSecret = "edgefactory-embed-secret-4f9c2a71"

// TestEmbeddedConfigStaysOutOfLogs: an embedded machine configuration (join tokens, the cluster CA key) is built
// into the asset but appears in no record of the node's log: not in the imager output CaptureStderr logs, not in
// RecentStderr (attached to a failed build's error record), not in the builder's records or errors. The Talos
// imager dumps its profile to standard error in whichever YAML style the configuration's text calls for, so both
// styles are tried, in a build that succeeds and in one that fails after the dump.
func TestEmbeddedConfigStaysOutOfLogs(t *testing.T) {
	f := getFixture(t)

	stderrLog := &capture{t: t}
	restore, err := CaptureStderr(slog.New(stderrLog))
	require.NoError(t, err)

	restored := false
	t.Cleanup(func() {
		if !restored {
			restore()
		}
	})

	b, logs := f.newBuilder(t, nil)

	tests := []struct {
		name   string
		config string
		style  string // how the profile dump writes the configuration
		fail   bool
	}{
		{name: "block scalar, built", style: "|",
			config: "version: v1alpha1\nmachine:\n  token: " + embedSecret + "\n"},
		{name: "quoted string, built", style: `"`, // CRLF line ends rule out a block scalar
			config: "version: v1alpha1\r\nmachine:\r\n  token: " + embedSecret + "\r\n"},
		{name: "block scalar, failed", style: "|", fail: true,
			config: "version: v1alpha1\nmachine:\n  token: " + embedSecret + "\n"},
		{name: "quoted string, failed", style: `"`, fail: true,
			config: "version: v1alpha1\r\nmachine:\r\n  token: " + embedSecret + "\r\n"},
	}

	var errs []string

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireDumpStyle(t, tc.config, tc.style)

			s, err := yaml.Marshal(map[string]any{"customization": map[string]any{"embeddedMachineConfiguration": tc.config}})
			require.NoError(t, err)

			r := f.plan(t, "initramfs-amd64.xz", string(s))

			if tc.fail { // fails in the imager, after the profile dump and the initramfs rebuild
				r.Asset.Platform = "no-such-platform"

				_, err := b.Build(context.Background(), r)
				require.ErrorContains(t, err, "build initramfs: ")
				errs = append(errs, err.Error())
				require.Contains(t, RecentStderr(), "platform: no-such-platform", "the profile dump is in the attached output")

				return
			}

			out, err := b.Build(context.Background(), r)
			require.NoError(t, err)

			t.Cleanup(out.Cleanup)

			require.Equal(t, tc.config, embeddedConfig(t, out.Path), "the asset carries the configuration, byte for byte")
		})
	}

	restore()
	restored = true

	var logged []string

	for _, rec := range append(stderrLog.all(), logs.all()...) {
		logged = append(logged, rec.msg)
		for k, v := range rec.attrs {
			logged = append(logged, k+"="+v)
		}
	}

	all := strings.Join(logged, "\n")
	require.Contains(t, all, "line=arch: amd64", "the imager's profile dump is logged")
	assert.NotContains(t, all, embedSecret, "log records")
	assert.NotContains(t, strings.Join(RecentStderr(), "\n"), embedSecret, "output attached to a failed build's record")
	assert.NotContains(t, strings.Join(errs, "\n"), embedSecret, "build errors")
}

// requireDumpStyle checks that the Talos profile dump writes config in the given style, so that the test covers
// what it says.
func requireDumpStyle(t *testing.T, config, style string) {
	t.Helper()

	var dump bytes.Buffer

	prof := profile.Profile{Customization: profile.CustomizationProfile{EmbeddedMachineConfiguration: config}}
	require.NoError(t, prof.Dump(&dump))
	require.Contains(t, dump.String(), "embeddedMachineConfiguration: "+style)
	require.Contains(t, dump.String(), embedSecret, "the dump would carry the secret")
}

// embeddedConfig reads the machine configuration an initramfs embeds: the config file of its "embedded-config"
// extension's squashfs.
func embeddedConfig(t *testing.T, path string) string {
	t.Helper()

	data, err := os.ReadFile(path)
	require.NoError(t, err)

	rep, err := inspect.Initramfs(bytes.NewReader(data), "extensions.yaml")
	require.NoError(t, err)

	var exts struct {
		Layers []struct {
			Image    string `yaml:"image"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"layers"`
	}

	require.NoError(t, yaml.Unmarshal(rep.Contents["extensions.yaml"], &exts))

	image := ""

	for _, l := range exts.Layers {
		if l.Metadata.Name == "embedded-config" {
			image = l.Image
		}
	}

	require.NotEmpty(t, image, "no embedded-config extension in %s", rep.Contents["extensions.yaml"])

	rep, err = inspect.Initramfs(bytes.NewReader(data), image)
	require.NoError(t, err)

	dir := t.TempDir()
	sqsh := filepath.Join(dir, "embedded-config.sqsh")
	require.NoError(t, os.WriteFile(sqsh, rep.Contents[image], 0o600))

	tree := filepath.Join(dir, "tree")
	out, err := exec.Command("unsquashfs", "-no-xattrs", "-d", tree, sqsh).CombinedOutput()
	require.NoError(t, err, "%s", out)

	config, err := os.ReadFile(filepath.Join(tree, "usr", "local", "etc", "talos", "config.yaml"))
	require.NoError(t, err)

	return string(config)
}
