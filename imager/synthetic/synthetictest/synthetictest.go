// Package synthetictest starts an in-process OCI registry holding the synthetic Talos release, for tests of any
// package. Guarantee: the registry is up and fully pushed when Start returns, and gone when the test ends.
package synthetictest

import (
	"context"
	"net"
	"testing"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// Start serves the synthetic release on 127.0.0.1:<free port> until the test ends. Registry.Addr is plain HTTP.
// Zero Options use the parts `make deps` fetched (stand-ins, with Parts.Real() false, when they are missing).
func Start(t testing.TB, opts synthetic.Options) *synthetic.Server {
	t.Helper()

	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("synthetictest: listen: %v", err)
	}

	s, err := synthetic.Start(context.Background(), ln, opts)
	if err != nil {
		t.Fatalf("synthetictest: %v", err)
	}

	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("synthetictest: stop registry: %v", err)
		}
	})

	return s
}

// StartRegistry is Start returning only the registry address ("127.0.0.1:port").
func StartRegistry(t testing.TB, opts synthetic.Options) string {
	t.Helper()

	return Start(t, opts).Addr
}
