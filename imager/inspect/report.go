package inspect

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Kind is what an asset is, told from its content (never from its file name).
type Kind string

// Kinds File and Asset report.
const (
	KindISO       Kind = "iso"       // ISO 9660 image, El Torito bootable
	KindUKI       Kind = "uki"       // Unified Kernel Image: a PE file with a .linux section
	KindKernel    Kind = "kernel"    // Linux kernel image (x86 bzImage or arm64 Image), with or without an EFI stub
	KindPE        Kind = "pe"        // other PE/EFI executable, e.g. systemd-boot
	KindInitramfs Kind = "initramfs" // concatenated cpio archives, each plain or compressed
	KindDisk      Kind = "disk"      // raw disk image with a GPT or MBR partition table
	KindQCOW2     Kind = "qcow2"     // qcow2 virtual disk
	KindVHD       Kind = "vhd"       // Virtual Hard Disk (fixed or dynamic)
	KindVMDK      Kind = "vmdk"      // VMDK sparse extent
	KindOVA       Kind = "ova"       // OVF package: descriptor, manifest and disks in a tar
	KindInstaller Kind = "installer" // installer image as a docker-save tarball
	KindTar       Kind = "tar"       // other tar archive, e.g. GCP's disk.raw in a .tar.gz
)

// Report is what File and Asset tell about an asset, in a form meant to be kept stable: the JSON names are part
// of the `edgefactory inspect --json` output. Fields that do not apply to the asset's kind, or that its content
// does not reveal, are empty (and left out of the JSON).
type Report struct {
	// Path is the file File read; empty for Asset.
	Path string `json:"path,omitempty"`
	Kind Kind   `json:"kind"`
	// Size is the size of the file in bytes.
	Size int64 `json:"size"`
	// Compression is the compression of the whole file (a .raw.xz disk, a .tar.gz archive): Kind is then what the
	// decompressed data is, UncompressedSize its size, and every integrity check of the compression was verified.
	// An initramfs reports the compression of each member instead.
	Compression      Format `json:"compression,omitempty"`
	UncompressedSize int64  `json:"uncompressed_size,omitempty"`
	// Arch is the architecture in GOARCH terms ("amd64", "arm64"), when the asset tells.
	Arch string `json:"arch,omitempty"`
	// TalosVersion comes from the UKI's os-release, else from the ISO volume ID or the installer image tag.
	TalosVersion string `json:"talos_version,omitempty"`
	// SchematicID is the version of the virtual "schematic" extension that image factories add.
	SchematicID string `json:"schematic_id,omitempty"`
	// KernelVersion is the kernel release (uname -r).
	KernelVersion string `json:"kernel_version,omitempty"`
	// Cmdline is the kernel command line the asset boots with (the UKI's; for an ISO without a UKI, GRUB's).
	Cmdline string `json:"cmdline,omitempty"`
	// Extensions lists the system extensions of the initramfs's extensions.yaml, without the virtual "schematic"
	// one (see SchematicID). It is null when no initramfs could be read, empty when the initramfs has none.
	Extensions []Extension `json:"extensions"`

	PE          *PEInfo          `json:"pe,omitempty"`
	Initramfs   *InitramfsInfo   `json:"initramfs,omitempty"`
	ISO         *ISOInfo         `json:"iso,omitempty"`
	Disk        *DiskInfo        `json:"disk,omitempty"`
	VirtualDisk *VirtualDiskInfo `json:"virtual_disk,omitempty"`
	OVA         *OVAInfo         `json:"ova,omitempty"`
	Installer   *InstallerInfo   `json:"installer,omitempty"`
	Tar         *TarInfo         `json:"tar,omitempty"`

	// Notes say what was not looked into, and why.
	Notes []string `json:"notes,omitempty"`
}

// Extension is one system extension an initramfs carries.
type Extension struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Author  string `json:"author,omitempty"`
	// Image is the squashfs file of the extension inside the initramfs.
	Image string `json:"image,omitempty"`
}

// PEInfo describes a PE (EFI) executable: a UKI, a kernel's EFI stub or a boot loader.
type PEInfo struct {
	// Path is where the file is inside the asset (an ISO, an installer layer); empty when it is the asset.
	Path    string `json:"path,omitempty"`
	Machine string `json:"machine"`
	UKI     bool   `json:"uki"`
	// Signed is set when the file carries an Authenticode (secure boot) signature of SignatureSize bytes. Its
	// structure is checked, not its cryptography.
	Signed        bool      `json:"signed"`
	SignatureSize uint32    `json:"signature_size,omitempty"`
	Sections      []Section `json:"sections"`
	Profiles      []Profile `json:"profiles,omitempty"`
	OS            string    `json:"os,omitempty"` // PRETTY_NAME of the .osrel section
	SBAT          []string  `json:"sbat,omitempty"`
	Layer         int       `json:"layer,omitempty"` // the installer layer holding the file, from 1
}

// Section is a PE section.
type Section struct {
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	// Size is the size of the section's data, without the padding to the file alignment.
	Size int64 `json:"size"`
}

// Profile is a UKI boot profile.
type Profile struct {
	ID    string `json:"id"`
	Title string `json:"title,omitempty"`
	// Cmdline is the command line the profile boots with (its own, or the UKI's).
	Cmdline    string `json:"cmdline"`
	OwnCmdline bool   `json:"own_cmdline"`
}

// InitramfsInfo describes an initramfs.
type InitramfsInfo struct {
	// Path is where the initramfs is inside the asset ("boot/initramfs.xz", "EFI/Linux/x.efi:.initrd").
	Path             string       `json:"path,omitempty"`
	Members          []MemberInfo `json:"members"`
	Files            int          `json:"files"`
	UncompressedSize int64        `json:"uncompressed_size"`
}

// MemberInfo is one member of an initramfs.
type MemberInfo struct {
	Offset      int64  `json:"offset"`
	Size        int64  `json:"size"`
	Compression Format `json:"compression"`
	// XZCheck is the integrity check of an xz member; the kernel unpacks only CRC32 (or None).
	XZCheck          string `json:"xz_check,omitempty"`
	UncompressedSize int64  `json:"uncompressed_size"`
	Entries          int    `json:"entries"`
}

// ISOInfo describes an ISO 9660 image.
type ISOInfo struct {
	VolumeID  string `json:"volume_id"`
	Joliet    bool   `json:"joliet"`
	RockRidge bool   `json:"rock_ridge"`
	// HybridMBR is set when the image also boots as a disk (isohybrid).
	HybridMBR   bool        `json:"hybrid_mbr"`
	BootEntries []BootImage `json:"boot_entries"`
	Files       int         `json:"files"`
	// BIOSCmdline is the command line of the first GRUB menu entry (BIOS boot), when boot/grub/grub.cfg has one.
	BIOSCmdline string `json:"bios_cmdline,omitempty"`
	// SecureBootKeys is set when the image carries keys for systemd-boot to enrol (loader/keys/*/*.auth).
	SecureBootKeys bool `json:"secure_boot_keys"`
}

// BootImage is an El Torito boot catalogue entry.
type BootImage struct {
	Platform string `json:"platform"` // "x86 BIOS", "EFI", …
	Bootable bool   `json:"bootable"`
	Media    string `json:"media"`
	// Offset and Size locate the boot image (Size is what the firmware loads; 0 for "to the end").
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}

// DiskInfo describes a partitioned disk image.
type DiskInfo struct {
	// Path is the disk's name inside the asset (a tar member); empty when it is the asset or its virtual disk.
	Path       string `json:"path,omitempty"`
	Table      string `json:"table"` // "gpt" or "mbr"
	Size       int64  `json:"size"`
	SectorSize int    `json:"sector_size"`
	DiskGUID   string `json:"disk_guid,omitempty"`
	// BIOSBootCode is set when the MBR carries boot code (GRUB's boot.img: the disk boots on BIOS).
	BIOSBootCode bool        `json:"bios_boot_code"`
	Partitions   []Partition `json:"partitions"`
}

// Partition is a used partition table entry.
type Partition struct {
	Index int `json:"index"`
	// Name is the GPT partition label (Talos: EFI, BIOS, BOOT, META, STATE, EPHEMERAL).
	Name string `json:"name,omitempty"`
	// Type is the GPT type GUID or the MBR type byte ("0x83"); TypeName names the common ones.
	Type     string `json:"type"`
	TypeName string `json:"type_name,omitempty"`
	Offset   int64  `json:"offset"`
	Size     int64  `json:"size"`
	// Bootable is the MBR active flag, or the GPT legacy BIOS bootable attribute.
	Bootable bool `json:"bootable"`
}

// VirtualDiskInfo describes the container of a virtual disk.
type VirtualDiskInfo struct {
	// Path is the disk's name inside the asset (an OVA member); empty when it is the asset.
	Path   string `json:"path,omitempty"`
	Format string `json:"format"` // "qcow2", "vhd", "vmdk"
	// Subformat is the qcow2 version ("v3"), the VHD disk type ("fixed", "dynamic") or the VMDK create type
	// ("streamOptimized").
	Subformat   string `json:"subformat,omitempty"`
	VirtualSize int64  `json:"virtual_size"`
	// ClusterSize is the qcow2 cluster or the VMDK grain, in bytes.
	ClusterSize int64 `json:"cluster_size,omitempty"`
	// Compression is how clusters or grains may be compressed ("zlib", "zstd", "deflate").
	Compression string `json:"compression,omitempty"`
	BackingFile string `json:"backing_file,omitempty"`
	Creator     string `json:"creator,omitempty"` // the VHD creator application
}

// OVAInfo describes an OVF package.
type OVAInfo struct {
	Descriptor string     `json:"descriptor"`
	Entries    []TarEntry `json:"entries"`
	// Verified counts the files whose manifest digest was checked.
	Verified int `json:"verified"`
}

// InstallerInfo describes an installer image tarball.
type InstallerInfo struct {
	Tags       []string    `json:"tags"`
	Platform   string      `json:"platform"` // "linux/amd64"
	Entrypoint []string    `json:"entrypoint,omitempty"`
	Layers     []LayerInfo `json:"layers"`
}

// LayerInfo is one image layer, bottom first; its digest and diff ID were verified.
type LayerInfo struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Files  int    `json:"files"`
}

// TarInfo lists a tar archive's members (the first maxTarEntries of them).
type TarInfo struct {
	Entries []TarEntry `json:"entries"`
	Count   int        `json:"count"`
}

// TarEntry is a tar member.
type TarEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// maxTarEntries bounds the members a TarInfo lists.
const maxTarEntries = 1000

// headSize is how much of the start of an asset is read to tell its kind.
const headSize = 64 << 10

// File inspects the asset at path: a regular file or a block device. Errors name the file.
func File(path string) (Report, error) {
	rep := Report{Path: path}

	f, err := os.Open(path)
	if err != nil {
		return rep, err
	}
	defer f.Close()

	st, err := f.Stat()
	if err != nil {
		return rep, err
	}

	size := st.Size()

	switch {
	case st.IsDir():
		return rep, fmt.Errorf("%s: is a directory", path)
	case !st.Mode().IsRegular():
		// A block device (a USB stick written with dd) has no size in its file info.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return rep, fmt.Errorf("%s: size: %w", path, err)
		}
	}

	rep, err = Asset(f, size)
	rep.Path = path

	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}

	return rep, nil
}

// Asset inspects the size bytes of r: it tells the asset's kind from its content, checks its structure with the
// checker of that kind (and of what it holds: the UKI of an ISO, the initramfs of a UKI, the disk of a VHD, …) and
// summarises what it found. The error of a failed check is returned with what was found before it.
func Asset(r io.ReaderAt, size int64) (Report, error) {
	rep := Report{Size: size}

	if size <= 0 {
		return rep, malformed("empty file")
	}

	head := make([]byte, min(size, headSize))
	if err := readAt(r, head, 0, "start of file"); err != nil {
		return rep, err
	}

	var err error

	switch {
	case isISO(r, size):
		rep.Kind = KindISO
		err = rep.iso(r, size)
	case isVHD(r, size, head):
		rep.Kind = KindVHD
		err = rep.vhd(r, size)
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		rep.Kind = KindQCOW2
		err = rep.qcow2(io.NewSectionReader(r, 0, size), "")
	case bytes.HasPrefix(head, []byte("KDMV")):
		rep.Kind = KindVMDK
		err = rep.vmdk(io.NewSectionReader(r, 0, size))
	case bytes.HasPrefix(head, []byte("MZ")):
		err = rep.pe(r, size, head, "")
	case FormatOf(head) != FormatNone:
		err = rep.compressed(r, size, FormatOf(head))
	case isCPIOMagic(head):
		rep.Kind = KindInitramfs
		err = rep.initramfs(io.NewSectionReader(r, 0, size), "")
	case isTar(head):
		err = rep.tarFile(r, size, head)
	case isARM64Image(head):
		rep.Kind, rep.Arch = KindKernel, "arm64"
	case hasMBRSignature(head):
		rep.Kind = KindDisk
		err = rep.disk(r, size, "")
	default:
		err = unrecognised("", head)
	}

	return rep, err
}

func unrecognised(what string, head []byte) error {
	head = head[:min(len(head), 16)]

	start := fmt.Sprintf("% x", head)
	if printable(head) {
		start = fmt.Sprintf("%q", head)
	}

	return malformed("unrecognised %scontent (starts with %s): not an ISO, UKI, kernel, initramfs, disk image, qcow2, VHD, "+
		"VMDK, OVA, installer or tar, plain or compressed with xz, zstd or gzip", what, start)
}

func printable(b []byte) bool {
	for _, c := range b {
		if (c < ' ' || c > '~') && c != '\n' && c != '\t' && c != '\r' {
			return false
		}
	}

	return len(b) > 0
}

func isISO(r io.ReaderAt, size int64) bool {
	var id [5]byte

	return size >= 17*isoSector && readAt(r, id[:], 16*isoSector+1, "iso") == nil && string(id[:]) == "CD001"
}

func isVHD(r io.ReaderAt, size int64, head []byte) bool {
	var cookie [8]byte

	if bytes.HasPrefix(head, []byte("conectix")) {
		return true // the footer copy of a dynamic disk
	}

	return size >= 512 && readAt(r, cookie[:], size-512, "vhd footer") == nil && string(cookie[:]) == "conectix"
}

func isTar(head []byte) bool {
	return len(head) >= 512 && bytes.HasPrefix(head[257:], []byte("ustar"))
}

func hasMBRSignature(head []byte) bool {
	return len(head) >= 512 && head[510] == 0x55 && head[511] == 0xaa
}

// isARM64Image reports the arm64 kernel Image header magic "ARM\x64" (without an EFI stub the file does not start
// with "MZ").
func isARM64Image(head []byte) bool {
	return len(head) >= 64 && string(head[0x38:0x3c]) == "ARM\x64"
}

// iso reads an ISO: the volume, the boot catalogue, GRUB's command line, and the UKI (or else the initramfs).
func (rep *Report) iso(r io.ReaderAt, size int64) error {
	iso, err := ISO(r, size)
	if err != nil {
		return err
	}

	info := &ISOInfo{
		VolumeID: iso.VolumeID, Joliet: iso.Joliet, RockRidge: iso.RockRidge, HybridMBR: iso.HybridMBR,
		Files: len(iso.Files), BootEntries: []BootImage{},
	}
	rep.ISO = info

	for _, e := range iso.BootEntries {
		info.BootEntries = append(info.BootEntries, BootImage{
			Platform: e.PlatformName, Bootable: e.Bootable, Media: e.Media, Offset: e.Offset(), Size: int64(e.SectorCount) * 512,
		})
	}

	if m := isoVersionRE.FindStringSubmatch(iso.VolumeID); m != nil {
		rep.TalosVersion = fmt.Sprintf("v%s.%s.%s", m[1], m[2], m[3])
	}

	fsys, err := OpenISO(r, size)
	if err != nil {
		return err
	}

	var ukis, initramfs []string

	for _, p := range iso.Files {
		lower := strings.ToLower(p)

		switch {
		case strings.HasPrefix(lower, "efi/linux/") && strings.HasSuffix(lower, ".efi"):
			ukis = append(ukis, p)
		case strings.HasPrefix(lower, "boot/") && strings.HasPrefix(path.Base(lower), "initramfs"):
			initramfs = append(initramfs, p)
		case lower == "efi/boot/bootx64.efi":
			rep.Arch = "amd64"
		case lower == "efi/boot/bootaa64.efi":
			rep.Arch = "arm64"
		case strings.HasPrefix(lower, "loader/keys/") && strings.HasSuffix(lower, ".auth"):
			info.SecureBootKeys = true
		}
	}

	if info.BIOSCmdline, err = grubCmdline(fsys); err != nil {
		return err
	}

	switch {
	case len(ukis) > 0:
		if len(ukis) > 1 {
			rep.note("the ISO holds %d UKIs (%s): only the first is reported", len(ukis), strings.Join(ukis, ", "))
		}

		err = rep.isoFile(fsys, ukis[0], func(f io.ReaderAt, n int64) error {
			head := make([]byte, min(n, headSize))
			if err := readAt(f, head, 0, "start of file"); err != nil {
				return err
			}

			return rep.pe(f, n, head, ukis[0])
		})
		rep.Kind = KindISO // pe sets the kind of what it read
	case len(initramfs) > 0:
		err = rep.isoFile(fsys, initramfs[0], func(f io.ReaderAt, n int64) error {
			return rep.initramfs(io.NewSectionReader(f, 0, n), initramfs[0])
		})
	default:
		rep.note("no UKI (EFI/Linux/*.efi) or initramfs (boot/initramfs*) in the ISO: command line and extensions unknown")
	}

	if rep.Cmdline == "" {
		rep.Cmdline = info.BIOSCmdline
	}

	return err
}

var isoVersionRE = regexp.MustCompile(`^TALOS_V(\d+)_(\d+)_(\d+)$`)

func (rep *Report) isoFile(fsys *ISOFS, name string, fn func(io.ReaderAt, int64) error) error {
	f, err := fsys.Open(name)
	if err != nil {
		return fmt.Errorf("iso file %s: %w", name, err)
	}
	defer f.Close()

	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("iso file %s: %w", name, err)
	}

	ra, ok := f.(io.ReaderAt)
	if !ok {
		return fmt.Errorf("iso file %s: no random access", name)
	}

	if err = fn(ra, st.Size()); err != nil {
		return fmt.Errorf("iso file %s: %w", name, err)
	}

	return nil
}

// grubCmdline returns the arguments of the first "linux" line of boot/grub/grub.cfg, if there is one.
func grubCmdline(fsys *ISOFS) (string, error) {
	f, err := fsys.Open("boot/grub/grub.cfg")
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}

	if err != nil {
		return "", fmt.Errorf("iso file boot/grub/grub.cfg: %w", err)
	}
	defer f.Close()

	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && (fields[0] == "linux" || fields[0] == "linuxefi") {
			return strings.Join(fields[2:], " "), nil
		}
	}

	if err = sc.Err(); err != nil {
		return "", fmt.Errorf("iso file boot/grub/grub.cfg: %w", err)
	}

	return "", nil
}

// pe reads a PE file: a UKI (with its initramfs), a kernel or another EFI executable. It sets the report's kind.
func (rep *Report) pe(r io.ReaderAt, size int64, head []byte, where string) error {
	u, err := peFile(r)
	if err != nil {
		rep.Kind = KindPE

		return err
	}

	rep.setPE(u, where)

	switch {
	case u.Has(".linux"):
		rep.Kind = KindUKI

		initrd := slices.IndexFunc(u.Sections, func(s PESection) bool { return s.Name == ".initrd" })
		if initrd < 0 {
			rep.note("the UKI has no .initrd section: extensions unknown")

			return nil
		}

		s := u.Sections[initrd]

		n := int64(s.Size)
		if s.VirtualSize > 0 && s.VirtualSize < s.Size {
			n = int64(s.VirtualSize)
		}

		if err = rep.initramfs(io.NewSectionReader(r, int64(s.Offset), n), joinWhere(where, ".initrd")); err != nil {
			return fmt.Errorf("section .initrd: %w", err)
		}
	case len(head) >= 0x210 && string(head[0x202:0x206]) == "HdrS":
		rep.Kind = KindKernel
		rep.KernelVersion = x86KernelVersion(r, size, head)
	case isARM64Image(head):
		rep.Kind = KindKernel
	default:
		rep.Kind = KindPE
	}

	return nil
}

func joinWhere(where, what string) string {
	if where == "" {
		return what
	}

	return where + ":" + what
}

// x86KernelVersion reads the kernel_version string of a bzImage setup header (boot protocol 2.00+).
func x86KernelVersion(r io.ReaderAt, size int64, head []byte) string {
	ptr := binary.LittleEndian.Uint16(head[0x20e:])
	if ptr == 0 {
		return ""
	}

	buf := make([]byte, 256)

	n, _ := r.ReadAt(buf, min(int64(ptr)+0x200, size))
	if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
		n = i
	}

	fields := strings.Fields(string(buf[:n]))
	if len(fields) == 0 || !strings.ContainsAny(fields[0], "0123456789") {
		return ""
	}

	return fields[0]
}

// setPE fills the report from a PE file found at where.
func (rep *Report) setPE(u UKIReport, where string) {
	info := &PEInfo{
		Path: where, Machine: u.Machine, UKI: u.Has(".linux"), Signed: u.Signed, SignatureSize: u.SignatureSize,
		Sections: []Section{}, OS: osReleaseField(u.OSRelease, "PRETTY_NAME"),
	}

	for _, s := range u.Sections {
		n := s.Size
		if s.VirtualSize > 0 && s.VirtualSize < s.Size {
			n = s.VirtualSize
		}

		info.Sections = append(info.Sections, Section{Name: s.Name, Offset: int64(s.Offset), Size: int64(n)})
	}

	for _, p := range u.Profiles {
		info.Profiles = append(info.Profiles, Profile{ID: p.ID, Title: p.Title, Cmdline: p.Cmdline, OwnCmdline: p.OwnCmdline})
	}

	for line := range strings.SplitSeq(u.SBAT, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			info.SBAT = append(info.SBAT, line)
		}
	}

	rep.PE = info

	if strings.HasPrefix(u.Machine, "0x") {
		rep.Arch = ""
	} else {
		rep.Arch = u.Machine
	}

	if info.UKI {
		rep.Cmdline = u.Cmdline
		rep.KernelVersion = u.Uname

		if osReleaseField(u.OSRelease, "ID") == "talos" {
			rep.TalosVersion = osReleaseField(u.OSRelease, "VERSION_ID")
		}
	}
}

// osReleaseField returns KEY=value from os-release text.
func osReleaseField(text, key string) string {
	return profileField(text, key)
}

// initramfs reads an initramfs found at where and its extensions.yaml.
func (rep *Report) initramfs(r io.Reader, where string) error {
	ir, err := Initramfs(r, extensionsYAML)
	if err != nil {
		rep.Initramfs = initramfsInfo(ir, where)

		return err
	}

	return rep.setInitramfs(ir, where)
}

// setInitramfs fills the report from an initramfs read without error.
func (rep *Report) setInitramfs(ir InitramfsReport, where string) error {
	rep.Initramfs = initramfsInfo(ir, where)

	return rep.extensions(ir.Contents[extensionsYAML])
}

func initramfsInfo(ir InitramfsReport, where string) *InitramfsInfo {
	info := &InitramfsInfo{Path: where, Members: []MemberInfo{}, Files: len(ir.Files())}
	for _, m := range ir.Members {
		info.Members = append(info.Members, MemberInfo{
			Offset: m.Offset, Size: m.Size, Compression: m.Compression, XZCheck: m.XZCheck,
			UncompressedSize: m.Uncompressed, Entries: len(m.Entries),
		})
		info.UncompressedSize += m.Uncompressed
	}

	return info
}

const extensionsYAML = "extensions.yaml"

// extensions parses the extensions.yaml the Talos imager writes into the initramfs: one layer per extension.
func (rep *Report) extensions(data []byte) error {
	rep.Extensions = []Extension{}

	if data == nil {
		return nil
	}

	var doc struct {
		Layers []struct {
			Image    string `yaml:"image"`
			Metadata struct {
				Name    string `yaml:"name"`
				Version string `yaml:"version"`
				Author  string `yaml:"author"`
			} `yaml:"metadata"`
		} `yaml:"layers"`
	}

	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", extensionsYAML, markMalformed(err))
	}

	for _, l := range doc.Layers {
		m := l.Metadata
		if m.Name == "schematic" {
			rep.SchematicID = m.Version

			continue
		}

		rep.Extensions = append(rep.Extensions, Extension{Name: m.Name, Version: m.Version, Author: m.Author, Image: l.Image})
	}

	return nil
}

// disk reads the partition table of a disk image of size bytes found at where.
func (rep *Report) disk(r io.ReaderAt, size int64, where string) error {
	mbr, err := MBR(r)
	if err != nil {
		return err
	}

	info := &DiskInfo{Path: where, Table: "mbr", Size: size, SectorSize: 512, BIOSBootCode: mbr.BootCode, Partitions: []Partition{}}
	rep.Disk = info

	defer rep.note("file systems are not read: for the Talos version, command line and extensions, inspect the ISO, UKI " +
		"or installer of the same schematic")

	if !mbr.Protective {
		for _, p := range mbr.Partitions {
			info.Partitions = append(info.Partitions, Partition{
				Index: p.Index, Type: fmt.Sprintf("%#02x", p.Type), TypeName: mbrTypeNames[p.Type], Bootable: p.Bootable,
				Offset: int64(p.FirstLBA) * 512, Size: int64(p.Sectors) * 512,
			})
		}

		return nil
	}

	gpt, err := GPT(r, size)
	if err != nil {
		return err
	}

	info.Table, info.SectorSize, info.DiskGUID = "gpt", gpt.SectorSize, gpt.DiskGUID

	for _, p := range gpt.Partitions {
		info.Partitions = append(info.Partitions, Partition{
			Index: p.Index, Name: p.Name, Type: p.Type, TypeName: p.TypeName, Offset: p.Offset, Size: p.Size,
			Bootable: p.Attributes&(1<<2) != 0,
		})
	}

	return nil
}

var mbrTypeNames = map[byte]string{
	0x0b: "FAT32", 0x0c: "FAT32 (LBA)", 0x0e: "FAT16 (LBA)", 0x83: "Linux", 0xef: "EFI System", 0xee: "GPT protective",
}

// virtualDisk reads the partition table of a virtual disk's data when it has one.
func (rep *Report) virtualDisk(r io.ReaderAt, size int64) error {
	var head [512]byte
	if err := readAt(r, head[:], 0, "virtual disk data"); err != nil {
		return err
	}

	if !hasMBRSignature(head[:]) {
		rep.note("the virtual disk has no partition table")

		return nil
	}

	return rep.disk(r, size, "")
}

func (rep *Report) vhd(r io.ReaderAt, size int64) error {
	v, err := VHD(r, size)

	rep.VirtualDisk = &VirtualDiskInfo{Format: "vhd", Subformat: v.DiskType, VirtualSize: int64(v.CurrentSize), Creator: v.CreatorApp}
	if err != nil {
		return err
	}

	if v.DiskType != "fixed" {
		rep.note("the blocks of a %s VHD are not mapped: its partitions are not read", v.DiskType)

		return nil
	}

	return rep.virtualDisk(io.NewSectionReader(r, 0, size-512), size-512)
}

func (rep *Report) qcow2(r io.Reader, where string) error {
	q, err := QCOW2(r)
	if err != nil {
		return err
	}

	rep.VirtualDisk = &VirtualDiskInfo{
		Path: where, Format: "qcow2", Subformat: fmt.Sprintf("v%d", q.Version), VirtualSize: int64(q.VirtualSize),
		ClusterSize: q.ClusterSize, Compression: q.CompressionType, BackingFile: q.BackingFile,
	}
	rep.note("the clusters of a qcow2 image are not mapped: its partitions are not read")

	return nil
}

func (rep *Report) vmdk(r io.Reader) error {
	v, err := VMDK(r)
	if err != nil {
		return err
	}

	rep.setVMDK(v)
	rep.note("the grains of a VMDK are not mapped: its partitions are not read")

	return nil
}

func (rep *Report) setVMDK(v VMDKReport) {
	info := &VirtualDiskInfo{
		Path: v.Name, Format: "vmdk", Subformat: v.CreateType, VirtualSize: v.CapacityBytes, ClusterSize: int64(v.GrainSize) * 512,
	}
	if v.Compressed {
		info.Compression = "deflate"
	}

	rep.VirtualDisk = info
}

// compressed reads a file compressed as a whole, through to its end, and what the decompressed data is.
func (rep *Report) compressed(r io.ReaderAt, size int64, f Format) error {
	chain := newMemberChain(io.NewSectionReader(r, 0, size), f)
	defer chain.Close()

	cnt := &countingReader{r: chain}
	br := bufio.NewReaderSize(cnt, headSize)

	inner, err := br.Peek(headSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}

	if isCPIOMagic(inner) {
		// An initramfs is walked member by member from the start of the file.
		rep.Kind = KindInitramfs

		return rep.initramfs(io.NewSectionReader(r, 0, size), "")
	}

	rep.Compression = f

	switch {
	case bytes.HasPrefix(inner, []byte("QFI\xfb")):
		rep.Kind = KindQCOW2
		err = rep.qcow2(br, "")
	case isTar(inner):
		err = rep.tarStream(br, inner)
	case hasMBRSignature(inner):
		rep.Kind = KindDisk

		var rt *retained
		if rt, err = retain(br, retainedBytes); err == nil {
			err = rep.disk(rt, rt.size, "")
		}
	case len(inner) > 16*isoSector+6 && string(inner[16*isoSector+1:16*isoSector+6]) == "CD001":
		rep.Kind = KindISO
		rep.note("a compressed ISO is only decompressed: decompress it to inspect the image")
	case isARM64Image(inner), len(inner) >= 0x210 && string(inner[0x202:0x206]) == "HdrS":
		rep.Kind = KindKernel
		if isARM64Image(inner) {
			rep.Arch = "arm64"
		}

		rep.note("a compressed kernel is only decompressed: its PE header is not read")
	default:
		return unrecognised(string(f)+"-compressed ", inner)
	}

	if err != nil {
		return err
	}

	// Read to the end: every member's integrity check is verified, and the size is known.
	if _, err = io.Copy(io.Discard, br); err != nil {
		return err
	}

	rep.UncompressedSize = cnt.n

	return nil
}

// tarFile reads an uncompressed tar: an OVA, an installer image, or another archive.
func (rep *Report) tarFile(r io.ReaderAt, size int64, head []byte) error {
	first, err := tar.NewReader(bytes.NewReader(head)).Next()
	if err == nil && path.Ext(first.Name) == ".ovf" {
		rep.Kind = KindOVA

		return rep.ova(io.NewSectionReader(r, 0, size))
	}

	// A docker-save tarball has a manifest.json, often as its last member.
	tr := tar.NewReader(io.NewSectionReader(r, 0, size))

	for {
		h, err := tr.Next()
		if err != nil {
			break // the archive is read in full below, which reports the error
		}

		if cleanName(h.Name) == "manifest.json" {
			rep.Kind = KindInstaller

			return rep.installer(func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(r, 0, size)), nil })
		}
	}

	return rep.tarStream(io.NewSectionReader(r, 0, size), head)
}

// tarStream reads a tar from a stream: an OVA, or any other archive whose disk image members it reads.
func (rep *Report) tarStream(r io.Reader, head []byte) error {
	if first, err := tar.NewReader(bytes.NewReader(head)).Next(); err == nil && path.Ext(first.Name) == ".ovf" {
		rep.Kind = KindOVA

		return rep.ova(r)
	}

	rep.Kind = KindTar
	info := &TarInfo{Entries: []TarEntry{}}
	rep.Tar = info

	tr := tar.NewReader(r)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return fmt.Errorf("tar member %d: %w", info.Count+1, asTarError(err))
		}

		info.Count++
		if len(info.Entries) < maxTarEntries {
			info.Entries = append(info.Entries, TarEntry{Name: h.Name, Size: h.Size})
		}

		if cleanName(h.Name) == "manifest.json" {
			rep.note("a docker-save tarball inside a compressed file is only listed: decompress it to inspect the image")
		}

		// GCP's disk.raw is a GNU sparse member: its holes read as zeros.
		if (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeGNUSparse) || rep.Disk != nil || rep.VirtualDisk != nil {
			continue
		}

		if err = rep.tarMember(h, tr); err != nil {
			return fmt.Errorf("tar member %s: %w", h.Name, err)
		}
	}

	if info.Count == 0 {
		return malformed("tar: no members")
	}

	return nil
}

// tarMember reads a tar member that is a disk image.
func (rep *Report) tarMember(h *tar.Header, r io.Reader) error {
	br := bufio.NewReaderSize(r, 4096+512)
	head, _ := br.Peek(4096 + 512)

	switch {
	case hasMBRSignature(head):
		rt, err := retain(br, retainedBytes)
		if err != nil {
			return asTarError(err)
		}

		return rep.disk(rt, rt.size, h.Name)
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return rep.qcow2(br, h.Name)
	}

	return nil
}

func (rep *Report) ova(r io.Reader) error {
	o, err := OVA(r)

	info := &OVAInfo{Descriptor: o.OVF, Entries: []TarEntry{}}
	for _, e := range o.Entries {
		info.Entries = append(info.Entries, TarEntry(e))
	}

	rep.OVA = info

	if len(o.VMDKs) > 0 {
		rep.setVMDK(o.VMDKs[0])
	}

	if err != nil {
		return err
	}

	info.Verified = len(o.Manifest)
	rep.note("the grains of a VMDK are not mapped: its partitions are not read")

	return nil
}

// installer reads an installer image and the UKI (or the initramfs) its layers carry under usr/install/.
func (rep *Report) installer(opener func() (io.ReadCloser, error)) error {
	var (
		uki       *Report
		initramfs *Report
	)

	visit := func(layer int, h *tar.Header, r io.Reader) error {
		name := cleanName(h.Name)
		if !strings.HasPrefix(name, "usr/install/") || h.Typeflag != tar.TypeReg {
			return nil
		}

		switch base := path.Base(name); {
		case base == "vmlinuz.efi":
			u, ir, err := peStream(r, h.Size, extensionsYAML)
			if err != nil {
				return err
			}

			uki = &Report{}
			uki.setPE(u, name)
			uki.PE.Layer = layer

			if ir != nil {
				if err = uki.setInitramfs(*ir, name+":.initrd"); err != nil {
					return err
				}
			}
		case strings.HasPrefix(base, "initramfs"):
			initramfs = &Report{}
			if err := initramfs.initramfs(r, name); err != nil {
				return err
			}
		}

		return nil
	}

	ins, err := installerTar("installer tarball", opener, visit)

	info := &InstallerInfo{Tags: ins.Tags, Entrypoint: ins.Entrypoint, Layers: []LayerInfo{}}
	info.Platform = strings.Trim(ins.OS+"/"+ins.Architecture+"/"+ins.Variant, "/")

	for _, l := range ins.Layers {
		info.Layers = append(info.Layers, LayerInfo{Digest: l.Digest, Size: l.Size, Files: len(l.Files)})
	}

	rep.Installer, rep.Arch = info, ins.Architecture

	if err != nil {
		return err
	}

	if uki != nil {
		rep.PE, rep.Cmdline, rep.KernelVersion, rep.TalosVersion = uki.PE, uki.Cmdline, uki.KernelVersion, uki.TalosVersion
	}

	// The UKI's initramfs wins over a separate one.
	for _, found := range []*Report{initramfs, uki} {
		if found != nil && found.Initramfs != nil {
			rep.Initramfs, rep.Extensions, rep.SchematicID = found.Initramfs, found.Extensions, found.SchematicID
		}
	}

	if rep.TalosVersion == "" && len(ins.Tags) > 0 {
		if _, tag, ok := strings.Cut(ins.Tags[0][strings.LastIndexByte(ins.Tags[0], '/')+1:], ":"); ok && tagVersionRE.MatchString(tag) {
			rep.TalosVersion = tag
		}
	}

	if uki == nil && initramfs == nil {
		rep.note("no UKI (usr/install/*/vmlinuz.efi) or initramfs in the layers: command line and extensions unknown")
	}

	return nil
}

var tagVersionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$`)

func (rep *Report) note(format string, args ...any) {
	rep.Notes = append(rep.Notes, fmt.Sprintf(format, args...))
}
