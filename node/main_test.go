package node_test

import (
	"os"
	"testing"

	"github.com/edgefactory/edgefactory/imager"
	"github.com/edgefactory/edgefactory/imager/hosttools"
)

// TestMain lets the test binary act as the host-tool adapters the node installs (they link to os.Executable()) and
// as the builder's imager workers (os.Executable() again).
func TestMain(m *testing.M) {
	hosttools.RunIfAdapter()
	imager.RunIfWorker()
	os.Exit(m.Run())
}
