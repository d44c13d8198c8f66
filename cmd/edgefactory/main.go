// Command edgefactory runs an Edge Factory node and its tools. It only wires: flags and config into node.Config,
// subcommands onto packages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/node"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	// Invoked under a host tool's name (mkfs.xfs, ...), the binary is that tool's adapter.
	hosttools.RunIfAdapter()

	// File modes inside built archives (cpio, tar) follow the umask: fix it so every node builds the same bytes.
	syscall.Umask(0o022)

	// Started as a build worker by a node's builder, the binary runs the Talos imager on one job and exits.
	imager.RunIfWorker()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := &cobra.Command{
		Use:           "edgefactory",
		Short:         "Edge Factory: a peer-to-peer Talos Linux image factory",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newSyntheticCmd(), newDoctorCmd(), newStatusCmd(), newInspectCmd())
	root.AddCommand(newMirrorCmd(), newImportCmd(), newWarmCmd(), newProfilesCmd(), newSettingsCmd(), newInitCmd())
	root.AddCommand(newTokenCmd(), newCertificatesCmd(), newRotateCmd())

	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "edgefactory:", err)
		os.Exit(1)
	}
}

func newServeCmd() *cobra.Command {
	cfg := node.Defaults()
	cfg.Version = version

	var (
		logs       logFlags
		configFile string
	)

	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a factory node",
		Long: `Run a factory node. Settings come from flags, then EDGEFACTORY_<FLAG> environment variables, then the
YAML file given with --config (keys are flag names, e.g. "upstream-registry: mirror.local:5000"), then defaults.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigSources(cmd, configFile); err != nil {
				return err
			}

			log, err := logs.logger()
			if err != nil {
				return err
			}

			cfg.Logger = log

			restore, err := imager.CaptureStderr(log.With("component", "imager"))
			if err != nil {
				return err
			}
			defer restore()

			n, err := node.New(cfg)
			if err != nil {
				return err
			}

			tuneGC()

			return n.Run(cmd.Context())
		},
	}

	cmd.Flags().StringVar(&configFile, "config", os.Getenv(envPrefix+"CONFIG"), "YAML config file")
	nodeFlags(cmd.Flags(), &cfg)
	logs.bind(cmd.Flags())

	return cmd
}
