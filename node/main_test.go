package node_test

import (
	"os"
	"testing"

	"github.com/edgefactory/edgefactory/imager/hosttools"
)

// TestMain lets the test binary act as the host-tool adapters the node installs (they link to os.Executable()).
func TestMain(m *testing.M) {
	hosttools.RunIfAdapter()
	os.Exit(m.Run())
}
