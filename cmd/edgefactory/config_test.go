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
	cfg := parse(t, filepath.Join("..", "..", "deploy", "edgefactory.yaml"))
	assert.Equal(t, "factory-1", cfg.NodeName)
	assert.Equal(t, "mirror.site.example:5000", cfg.Upstream.Registry)

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
