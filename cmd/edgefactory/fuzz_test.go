package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"
)

// FuzzConfigFile drives config file contents through applyConfig, then the result through Config.Validate. A bad
// file must be an error naming the file, never a panic; a file that is accepted sets exactly
// the flags it names (each key is a flag and is marked set) and sets them the same way every time, and the
// configuration it makes is something Validate can judge. The file is read by every member at start, and often
// written by templates.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"listen: 127.0.0.1:9000\nupstream-registry: file.example:5000\nupstream-insecure: true\n" +
			"broken-versions: [1.10.0, v1.11.1]\nmin-talos-version: 1.10\ncatalog-refresh: 2m\ndata: /from/file\n",
		"listn: 127.0.0.1:9000\n", "catalog-refresh: soon\n", "listen: [\n", "external-url:\n",
		"join: [a:7946, ~]\n", "join: {a: 1}\n", "cache-size: 50GiB\nreplicas: 3\ngossip-key: c2VjcmV0c2VjcmV0MTIzNA==\n",
		"input-verify: off\nbuild-nice: 19\n", "x: &a 1\nlisten: *a\n", "<<: {listen: a}\n", "config: other.yaml\n",
		"", "---\n", "[]", "listen: 1\n---\nlisten: 2\n", "bootstrap-expect: 0x10\n", "replicas: 1e3\n",
	} {
		f.Add([]byte(seed))
	}

	// The environment beats the file, so with a setting in it "the file sets what it names" would not hold.
	probe, _ := newTestCmd()
	probe.Flags().VisitAll(func(flag *pflag.Flag) {
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(flag.Name, "-", "_"))
		if _, set := os.LookupEnv(env); set {
			f.Skipf("%s is set", env)
		}
	})

	f.Fuzz(func(t *testing.T, data []byte) {
		// --input-public-key reads the files it names: a fuzzed path could be /dev/zero.
		if bytes.Contains(data, []byte("input-public-key")) {
			t.Skip("names files to read")
		}

		cmd, cfg := newTestCmd()
		require.NoError(t, cmd.ParseFlags(nil))

		err := applyConfig(cmd, "fuzz.yaml", data)
		if err != nil {
			require.Contains(t, err.Error(), "fuzz.yaml")

			return
		}

		var file map[string]yaml.Node
		require.NoError(t, yaml.Unmarshal(data, &file))

		for key := range file {
			flag := cmd.Flags().Lookup(key)
			require.NotNil(t, flag, "unknown key %q accepted", key)
			require.True(t, flag.Changed, "key %q did not reach its flag", key)
		}

		again, cfgAgain := newTestCmd()
		require.NoError(t, again.ParseFlags(nil))
		require.NoError(t, applyConfig(again, "fuzz.yaml", data))
		require.Equal(t, cfg, cfgAgain)

		_ = cfg.Validate() // an answer, whatever the values: never a panic
	})
}
