package inspect

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

var crc32xz = xz.WriterConfig{CheckSum: xz.CRC32}

// baseCPIO is a small initramfs like the synthetic release's: directories, an init script, a symlink and an
// incompressible binary (so LZMA2 and zstd emit stored chunks as well as compressed ones).
func baseCPIO(t *testing.T) []byte {
	return cpioOf(t,
		cpio.Directory("bin", 0o755),
		cpio.StaticFile("init", "#!/bin/busybox sh\nexec /bin/sh\n", 0o755),
		cpio.StaticFile("bin/busybox", string(randomBytes(300<<10, 1)), 0o755),
		cpio.Symlink("bin/sh", "busybox"),
		cpio.StaticFile("etc/talos-version", "v1.13.0\n", 0o644),
	)
}

func padTo(b []byte, n int) []byte {
	return append(b, make([]byte, (n-len(b)%n)%n)...)
}

// TestInitramfsTalosLayout builds what the Talos imager writes with extensions: an uncompressed early cpio
// (microcode) prepended, the original xz initramfs, and a zstd cpio made by GNU cpio and zstd with the imager's flags.
func TestInitramfsTalosLayout(t *testing.T) {
	dir := t.TempDir()
	extYAML := "layers:\n    - image: 000.sqsh\n      metadata:\n        name: gvisor\n        version: 1.0.0\n"
	writeFile(t, dir, "extensions.yaml", []byte(extYAML))
	writeFile(t, dir, "000.sqsh", randomBytes(200<<10, 2))
	writeFile(t, dir, "usr/lib/firmware/acme/fw.bin", bytes.Repeat([]byte{0}, 100<<10)) // RLE blocks

	listing := "extensions.yaml\n000.sqsh\nusr\nusr/lib\nusr/lib/firmware\nusr/lib/firmware/acme\nusr/lib/firmware/acme/fw.bin\n"
	extCPIO := run(t, dir, []byte(listing), "cpio", "-H", "newc", "--create", "--reproducible", "--quiet", "-R", "+0:+0")
	extZstd := run(t, dir, extCPIO, "zstd", "-T0", "-18", "-c", "--quiet")

	early := padTo(cpioOf(t,
		cpio.Directory("kernel", 0o755),
		cpio.StaticFile("kernel/x86/microcode/GenuineIntel.bin", "ucode", 0o644),
	), 512)
	base := xzOf(t, baseCPIO(t), crc32xz)
	img := concat(early, base, extZstd)

	rep, err := Initramfs(bytes.NewReader(img), "extensions.yaml", "/etc/talos-version")
	require.NoError(t, err)
	require.Len(t, rep.Members, 3)

	require.Equal(t, FormatNone, rep.Members[0].Compression)
	require.Equal(t, FormatXZ, rep.Members[1].Compression)
	require.Equal(t, "CRC32", rep.Members[1].XZCheck)
	require.Equal(t, FormatZstd, rep.Members[2].Compression)
	require.Equal(t, int64(len(early)+len(base)), rep.Members[2].Offset)
	require.Equal(t, int64(len(extZstd)), rep.Members[2].Size)
	require.Equal(t, int64(len(extCPIO)), rep.Members[2].Uncompressed)

	require.Equal(t, []string{
		"kernel/x86/microcode/GenuineIntel.bin",
		"init", "bin/busybox", "bin/sh", "etc/talos-version",
		"extensions.yaml", "000.sqsh", "usr/lib/firmware/acme/fw.bin",
	}, rep.Files())
	require.Equal(t, extYAML, string(rep.Contents["extensions.yaml"]))
	require.Equal(t, "v1.13.0\n", string(rep.Contents["etc/talos-version"]))

	sh, ok := rep.Entry("bin/sh")
	require.True(t, ok)
	require.Equal(t, "busybox", sh.Target)

	fw, ok := rep.Entry("./usr/lib/firmware/acme/fw.bin")
	require.True(t, ok)
	require.Equal(t, int64(100<<10), fw.Size)
}

// TestInitramfsMemberFraming checks that each kind of member ends exactly where it should, so the member after it
// (separated by kernel-style zero padding) is found.
func TestInitramfsMemberFraming(t *testing.T) {
	first := baseCPIO(t)
	cut := len(first) / 3
	tail := xzOf(t, cpioOf(t, cpio.StaticFile("next", "x", 0o644)), crc32xz)

	members := map[string]func(t *testing.T) []byte{
		"xz crc32":    func(t *testing.T) []byte { return xzOf(t, first, crc32xz) },
		"xz crc64":    func(t *testing.T) []byte { return xzOf(t, first, xz.WriterConfig{}) },
		"xz sha256":   func(t *testing.T) []byte { return xzOf(t, first, xz.WriterConfig{CheckSum: xz.SHA256}) },
		"xz no check": func(t *testing.T) []byte { return xzOf(t, first, xz.WriterConfig{NoCheckSum: true}) },
		"xz many blocks": func(t *testing.T) []byte {
			return xzOf(t, first, xz.WriterConfig{CheckSum: xz.CRC32, BlockSize: 8 << 10})
		},
		"xz cli talos flags": func(t *testing.T) []byte {
			return run(t, "", first, "xz", "-C", "crc32", "-0", "-e", "-T", "0", "-z", "-c")
		},
		"xz cli sized blocks": func(t *testing.T) []byte { return run(t, "", first, "xz", "-T2", "--block-size=16KiB", "-c") },
		"zstd":                func(t *testing.T) []byte { return zstdOf(t, first) },
		"zstd no crc":         func(t *testing.T) []byte { return zstdOf(t, first, zstd.WithEncoderCRC(false)) },
		"zstd padded":         func(t *testing.T) []byte { return zstdOf(t, first, zstd.WithEncoderPadding(4096)) },
		"zstd two frames":     func(t *testing.T) []byte { return concat(zstdOf(t, first[:cut]), zstdOf(t, first[cut:])) },
		"zstd cli":            func(t *testing.T) []byte { return run(t, "", first, "zstd", "-T0", "-18", "-c", "--quiet") },
		"gzip":                func(t *testing.T) []byte { return gzipOf(t, first) },
		"plain cpio":          func(t *testing.T) []byte { return first },
		"two archives": func(t *testing.T) []byte {
			return xzOf(t, concat(padTo(first, 512), cpioOf(t, cpio.StaticFile("more", "y", 0o644))), crc32xz)
		},
	}

	for name, build := range members {
		t.Run(name, func(t *testing.T) {
			m := build(t)
			rep, err := Initramfs(bytes.NewReader(concat(m, make([]byte, 7), tail)))
			require.NoError(t, err)
			require.Len(t, rep.Members, 2)
			require.Equal(t, int64(len(m)), rep.Members[0].Size)
			require.Equal(t, int64(len(m)+7), rep.Members[1].Offset)
			require.Contains(t, rep.Files(), "bin/busybox")
			require.Equal(t, "next", rep.Files()[len(rep.Files())-1])
		})
	}
}

func TestInitramfsRejectsCorruption(t *testing.T) {
	good := xzOf(t, baseCPIO(t), crc32xz)
	ext := zstdOf(t, cpioOf(t, cpio.StaticFile("extensions.yaml", "layers: []\n", 0o644)))
	img := concat(good, ext)

	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0x40

		return b
	}

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"empty", nil, ErrMalformed, "no data"},
		{"only zeros", make([]byte, 64), ErrMalformed, "no data"},
		{"garbage member", concat(img, []byte("garbage!")), ErrMalformed, "member 3 at offset"},
		{"bzip2 member", concat(img, []byte("BZh91AY&SY")), ErrMalformed, "bzip2"},
		{"truncated xz", good[:len(good)-20], io.ErrUnexpectedEOF, "member 1"},
		{"truncated zstd", img[:len(img)-5], io.ErrUnexpectedEOF, "member 2"},
		{"xz block header CRC", flip(img, 13), ErrMalformed, "xz block 1 header: CRC32"},
		{"xz stream footer", flip(img, len(good)-3), ErrMalformed, "xz stream footer"},
		{"zstd magic", concat(good, flip(ext, 0)), ErrMalformed, "member 2"},
		{"xz data", flip(img, len(good)/2), ErrMalformed, "member 1"},
		{"tiny xz", concat(good, magicXZ, []byte{0, 1}), io.ErrUnexpectedEOF, "member 2"},
		{"gzip data", concat(good, flip(gzipOf(t, baseCPIO(t)), 5000)), ErrMalformed, "member 2"},
		{"cpio not inside", concat(good, zstdOf(t, []byte("hello, not a cpio archive"))), ErrMalformed, "not a cpio archive"},
		{"cpio without trailer", cpioOf(t, cpio.StaticFile("a", "b", 0o644))[:120], io.ErrUnexpectedEOF, "member 1"},
		{"cpio bad hex", concat([]byte("070701zzzzzzzz"), make([]byte, 200)), ErrMalformed, "c_ino is not hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Initramfs(bytes.NewReader(tc.in))
			require.Error(t, err)
			t.Log(err)

			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}

			require.Contains(t, err.Error(), tc.message)
		})
	}
}

// TestInitramfsSynthetic reads the synthetic release's initramfs: two xz (CRC32) members.
func TestInitramfsSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses busybox")
	}

	busybox, err := os.ReadFile("../../build/parts/amd64/busybox")
	if err != nil {
		t.Skip("build/parts/amd64/busybox absent")
	}

	img, err := synthetic.Initramfs(busybox, "v1.13.0")
	require.NoError(t, err)

	rep, err := Initramfs(bytes.NewReader(img), "etc/talos-version")
	require.NoError(t, err)
	require.NotEmpty(t, rep.Members)

	for _, m := range rep.Members {
		require.Equal(t, FormatXZ, m.Compression)
		require.Equal(t, "CRC32", m.XZCheck)
	}

	require.Contains(t, rep.Files(), "init")
	require.Contains(t, string(rep.Contents["etc/talos-version"]), "1.13.0")
}
