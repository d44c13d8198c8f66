package inspect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

const (
	testSchematicID  = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
	testInstallerTag = "factory.example/installer/376567988ad37013:v1.13.0"
)

// testExtensionsYAML is an extensions.yaml as the Talos imager writes it, with an image factory's schematic.
const testExtensionsYAML = `layers:
    - image: 000.gvisor.sqsh
      metadata:
        name: gvisor
        version: 20250505.0
        author: Sidero Labs
    - image: 001.schematic.sqsh
      metadata:
        name: schematic
        version: ` + testSchematicID + `
        author: Image Factory
`

// talosInitramfs is laid out as the imager writes one with extensions: an uncompressed early cpio, the xz base
// initramfs and the zstd extensions cpio.
func talosInitramfs(t *testing.T) []byte {
	t.Helper()

	early := padTo(cpioOf(t,
		cpio.Directory("kernel", 0o755),
		cpio.StaticFile("kernel/x86/microcode/AuthenticAMD.bin", "ucode", 0o644),
	), 512)
	ext := zstdOf(t, cpioOf(t,
		cpio.StaticFile("extensions.yaml", testExtensionsYAML, 0o644),
		cpio.StaticFile("000.gvisor.sqsh", string(randomBytes(4096, 20)), 0o644),
		cpio.StaticFile("001.schematic.sqsh", string(randomBytes(4096, 21)), 0o644),
	))

	return concat(early, xzOf(t, baseCPIO(t), crc32xz), ext)
}

// talosUKI is talosUKISections on base with a real initramfs as .initrd.
func talosUKI(t *testing.T, base []byte) []byte {
	t.Helper()

	secs := talosUKISections()
	for i := range secs {
		if secs[i].name == ".initrd" {
			secs[i].data = talosInitramfs(t)
		}
	}

	return appendSections(t, base, secs...)
}

// talosISO builds an ISO like the Talos imager's: GRUB for BIOS with its command line, systemd-boot and a UKI
// for UEFI, and with secureBoot the keys systemd-boot enrols.
func talosISO(t *testing.T, uki []byte, secureBoot bool) []byte {
	t.Helper()

	src := t.TempDir()
	writeFile(t, src, "boot/grub/grub.cfg", []byte("set default=0\n\nmenuentry \"Talos ISO\" {\n\tlinux /boot/vmlinuz "+
		talosCmdline+" talos.halt_if_installed=1\n\tinitrd /boot/initramfs.xz\n}\n"))
	writeFile(t, src, "boot/grub/i386-pc/eltorito.img", randomBytes(2048, 4))
	writeFile(t, src, "efiboot.img", randomBytes(64<<10, 5))
	writeFile(t, src, "EFI/BOOT/BOOTX64.EFI", randomBytes(3000, 6))
	writeFile(t, src, "EFI/Linux/Talos-v1.13.0.efi", uki)

	if secureBoot {
		writeFile(t, src, "loader/keys/auto/db.auth", randomBytes(100, 22))
	}

	out := filepath.Join(t.TempDir(), "out.iso")
	run(t, "", nil, "xorriso", "-as", "mkisofs", "-R", "-J", "-V", "TALOS_V1_13_0", "-o", out, "-c", "boot.catalog",
		"-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4",
		"-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot", src)

	data, err := os.ReadFile(out)
	require.NoError(t, err)

	return data
}

// talosInstaller writes an installer tarball whose artifacts layer carries uki as vmlinuz.efi.
func talosInstaller(t *testing.T, uki []byte) []byte {
	t.Helper()

	img, err := mutate.AppendLayers(empty.Image,
		layerOf(t, tarFile{name: "usr/bin/installer", data: "#!/bin/sh\n"}),
		layerOf(t, tarFile{name: "usr/install/amd64/", dir: true},
			tarFile{name: "usr/install/amd64/vmlinuz.efi", data: string(uki)},
			tarFile{name: "usr/install/amd64/systemd-boot.efi", data: "MZ sd-boot"}),
	)
	require.NoError(t, err)

	cfg, err := img.ConfigFile()
	require.NoError(t, err)

	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"

	img, err = mutate.ConfigFile(img, cfg)
	require.NoError(t, err)

	ref, err := name.ParseReference(testInstallerTag)
	require.NoError(t, err)

	var buf bytes.Buffer
	require.NoError(t, tarball.Write(ref, img, &buf))

	return buf.Bytes()
}

// tarOf archives members in order.
func tarOf(t *testing.T, members ...tarFile) []byte {
	t.Helper()

	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)
	for _, m := range members {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(m.data))
		require.NoError(t, err)
	}

	require.NoError(t, tw.Close())

	return buf.Bytes()
}

// qemuConvert converts a raw disk with qemu-img convert.
func qemuConvert(t *testing.T, raw []byte, format string, opts ...string) []byte {
	t.Helper()

	dir := t.TempDir()
	writeFile(t, dir, "disk.raw", raw)

	args := append([]string{"convert", "-f", "raw", "-O", format}, opts...)
	run(t, dir, nil, "qemu-img", append(args, "disk.raw", "disk.out")...)

	data, err := os.ReadFile(filepath.Join(dir, "disk.out"))
	require.NoError(t, err)

	return data
}

func wantTalosUKI(t *testing.T, rep Report) {
	t.Helper()

	assert.Equal(t, "v1.13.0", rep.TalosVersion)
	assert.Equal(t, testSchematicID, rep.SchematicID)
	assert.Equal(t, "6.12.40-talos", rep.KernelVersion)
	assert.Equal(t, "amd64", rep.Arch)
	assert.Equal(t, []Extension{{Name: "gvisor", Version: "20250505.0", Author: "Sidero Labs", Image: "000.gvisor.sqsh"}}, rep.Extensions)

	require.NotNil(t, rep.PE)
	assert.True(t, rep.PE.UKI)
	assert.Equal(t, "amd64", rep.PE.Machine)
	assert.Equal(t, []Profile{
		{ID: "main", Cmdline: talosCmdline},
		{ID: "reset", Title: "Reset system disk", Cmdline: talosCmdline + " talos.experimental.wipe=system", OwnCmdline: true},
	}, rep.PE.Profiles)
	assert.Contains(t, rep.PE.SBAT, "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md")

	var names []string
	for _, s := range rep.PE.Sections {
		names = append(names, s.Name)
	}

	assert.Subset(t, names, []string{".osrel", ".cmdline", ".initrd", ".linux", ".uname", ".sbat", ".profile"})

	require.NotNil(t, rep.Initramfs)
	require.Len(t, rep.Initramfs.Members, 3)
	assert.Equal(t, []Format{FormatNone, FormatXZ, FormatZstd},
		[]Format{rep.Initramfs.Members[0].Compression, rep.Initramfs.Members[1].Compression, rep.Initramfs.Members[2].Compression})
	assert.Equal(t, "CRC32", rep.Initramfs.Members[1].XZCheck)
	assert.Equal(t, 8, rep.Initramfs.Files)
}

func wantTalosDisk(t *testing.T, d *DiskInfo, sectorSize int) {
	t.Helper()

	require.NotNil(t, d)
	assert.Equal(t, "gpt", d.Table)
	assert.Equal(t, sectorSize, d.SectorSize)
	assert.Equal(t, int64(16<<20), d.Size)
	assert.True(t, d.BIOSBootCode)
	assert.Equal(t, "8F1C0D6E-58A4-4BD5-A3C0-6A3C1B1E0001", d.DiskGUID)

	names := make([]string, len(d.Partitions))
	for i, p := range d.Partitions {
		names[i] = p.Name
	}

	assert.Equal(t, []string{"EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"}, names)
	assert.Equal(t, Partition{Index: 1, Name: "EFI", Type: typeEFI, TypeName: "EFI System", Offset: d.Partitions[0].Offset,
		Size: 4 << 20}, d.Partitions[0])
	assert.True(t, d.Partitions[1].Bootable, "legacy BIOS bootable attribute")
}

// TestFile inspects every kind of asset the package reads, built the way the Talos imager builds it, from files
// whose name says nothing: the kind comes from the content.
func TestFile(t *testing.T) {
	uki := talosUKI(t, minimalPE(t))
	disk := talosDisk(t, 512)

	for _, tc := range []struct {
		name  string
		build func(t *testing.T) []byte
		check func(t *testing.T, rep Report)
	}{
		{"uki", func(*testing.T) []byte { return uki }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindUKI, rep.Kind)
			wantTalosUKI(t, rep)
			assert.Equal(t, talosCmdline, rep.Cmdline)
			assert.False(t, rep.PE.Signed)
			assert.Empty(t, rep.PE.Path)
			assert.Equal(t, ".initrd", rep.Initramfs.Path)
		}},
		{"signed uki", func(*testing.T) []byte { return sign(uki, 0x0002) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindUKI, rep.Kind)
			wantTalosUKI(t, rep)
			assert.True(t, rep.PE.Signed)
			assert.Equal(t, uint32(8+1024), rep.PE.SignatureSize)
		}},
		{"uki on systemd-stub", func(t *testing.T) []byte {
			stub, ok := stubs(t)["systemd-stub"]
			if !ok {
				t.Skip("build/parts/amd64/systemd-stub.efi absent (make deps)")
			}

			return talosUKI(t, stub)
		}, func(t *testing.T, rep Report) {
			assert.Equal(t, KindUKI, rep.Kind)
			wantTalosUKI(t, rep)
		}},
		{"systemd-boot", func(t *testing.T) []byte { return part(t, "amd64/systemd-boot.efi") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindPE, rep.Kind)
			assert.False(t, rep.PE.UKI)
			assert.Contains(t, strings.Join(rep.PE.SBAT, "\n"), "systemd-boot,")
			assert.Nil(t, rep.Extensions, "no initramfs read")
		}},
		{"amd64 kernel", func(t *testing.T) []byte { return part(t, "amd64/vmlinuz") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindKernel, rep.Kind)
			assert.Equal(t, "amd64", rep.Arch)
			assert.Regexp(t, `^\d+\.\d+\.\d+-`, rep.KernelVersion)
			assert.True(t, rep.PE.Signed, "Debian's kernel is signed for secure boot")
		}},
		{"arm64 kernel", func(t *testing.T) []byte { return part(t, "arm64/vmlinuz") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindKernel, rep.Kind)
			assert.Equal(t, "arm64", rep.Arch)
		}},
		{"initramfs", talosInitramfs, func(t *testing.T, rep Report) {
			assert.Equal(t, KindInitramfs, rep.Kind)
			assert.Empty(t, rep.Compression, "compression is per member")
			assert.Equal(t, testSchematicID, rep.SchematicID)
			assert.Len(t, rep.Extensions, 1)
			assert.Len(t, rep.Initramfs.Members, 3)
			assert.Empty(t, rep.TalosVersion)
		}},
		{"initramfs without extensions", func(t *testing.T) []byte { return xzOf(t, baseCPIO(t), crc32xz) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindInitramfs, rep.Kind)
			assert.NotNil(t, rep.Extensions)
			assert.Empty(t, rep.Extensions)
			assert.Empty(t, rep.SchematicID)
		}},
		{"iso", func(t *testing.T) []byte { return talosISO(t, uki, false) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindISO, rep.Kind)
			wantTalosUKI(t, rep)
			assert.Equal(t, talosCmdline, rep.Cmdline, "the UKI's, for UEFI")
			assert.Equal(t, talosCmdline+" talos.halt_if_installed=1", rep.ISO.BIOSCmdline, "GRUB's")
			assert.Equal(t, "EFI/Linux/Talos-v1.13.0.efi", rep.PE.Path)
			assert.Equal(t, "EFI/Linux/Talos-v1.13.0.efi:.initrd", rep.Initramfs.Path)
			assert.Equal(t, "TALOS_V1_13_0", rep.ISO.VolumeID)
			assert.False(t, rep.ISO.SecureBootKeys)
			require.Len(t, rep.ISO.BootEntries, 2)
			assert.Equal(t, "x86 BIOS", rep.ISO.BootEntries[0].Platform)
			assert.Equal(t, int64(2048), rep.ISO.BootEntries[0].Size)
			assert.Equal(t, "EFI", rep.ISO.BootEntries[1].Platform)
		}},
		{"secure boot iso", func(t *testing.T) []byte { return talosISO(t, sign(uki, 0x0002), true) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindISO, rep.Kind)
			assert.True(t, rep.ISO.SecureBootKeys)
			assert.True(t, rep.PE.Signed)
		}},
		{"iso without uki", func(t *testing.T) []byte { _, d := makeISO(t, "-R"); return d }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindISO, rep.Kind)
			assert.Equal(t, "v1.13.0", rep.TalosVersion, "from the volume ID")
			assert.Nil(t, rep.PE)
			assert.Nil(t, rep.Extensions)
			assert.NotEmpty(t, rep.Notes)
		}},
		{"disk", func(*testing.T) []byte { return disk }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindDisk, rep.Kind)
			assert.Empty(t, rep.Compression)
			wantTalosDisk(t, rep.Disk, 512)
		}},
		{"4k disk", func(t *testing.T) []byte { return talosDisk(t, 4096) }, func(t *testing.T, rep Report) {
			wantTalosDisk(t, rep.Disk, 4096)
		}},
		{"mbr disk", func(*testing.T) []byte { return mbrDisk() }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindDisk, rep.Kind)
			assert.Equal(t, &DiskInfo{Table: "mbr", Size: 1 << 20, SectorSize: 512, Partitions: []Partition{
				{Index: 1, Type: "0x0c", TypeName: "FAT32 (LBA)", Offset: 2048 * 512, Size: 65536 * 512, Bootable: true},
			}}, rep.Disk)
		}},
		{"zstd disk", func(t *testing.T) []byte { return zstdOf(t, disk) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindDisk, rep.Kind)
			assert.Equal(t, FormatZstd, rep.Compression)
			assert.Equal(t, int64(len(disk)), rep.UncompressedSize)
			wantTalosDisk(t, rep.Disk, 512)
		}},
		{"xz disk in two streams", func(t *testing.T) []byte {
			return concat(xzOf(t, disk[:5<<20], crc32xz), make([]byte, 8), xzOf(t, disk[5<<20:], crc32xz))
		}, func(t *testing.T, rep Report) {
			assert.Equal(t, FormatXZ, rep.Compression)
			assert.Equal(t, int64(len(disk)), rep.UncompressedSize)
			wantTalosDisk(t, rep.Disk, 512)
		}},
		{"gzip disk", func(t *testing.T) []byte { return gzipOf(t, disk) }, func(t *testing.T, rep Report) {
			assert.Equal(t, FormatGzip, rep.Compression)
			wantTalosDisk(t, rep.Disk, 512)
		}},
		{"gcp tar.gz", func(t *testing.T) []byte {
			return gzipOf(t, tarOf(t, tarFile{name: "disk.raw", data: string(disk)}))
		}, func(t *testing.T, rep Report) {
			assert.Equal(t, KindTar, rep.Kind)
			assert.Equal(t, FormatGzip, rep.Compression)
			assert.Equal(t, &TarInfo{Entries: []TarEntry{{Name: "disk.raw", Size: int64(len(disk))}}, Count: 1}, rep.Tar)
			wantTalosDisk(t, rep.Disk, 512)
			assert.Equal(t, "disk.raw", rep.Disk.Path)
		}},
		{"qcow2", func(t *testing.T) []byte { return qemuImage(t, "disk.qcow2", "create", "-f", "qcow2") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindQCOW2, rep.Kind)
			assert.Equal(t, &VirtualDiskInfo{Format: "qcow2", Subformat: "v3", VirtualSize: 16 << 20, ClusterSize: 65536,
				Compression: "zlib"}, rep.VirtualDisk)
		}},
		{"xz qcow2", func(t *testing.T) []byte {
			return xzOf(t, qemuImage(t, "disk.qcow2", "create", "-f", "qcow2", "-o", "cluster_size=8k"), crc32xz)
		}, func(t *testing.T, rep Report) {
			assert.Equal(t, KindQCOW2, rep.Kind)
			assert.Equal(t, FormatXZ, rep.Compression)
			assert.Equal(t, int64(8192), rep.VirtualDisk.ClusterSize)
		}},
		{"fixed vhd", func(t *testing.T) []byte { return qemuConvert(t, disk, "vpc", "-o", "subformat=fixed,force_size") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindVHD, rep.Kind)
			assert.Equal(t, &VirtualDiskInfo{Format: "vhd", Subformat: "fixed", VirtualSize: 16 << 20, Creator: "qem2"}, rep.VirtualDisk)
			wantTalosDisk(t, rep.Disk, 512)
		}},
		{"dynamic vhd", func(t *testing.T) []byte { return qemuConvert(t, disk, "vpc") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindVHD, rep.Kind)
			assert.Equal(t, "dynamic", rep.VirtualDisk.Subformat)
			assert.Nil(t, rep.Disk)
			assert.NotEmpty(t, rep.Notes)
		}},
		{"vmdk", func(t *testing.T) []byte { return qemuConvert(t, disk, "vmdk", "-o", "subformat=streamOptimized") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindVMDK, rep.Kind)
			assert.Equal(t, &VirtualDiskInfo{Format: "vmdk", Subformat: "streamOptimized", VirtualSize: 16 << 20,
				ClusterSize: 64 << 10, Compression: "deflate"}, rep.VirtualDisk)
		}},
		{"ova", func(t *testing.T) []byte { return tarOVA(t, ovaFiles(t, 16), "disk.ovf", "disk.mf", "disk.vmdk") }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindOVA, rep.Kind)
			assert.Equal(t, "disk.ovf", rep.OVA.Descriptor)
			assert.Equal(t, 2, rep.OVA.Verified)
			assert.Len(t, rep.OVA.Entries, 3)
			assert.Equal(t, "disk.vmdk", rep.VirtualDisk.Path)
			assert.Equal(t, int64(16<<20), rep.VirtualDisk.VirtualSize)
		}},
		{"installer", func(t *testing.T) []byte { return talosInstaller(t, uki) }, func(t *testing.T, rep Report) {
			assert.Equal(t, KindInstaller, rep.Kind)
			wantTalosUKI(t, rep)
			assert.Equal(t, talosCmdline, rep.Cmdline)
			assert.Equal(t, "usr/install/amd64/vmlinuz.efi", rep.PE.Path)
			assert.Equal(t, 2, rep.PE.Layer)
			assert.Equal(t, []string{testInstallerTag}, rep.Installer.Tags)
			assert.Equal(t, "linux/amd64", rep.Installer.Platform)
			require.Len(t, rep.Installer.Layers, 2)
			assert.Equal(t, 2, rep.Installer.Layers[1].Files)
		}},
		{"signed installer", func(t *testing.T) []byte { return talosInstaller(t, sign(uki, 0x0002)) }, func(t *testing.T, rep Report) {
			wantTalosUKI(t, rep)
			assert.True(t, rep.PE.Signed)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.build(t)
			path := writeFile(t, t.TempDir(), "download.bin", data)

			rep, err := File(path)
			require.NoError(t, err)
			assert.Equal(t, path, rep.Path)
			assert.Equal(t, int64(len(data)), rep.Size)
			tc.check(t, rep)

			// The JSON form is what scripts read: it must round-trip.
			js, err := json.Marshal(rep)
			require.NoError(t, err)

			var back Report
			require.NoError(t, json.Unmarshal(js, &back))
			assert.Equal(t, rep, back)

			// Asset on the bytes reports the same, without a path.
			mem, err := Asset(bytes.NewReader(data), int64(len(data)))
			require.NoError(t, err)

			rep.Path = ""
			assert.Equal(t, rep, mem)
		})
	}
}

// part reads a file of the synthetic release parts, skipping the test without them.
func part(t *testing.T, name string) []byte {
	t.Helper()

	data, err := os.ReadFile(filepath.Join("../../build/parts", name))
	if err != nil {
		t.Skipf("build/parts/%s absent (make deps)", name)
	}

	return data
}

// mbrDisk is 1 MiB with an MBR and one FAT32 partition.
func mbrDisk() []byte {
	d := make([]byte, 1<<20)
	d[510], d[511] = 0x55, 0xaa
	copy(d[446:], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0x00, 0x08, 0, 0, 0x00, 0x00, 0x01, 0})

	return d
}

// TestReportJSONNames pins the JSON member names scripts rely on.
func TestReportJSONNames(t *testing.T) {
	rep, err := Asset(bytes.NewReader(talosUKI(t, minimalPE(t))), int64(len(talosUKI(t, minimalPE(t)))))
	require.NoError(t, err)

	js, err := json.Marshal(rep)
	require.NoError(t, err)

	var m map[string]any
	require.NoError(t, json.Unmarshal(js, &m))

	for _, key := range []string{"kind", "size", "arch", "talos_version", "schematic_id", "kernel_version", "cmdline",
		"extensions", "pe", "initramfs"} {
		assert.Contains(t, m, key)
	}

	assert.Equal(t, "uki", m["kind"])
	assert.Equal(t, map[string]any{"name": "gvisor", "version": "20250505.0", "author": "Sidero Labs", "image": "000.gvisor.sqsh"},
		m["extensions"].([]any)[0])

	pe := m["pe"].(map[string]any)
	for _, key := range []string{"machine", "uki", "signed", "sections", "profiles"} {
		assert.Contains(t, pe, key)
	}
}

// TestFileRejects checks that unknown and corrupt inputs give an error that names the file and what is wrong.
func TestFileRejects(t *testing.T) {
	uki := talosUKI(t, minimalPE(t))
	disk := talosDisk(t, 512)
	zdisk := zstdOf(t, disk)
	linux, ok := sectionOf(t, uki, ".linux")
	require.True(t, ok)
	initrd, _ := sectionOf(t, uki, ".initrd")
	iso := talosISO(t, uki, false)

	flip := func(d []byte, off int) []byte {
		d = bytes.Clone(d)
		d[off] ^= 0xff

		return d
	}

	for _, tc := range []struct {
		name    string
		data    []byte
		is      error
		message string
	}{
		{"empty", nil, ErrMalformed, "empty file"},
		{"garbage", randomBytes(100<<10, 30), ErrMalformed, "unrecognised content (starts with "},
		{"text", []byte("talos.platform=metal console=tty0\n"), ErrMalformed, `unrecognised content (starts with "talos.platform=m")`},
		{"compressed text", gzipOf(t, bytes.Repeat([]byte("hello\n"), 100)), ErrMalformed, "unrecognised gzip-compressed content"},
		{"truncated uki", uki[:linux.Offset+100], io.ErrUnexpectedEOF, "section .linux"},
		{"uki with corrupt initramfs", flip(uki, int(initrd.Offset)+2000), ErrMalformed, "section .initrd: initramfs member 2"},
		{"bad certificate", sign(uki, 0x0001), ErrMalformed, "WIN_CERTIFICATE"},
		{"truncated iso", iso[:len(iso)/2], io.ErrUnexpectedEOF, "iso"},
		{"iso with corrupt uki", bytes.Replace(iso, uki[initrd.Offset+1500:initrd.Offset+1600],
			make([]byte, 100), 1), ErrMalformed, "iso file EFI/Linux/Talos-v1.13.0.efi: section .initrd"},
		{"truncated disk", disk[:len(disk)-4096], io.ErrUnexpectedEOF, "backup header"},
		{"truncated zstd disk", zdisk[:len(zdisk)-10], io.ErrUnexpectedEOF, "zstd"},
		{"corrupt zstd disk", flip(zdisk, len(zdisk)-2), ErrMalformed, "zstd"},
		{"zstd disk with junk after", concat(zdisk, []byte("junk")), ErrMalformed, "data that is not zstd follows member 1"},
		{"xz disk with a huge dictionary", hugeXZDict(t, xzOf(t, disk[:1<<20], crc32xz)), ErrMalformed, "dictionary of 256 MiB"},
		{"installer with a bogus uki", func() []byte {
			d, err := os.ReadFile(installerTarball(t))
			require.NoError(t, err)

			return d
		}(), io.ErrUnexpectedEOF, "layer 2: usr/install/amd64/vmlinuz.efi: read pe headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "asset", tc.data)

			_, err := File(path)
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.True(t, strings.HasPrefix(err.Error(), path+": "), "the error names the file")
			require.Contains(t, err.Error(), tc.message)
		})
	}

	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		_, err := File(dir)
		require.EqualError(t, err, dir+": is a directory")
	})

	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nope.iso")
		_, err := File(p)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.Contains(t, err.Error(), p)
	})
}

func sectionOf(t *testing.T, img []byte, name string) (PESection, bool) {
	t.Helper()

	u, err := peFile(bytes.NewReader(img))
	require.NoError(t, err)

	for _, s := range u.Sections {
		if s.Name == name {
			return s, true
		}
	}

	return PESection{}, false
}

// hugeXZDict rewrites the LZMA2 dictionary size of the first block of an xz stream to 256 MiB (property 32) and
// fixes the block header's CRC32: a tiny file asking the decoder for a huge allocation.
func hugeXZDict(t *testing.T, data []byte) []byte {
	t.Helper()

	data = bytes.Clone(data)
	hdr := data[12:]
	size := (int(hdr[0]) + 1) * 4
	flags := hdr[1]
	require.Zero(t, flags&0xc0, "block header without sizes")
	require.Equal(t, []byte{0x21, 0x01}, hdr[2:4], "one LZMA2 filter with one property byte")

	hdr[4] = 32
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))

	return data
}

func TestXZDictionaryBound(t *testing.T) {
	require.NoError(t, xzCheckDict(1, 30)) // 128 MiB: xz -9 uses 64 MiB
	require.ErrorIs(t, xzCheckDict(1, 31), ErrMalformed)
	require.ErrorIs(t, xzCheckDict(1, 41), ErrMalformed)
}

// fuzzSeeds are valid assets of every kind that builds without host tools, and a few with them.
func fuzzSeeds(t *testing.T) map[string][]byte {
	t.Helper()

	uki := talosUKI(t, minimalPE(t))
	disk := talosDisk(t, 512)

	seeds := map[string][]byte{
		"uki":         uki,
		"signed uki":  sign(uki, 0x0002),
		"initramfs":   talosInitramfs(t),
		"disk":        disk,
		"4k disk":     talosDisk(t, 4096),
		"mbr":         mbrDisk(),
		"zstd disk":   zstdOf(t, disk),
		"xz disk":     xzOf(t, disk, crc32xz),
		"gzip tar":    gzipOf(t, tarOf(t, tarFile{name: "disk.raw", data: string(disk)})),
		"installer":   talosInstaller(t, uki),
		"pe":          appendSections(t, minimalPE(t), peSection{".text", []byte("code")}),
		"plain tar":   tarOf(t, tarFile{name: "a", data: "b"}),
		"gzip initrd": gzipOf(t, cpioOf(t, cpio.StaticFile("init", "x", 0o755))),
	}

	if _, err := os.Stat("/usr/bin/xorriso"); err == nil {
		seeds["iso"] = talosISO(t, uki, true)
	}

	if _, err := os.Stat("/usr/bin/qemu-img"); err == nil {
		seeds["qcow2"] = qemuImage(t, "disk.qcow2", "create", "-f", "qcow2")
		seeds["vhd"] = qemuConvert(t, disk, "vpc", "-o", "subformat=fixed,force_size")
		seeds["dynamic vhd"] = qemuConvert(t, disk, "vpc")
		seeds["ova"] = tarOVA(t, ovaFiles(t, 16), "disk.ovf", "disk.mf", "disk.vmdk")
	}

	return seeds
}

// TestAssetNeverPanics feeds truncated and corrupted versions of every seed to Asset: it must return (a report or
// an error), never panic; and a truncated disk image, UKI or ISO must be an error.
func TestAssetNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))

	for name, seed := range fuzzSeeds(t) {
		t.Run(name, func(t *testing.T) {
			n := len(seed)
			cuts := []int{0, 1, 2, 63, 64, 65, 511, 512, 513, 1024, 4096, 4097, 32768, 32774, n / 3, n / 2, n - 513, n - 512, n - 1}

			for _, cut := range cuts {
				if cut < 0 || cut >= n {
					continue
				}

				_, err := asset(t, seed[:cut])
				if cut == 0 || name == "disk" || name == "4k disk" || name == "zstd disk" || name == "xz disk" ||
					name == "uki" || name == "iso" {
					assert.Error(t, err, "%s cut to %d bytes", name, cut)
				}
			}

			for range 40 {
				d := bytes.Clone(seed)
				for range 1 + rng.IntN(4) {
					d[rng.IntN(n)] ^= byte(1 + rng.IntN(255))
				}

				_, _ = asset(t, d)
			}

			for range 10 {
				d := bytes.Clone(seed)
				at := rng.IntN(n)
				copy(d[at:], randomBytes(64, rng.Uint64()))

				_, _ = asset(t, d)
			}
		})
	}
}

// asset runs Asset and turns a panic into a test failure that shows the input's size.
func asset(t *testing.T, data []byte) (rep Report, err error) {
	t.Helper()

	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Asset panicked on %d bytes: %v", len(data), p)
		}
	}()

	rep, err = Asset(bytes.NewReader(data), int64(len(data)))
	if err != nil && err.Error() == "" {
		t.Fatalf("empty error message")
	}

	return rep, err
}

// FuzzAsset: go test -fuzz FuzzAsset ./imager/inspect/ explores from small seeds; the test run checks the seeds.
func FuzzAsset(f *testing.F) {
	var gz bytes.Buffer

	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("070701"))
	_ = zw.Close()

	for _, seed := range [][]byte{
		nil, []byte("MZ"), gz.Bytes(), []byte("070701" + strings.Repeat("0", 104)), mbrDisk()[:512], []byte("QFI\xfb"),
		[]byte("KDMV"), append(make([]byte, 257), "ustar\x0000"...),
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Asset(bytes.NewReader(data), int64(len(data)))
		if err == nil && rep.Kind == "" {
			t.Fatal("no error and no kind")
		}
	})
}

// TestPEStreamMatchesPEFile: reading a UKI from a stream (an installer layer) reports what reading the file does.
func TestPEStreamMatchesPEFile(t *testing.T) {
	bases := stubs(t)

	for name, base := range bases {
		for _, signed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s signed=%v", name, signed), func(t *testing.T) {
				img := talosUKI(t, base)
				if signed {
					img = sign(img, 0x0002)
				}

				want, err := peFile(bytes.NewReader(img))
				require.NoError(t, err)

				got, ir, err := peStream(bytes.NewReader(img), int64(len(img)), extensionsYAML)
				require.NoError(t, err)
				require.Equal(t, want, got)
				require.NotNil(t, ir)
				require.Equal(t, testExtensionsYAML, string(ir.Contents[extensionsYAML]))
			})
		}
	}

	t.Run("truncated", func(t *testing.T) {
		img := talosUKI(t, minimalPE(t))
		_, _, err := peStream(bytes.NewReader(img[:len(img)-100]), int64(len(img)), extensionsYAML)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})
}

func TestRetained(t *testing.T) {
	data := randomBytes(5<<20+123, 40)

	rt, err := retain(bytes.NewReader(data), 1<<20)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), rt.size)

	for _, tc := range []struct{ off, n int }{{0, 512}, {1<<20 - 10, 10}, {len(data) - 4096, 4096}, {len(data) - 1, 1}} {
		buf := make([]byte, tc.n)
		_, err := rt.ReadAt(buf, int64(tc.off))
		require.NoError(t, err)
		require.Equal(t, data[tc.off:tc.off+tc.n], buf)
	}

	_, err = rt.ReadAt(make([]byte, 10), 2<<20)
	require.ErrorContains(t, err, "only the first and last")

	n, err := rt.ReadAt(make([]byte, 10), int64(len(data)-5))
	require.Equal(t, 5, n)
	require.ErrorIs(t, err, io.EOF)

	// Small inputs are kept whole, even across the head and the tail.
	small := randomBytes(3<<19, 41)
	rt, err = retain(bytes.NewReader(small), 1<<20)
	require.NoError(t, err)

	buf := make([]byte, len(small))
	_, err = rt.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, small, buf)
}
