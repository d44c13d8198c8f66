package synthetic_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// BenchmarkDevStart is what `edgefactory dev` does at every start: build the release afresh (BlobDir set, so no
// release cache) from the parts `make deps` fetched, and push it into an in-process registry keeping its blobs on
// disk.
func BenchmarkDevStart(b *testing.B) {
	p, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	if err != nil {
		b.Fatal(err)
	}

	if !p.Real() {
		b.Log("stand-in parts: run `make deps` to measure with the real ones")
	}

	for b.Loop() {
		ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}

		s, err := synthetic.Start(context.Background(), ln, synthetic.Options{Parts: p,
			BlobDir: filepath.Join(b.TempDir(), "blobs")})
		if err != nil {
			b.Fatal(err)
		}

		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
