package cas

import (
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
)

const benchBlob = 64 << 20

// BenchmarkWrite measures Create + Write (1 MiB chunks) + Commit of distinct 64 MiB random blobs, fsync included.
func BenchmarkWrite(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	data := randBytes(benchBlob, 1)
	b.SetBytes(benchBlob)
	for i := 0; b.Loop(); i++ {
		binary.LittleEndian.PutUint64(data, uint64(i)) // distinct content, so every commit really installs
		w, err := s.Create("", benchBlob)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += 1 << 20 {
			if _, err := w.Write(data[off : off+1<<20]); err != nil {
				b.Fatal(err)
			}
		}
		d, _, err := w.Commit()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Delete(d); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRead measures Open + reading a 64 MiB blob to the end (page cache warm) + Close.
func BenchmarkRead(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	d := put(b, s, randBytes(benchBlob, 2))
	buf := make([]byte, 1<<20)
	b.SetBytes(benchBlob)
	for b.Loop() {
		blob, err := s.Open(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{blob}, buf); err != nil {
			b.Fatal(err)
		}
		blob.Close()
	}
}
