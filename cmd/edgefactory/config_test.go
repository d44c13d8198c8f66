package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/node"
)

// TestConfigPrecedence: command line beats environment beats config file beats defaults.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edgefactory.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
listen: 127.0.0.1:9000
upstream-registry: file.example:5000
upstream-insecure: true
broken-versions: [1.10.0, v1.11.1]
min-talos-version: 1.10
catalog-refresh: 2m
data: /from/file
`), 0o600))

	t.Setenv("EDGEFACTORY_UPSTREAM_REGISTRY", "env.example:5000")
	t.Setenv("EDGEFACTORY_DATA", "/from/env")

	cfg := parse(t, file, "--data", "/from/flag")

	assert.Equal(t, "/from/flag", cfg.DataDir, "flag wins")
	assert.Equal(t, "env.example:5000", cfg.Upstream.Registry, "environment beats the file")
	assert.Equal(t, "127.0.0.1:9000", cfg.Listen, "file beats the default")
	assert.True(t, cfg.Upstream.Insecure)
	assert.Equal(t, []string{"1.10.0", "v1.11.1"}, cfg.Upstream.Broken)
	assert.Equal(t, "1.10", cfg.Upstream.MinVersion, "taken as written, not as the number 1.1")
	assert.Equal(t, 2*time.Minute, cfg.CatalogRefresh)
	assert.Equal(t, node.Defaults().Upstream.Namespace, cfg.Upstream.Namespace, "default kept")
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()

	for name, content := range map[string]string{
		"unknown key": "listn: 127.0.0.1:9000\n",
		"bad value":   "catalog-refresh: soon\n",
		"not yaml":    "listen: [\n",
		"no value":    "external-url:\n",
		"null item":   "join: [a:7946, ~]\n",
		"a map":       "join: {a: 1}\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, "c.yaml")
			require.NoError(t, os.WriteFile(file, []byte(content), 0o600))

			cmd, _ := newTestCmd()
			require.NoError(t, cmd.ParseFlags(nil))
			require.Error(t, applyConfigSources(cmd, file))
		})
	}
}

// TestReadmeRealNode: the README's "Running a real node" command and config file are accepted by serve as written
// (the key file they name aside, which is put in a directory of the test's own), and make a complete
// configuration.
func TestReadmeRealNode(t *testing.T) {
	sh := e2e.ReadmeBlocks(t, "## Running a real node", "sh") // the first is the section's own (then its subsections')
	require.NotEmpty(t, sh)

	args := strings.Fields(strings.ReplaceAll(withKeyFiles(t, sh[0]), "\\\n", " "))
	require.Equal(t, []string{"bin/edgefactory", "serve"}, args[:2])

	cfg := parse(t, "", args[2:]...)
	assert.Equal(t, "http://factory.site.example:8080", cfg.ExternalURL)
	require.NoError(t, cfg.Validate())

	yml := e2e.ReadmeBlocks(t, "## Running a real node", "yaml")
	require.NotEmpty(t, yml)

	file := filepath.Join(t.TempDir(), "edgefactory.yaml")
	require.NoError(t, os.WriteFile(file, []byte(withKeyFiles(t, yml[0])), 0o600))

	cfg = parse(t, file)
	assert.Equal(t, []string{"v1.9.2"}, cfg.Upstream.Broken)
	require.NoError(t, cfg.Validate())
}

// withKeyFiles points the /etc/edgefactory/release.pub of an example at a copy of the synthetic release's key.
func withKeyFiles(t *testing.T, text string) string {
	t.Helper()

	key := filepath.Join(t.TempDir(), "release.pub")
	require.NoError(t, os.WriteFile(key, synthetic.PublicKeyPEM(), 0o600))

	return strings.ReplaceAll(text, "/etc/edgefactory/release.pub", key)
}

func newTestCmd() (*cobra.Command, *node.Config) {
	cfg := node.Defaults()
	cmd := &cobra.Command{Use: "serve"}
	cmd.Flags().String("config", "", "")
	nodeFlags(cmd.Flags(), &cfg)

	return cmd, &cfg
}

func parse(t *testing.T, file string, args ...string) *node.Config {
	t.Helper()

	cmd, cfg := newTestCmd()
	require.NoError(t, cmd.ParseFlags(args))
	require.NoError(t, applyConfigSources(cmd, file))

	return cfg
}

// TestDeployExamples: the example config file an operator copies to /etc/edgefactory.yaml is accepted by serve as
// written (every key a flag, every value valid), and the systemd unit starts serve with flags that exist.
func TestDeployExamples(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "edgefactory.yaml"))
	require.NoError(t, err)

	file := filepath.Join(t.TempDir(), "edgefactory.yaml")
	require.NoError(t, os.WriteFile(file, []byte(withKeyFiles(t, string(raw))), 0o600))

	cfg := parse(t, file)
	assert.Equal(t, "factory-1", cfg.NodeName)
	assert.Equal(t, "cluster", cfg.Upstream.Registry)
	assert.Len(t, cfg.InputPublicKeys, 1)
	require.NoError(t, cfg.Validate(), "the example is a complete configuration")

	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "edgefactory.service"))
	require.NoError(t, err)

	var exec []string

	for _, line := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(rest)
		}
	}

	require.GreaterOrEqual(t, len(exec), 2, "ExecStart runs the binary with a subcommand")
	assert.Equal(t, "serve", exec[1])

	serve := newServeCmd()
	require.NoError(t, serve.ParseFlags(exec[2:]), "the unit's flags exist on serve")
	assert.Equal(t, []string{"--config", "/etc/edgefactory.yaml"}, exec[2:],
		"every setting comes from the file: a flag on ExecStart would hide the file's value")
}
