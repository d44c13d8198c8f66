package bundle

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// BenchmarkMirror mirrors the synthetic release (both versions, every extension and overlay, talosctl-all, the
// cluster images, signatures verified) from an in-process registry into a tar, then copies that tar with io.Copy
// to another file on the same disk. Numbers, not pass/fail:
//
//	mirror-MB/s      tar bytes / time of the mirror (planning, fetching, verifying, writing the tar)
//	copy-MB/s        tar bytes / time of the plain copy
//	mirror/copy      the ratio of the two
//	blobs/unique     bundle.json's blob bytes / the sum of the unique blobs in the tar: 1.0 means nothing stored twice
//	tar/unique       the tar's size / the sum of its unique blobs (tar headers and the layout's small files)
//
// The real parts (`make deps`) are used when present, stand-ins otherwise (a much smaller release).
func BenchmarkMirror(b *testing.B) {
	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(b, err)

	if !parts.Real() {
		b.Logf("synthetic release parts missing (%v): benchmarking the stand-in release", parts.Missing())
	}

	reg, _ := startSynthetic(b, parts)
	dir := b.TempDir()

	var mirrorTime, copyTime time.Duration

	var tarBytes, blobBytes, unique int64

	for i := 0; b.Loop(); i++ {
		to := filepath.Join(dir, "release-"+strconv.Itoa(i)+".tar")
		opts := syntheticOpts(reg, to)
		opts.ClusterImages = true
		opts.SourceMap = syntheticSourceMap(reg)
		opts.PublicKeys = [][]byte{synthetic.PublicKeyPEM()}

		start := time.Now()
		res, err := Mirror(b.Context(), opts)
		require.NoError(b, err)

		mirrorTime += time.Since(start)

		st, err := os.Stat(to)
		require.NoError(b, err)

		tarBytes += st.Size()
		blobBytes += res.Manifest.Bytes

		bd, err := Open(to)
		require.NoError(b, err)

		for _, bi := range bd.Blobs() {
			unique += bi.Size
		}

		require.NoError(b, bd.Close())

		start = time.Now()
		copyFile(b, to, to+".copy")
		copyTime += time.Since(start)

		require.NoError(b, os.Remove(to))
		require.NoError(b, os.Remove(to+".copy"))
	}

	mb := float64(tarBytes) / 1e6
	b.ReportMetric(mb/mirrorTime.Seconds(), "mirror-MB/s")
	b.ReportMetric(mb/copyTime.Seconds(), "copy-MB/s")
	b.ReportMetric(copyTime.Seconds()/mirrorTime.Seconds(), "mirror/copy")
	b.ReportMetric(float64(blobBytes)/float64(unique), "blobs/unique")
	b.ReportMetric(float64(tarBytes)/float64(unique), "tar/unique")
	b.ReportMetric(float64(tarBytes)/float64(b.N), "tar-bytes")
}

// copyFile copies a file as cp(1) would, synced like the mirror's own writes.
func copyFile(b *testing.B, from, to string) {
	b.Helper()

	src, err := os.Open(from)
	require.NoError(b, err)

	defer src.Close()

	dst, err := os.Create(to)
	require.NoError(b, err)

	_, err = io.Copy(dst, src)
	require.NoError(b, err)
	require.NoError(b, dst.Sync())
	require.NoError(b, dst.Close())
}
