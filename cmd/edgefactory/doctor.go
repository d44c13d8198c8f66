package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/imager/hosttools"
)

// newDoctorCmd reports the host tools the imager runs: used as is, adapted (and how), or missing (and which Debian
// package provides them). It fails when a required tool is missing, so it can gate a deployment or CI run.
func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:           "doctor",
		Short:         "Report the host tools the Talos imager needs: ok, adapted or missing",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			report := hosttools.Check(cmd.Context())

			if err := report.WriteTable(cmd.OutOrStdout()); err != nil {
				return err
			}

			if missing := report.MissingRequired(); len(missing) > 0 {
				names := make([]string, len(missing))
				for i, m := range missing {
					names[i] = m.Name
				}

				return fmt.Errorf("%d required host tools missing: %v (run make deps)", len(missing), names)
			}

			return nil
		},
	}
}
