//go:build boot

package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// The runner's own parts, without QEMU (named TestBoot… so `make test-boot` runs them first).

// diskLike is 16 MiB of zeros with data at the start, in the middle (not block-aligned) and in the last byte.
func diskLike() []byte {
	img := make([]byte, 16<<20)
	copy(img, "MBR")
	copy(img[5<<20+123:], "partition data")
	img[len(img)-1] = 0xAA

	return img
}

func TestBootDecompressSparse(t *testing.T) {
	img := diskLike()

	var zst, xzb bytes.Buffer

	zw, err := zstd.NewWriter(&zst)
	require.NoError(t, err)
	_, err = zw.Write(img)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	xw, err := xz.NewWriter(&xzb)
	require.NoError(t, err)
	_, err = xw.Write(img)
	require.NoError(t, err)
	require.NoError(t, xw.Close())

	// A trailing hole: the file must still have the full size.
	holeTail := append(bytes.Clone(img[:len(img)-1]), 0)

	var zstHole bytes.Buffer

	zw.Reset(&zstHole)
	_, err = zw.Write(holeTail)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	for _, tc := range []struct {
		name string
		data []byte
		want []byte
	}{
		{"disk.raw.zst", zst.Bytes(), img},
		{"disk.raw.xz", xzb.Bytes(), img},
		{"disk.raw", img, img},
		{"hole-at-end.raw.zst", zstHole.Bytes(), holeTail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(src, tc.data, 0o644))

			dst := filepath.Join(dir, "out.raw")
			size, err := DecompressSparse(src, dst)
			require.NoError(t, err)
			assert.Equal(t, int64(len(tc.want)), size)

			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			require.True(t, bytes.Equal(tc.want, got), "decompressed bytes differ")
			assert.Less(t, allocated(t, dst), int64(1<<20), "zero blocks must be holes, not written")
		})
	}

	t.Run("truncated stream", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "cut.raw.zst")
		require.NoError(t, os.WriteFile(src, zst.Bytes()[:zst.Len()/2], 0o644))

		_, err := DecompressSparse(src, filepath.Join(dir, "out.raw"))
		require.Error(t, err)
	})
}
