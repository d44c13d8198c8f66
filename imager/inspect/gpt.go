package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"unicode/utf16"
)

// MBRReport describes the master boot record in sector 0.
type MBRReport struct {
	// BootCode is set when the 440-byte boot code area is not all zero (e.g. GRUB's boot.img for BIOS boot).
	BootCode      bool
	DiskSignature uint32
	// Partitions lists the non-empty entries of the four-entry table.
	Partitions []MBRPartition
	// Protective is set when an entry has type 0xEE: the disk is GPT.
	Protective bool
}

// MBRPartition is one MBR partition table entry.
type MBRPartition struct {
	Index    int // 1-4
	Type     byte
	Bootable bool
	FirstLBA uint32
	Sectors  uint32
}

// MBR reads the master boot record: it must end in the 55 AA boot signature.
func MBR(r io.ReaderAt) (MBRReport, error) {
	var s [512]byte
	if err := readAt(r, s[:], 0, "mbr"); err != nil {
		return MBRReport{}, err
	}

	if s[510] != 0x55 || s[511] != 0xaa {
		return MBRReport{}, malformed("mbr: boot signature % x at offset 510, want 55 aa", s[510:512])
	}

	rep := MBRReport{BootCode: !allZero(s[:440]), DiskSignature: binary.LittleEndian.Uint32(s[440:])}

	for i := range 4 {
		e := s[446+16*i : 462+16*i]
		if allZero(e) {
			continue
		}

		if e[0] != 0x00 && e[0] != 0x80 {
			return rep, malformed("mbr partition %d: status %#02x, want 0x00 or 0x80", i+1, e[0])
		}

		p := MBRPartition{
			Index: i + 1, Type: e[4], Bootable: e[0] == 0x80,
			FirstLBA: binary.LittleEndian.Uint32(e[8:]), Sectors: binary.LittleEndian.Uint32(e[12:]),
		}
		rep.Partitions = append(rep.Partitions, p)
		rep.Protective = rep.Protective || p.Type == 0xee
	}

	return rep, nil
}

// GPTReport describes a GUID partition table whose primary and backup copies agree.
type GPTReport struct {
	// SectorSize is the logical sector size the header was found with: 512 or 4096.
	SectorSize int
	MBR        MBRReport
	DiskGUID   string
	// FirstUsableLBA and LastUsableLBA bound the partitions; BackupLBA is the backup header's sector, normally
	// the last one of the disk.
	FirstUsableLBA, LastUsableLBA, BackupLBA uint64
	Partitions                               []GPTPartition
}

// GPTPartition is one used partition entry.
type GPTPartition struct {
	// Index is the 1-based entry number (the N of /dev/sdaN).
	Index int
	// Type is the type GUID in upper case; TypeName names the common ones ("EFI System", "BIOS boot", …).
	Type, TypeName string
	GUID           string
	// Name is the UTF-16 partition label (Talos: EFI, BIOS, BOOT, META, STATE, EPHEMERAL).
	Name              string
	FirstLBA, LastLBA uint64
	Attributes        uint64
	// Offset and Size are in bytes.
	Offset, Size int64
}

// Partition returns the partition labelled name.
func (r GPTReport) Partition(name string) (GPTPartition, bool) {
	i := slices.IndexFunc(r.Partitions, func(p GPTPartition) bool { return p.Name == name })
	if i < 0 {
		return GPTPartition{}, false
	}

	return r.Partitions[i], true
}

// Names returns the partition labels in table order.
func (r GPTReport) Names() []string {
	names := make([]string, len(r.Partitions))
	for i, p := range r.Partitions {
		names[i] = p.Name
	}

	return names
}

var gptTypeNames = map[string]string{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM64)",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
}

// gptHeader is the part of a GPT header the checks use.
type gptHeader struct {
	myLBA, altLBA, firstUsable, lastUsable, entriesLBA uint64
	entries, entrySize, entriesCRC                     uint32
	diskGUID                                           string
}

// GPT checks the protective MBR, the primary GPT header and entries at LBA 1 (512- or 4096-byte sectors), and the
// backup header and entries, which must lie inside the size bytes of the image and agree with the primary.
func GPT(r io.ReaderAt, size int64) (GPTReport, error) {
	mbr, err := MBR(r)
	if err != nil {
		return GPTReport{}, err
	}

	rep := GPTReport{MBR: mbr}
	if !mbr.Protective {
		return rep, malformed("mbr: no protective partition (type 0xEE): not a GPT disk")
	}

	for _, ss := range []int{512, 4096} {
		var sig [8]byte
		if readAt(r, sig[:], int64(ss), "gpt signature") == nil && string(sig[:]) == "EFI PART" {
			rep.SectorSize = ss

			break
		}
	}

	if rep.SectorSize == 0 {
		return rep, malformed("gpt: no \"EFI PART\" header at LBA 1 for 512- or 4096-byte sectors")
	}

	primary, err := readGPTHeader(r, rep.SectorSize, 1, "primary")
	if err != nil {
		return rep, err
	}

	rep.DiskGUID, rep.BackupLBA = primary.diskGUID, primary.altLBA
	rep.FirstUsableLBA, rep.LastUsableLBA = primary.firstUsable, primary.lastUsable

	if rep.Partitions, err = gptEntries(r, rep.SectorSize, primary, "primary"); err != nil {
		return rep, err
	}

	if end := int64(primary.altLBA+1) * int64(rep.SectorSize); end > size {
		return rep, fmt.Errorf("gpt backup header at LBA %d ends at byte %d, past the %d-byte image: %w",
			primary.altLBA, end, size, io.ErrUnexpectedEOF)
	}

	backup, err := readGPTHeader(r, rep.SectorSize, primary.altLBA, "backup")
	if err != nil {
		return rep, err
	}

	switch {
	case backup.altLBA != 1:
		return rep, malformed("gpt backup header: alternate LBA %d, want 1", backup.altLBA)
	case backup.diskGUID != primary.diskGUID || backup.entriesCRC != primary.entriesCRC ||
		backup.entries != primary.entries || backup.entrySize != primary.entrySize ||
		backup.firstUsable != primary.firstUsable || backup.lastUsable != primary.lastUsable:
		return rep, malformed("gpt backup header disagrees with the primary")
	}

	if _, err = gptEntries(r, rep.SectorSize, backup, "backup"); err != nil {
		return rep, err
	}

	return rep, nil
}

func readGPTHeader(r io.ReaderAt, ss int, lba uint64, which string) (gptHeader, error) {
	buf := make([]byte, ss)
	if err := readAt(r, buf, int64(lba)*int64(ss), "gpt "+which+" header"); err != nil {
		return gptHeader{}, err
	}

	where := fmt.Sprintf("gpt %s header at LBA %d", which, lba)

	if string(buf[:8]) != "EFI PART" {
		return gptHeader{}, malformed("%s: signature %q, want \"EFI PART\"", where, buf[:8])
	}

	hsize := binary.LittleEndian.Uint32(buf[12:])
	if hsize < 92 || int(hsize) > ss {
		return gptHeader{}, malformed("%s: header size %d", where, hsize)
	}

	stored := binary.LittleEndian.Uint32(buf[16:])
	hdr := bytes.Clone(buf[:hsize])
	clear(hdr[16:20])

	if computed := crc32.ChecksumIEEE(hdr); computed != stored {
		return gptHeader{}, malformed("%s: CRC32 is %#08x, computed %#08x", where, stored, computed)
	}

	h := gptHeader{
		myLBA:       binary.LittleEndian.Uint64(buf[24:]),
		altLBA:      binary.LittleEndian.Uint64(buf[32:]),
		firstUsable: binary.LittleEndian.Uint64(buf[40:]),
		lastUsable:  binary.LittleEndian.Uint64(buf[48:]),
		diskGUID:    guidString(buf[56:72]),
		entriesLBA:  binary.LittleEndian.Uint64(buf[72:]),
		entries:     binary.LittleEndian.Uint32(buf[80:]),
		entrySize:   binary.LittleEndian.Uint32(buf[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(buf[88:]),
	}

	switch {
	case h.myLBA != lba:
		return h, malformed("%s: says it is at LBA %d", where, h.myLBA)
	case h.firstUsable > h.lastUsable:
		return h, malformed("%s: first usable LBA %d after last usable LBA %d", where, h.firstUsable, h.lastUsable)
	case h.entrySize < 128 || h.entrySize%8 != 0 || h.entrySize > 4096:
		return h, malformed("%s: partition entry size %d", where, h.entrySize)
	case h.entries == 0 || h.entries > 16384:
		return h, malformed("%s: %d partition entries", where, h.entries)
	}

	return h, nil
}

// gptEntries reads and checks a partition entry array and returns the used entries.
func gptEntries(r io.ReaderAt, ss int, h gptHeader, which string) ([]GPTPartition, error) {
	arr := make([]byte, int(h.entries)*int(h.entrySize))
	if err := readAt(r, arr, int64(h.entriesLBA)*int64(ss), "gpt "+which+" partition entries"); err != nil {
		return nil, err
	}

	if computed := crc32.ChecksumIEEE(arr); computed != h.entriesCRC {
		return nil, malformed("gpt %s partition entries at LBA %d: CRC32 is %#08x, computed %#08x",
			which, h.entriesLBA, h.entriesCRC, computed)
	}

	var parts []GPTPartition

	for i := range int(h.entries) {
		e := arr[i*int(h.entrySize) : (i+1)*int(h.entrySize)]
		if allZero(e[:16]) {
			continue
		}

		p := GPTPartition{
			Index:      i + 1,
			Type:       guidString(e[:16]),
			GUID:       guidString(e[16:32]),
			FirstLBA:   binary.LittleEndian.Uint64(e[32:]),
			LastLBA:    binary.LittleEndian.Uint64(e[40:]),
			Attributes: binary.LittleEndian.Uint64(e[48:]),
			Name:       utf16Name(e[56:128]),
		}
		p.TypeName = gptTypeNames[p.Type]
		p.Offset = int64(p.FirstLBA) * int64(ss)
		p.Size = int64(p.LastLBA-p.FirstLBA+1) * int64(ss)

		if p.FirstLBA > p.LastLBA || p.FirstLBA < h.firstUsable || p.LastLBA > h.lastUsable {
			return nil, malformed("gpt %s partition %d (%q): LBAs %d-%d outside the usable %d-%d",
				which, p.Index, p.Name, p.FirstLBA, p.LastLBA, h.firstUsable, h.lastUsable)
		}

		for _, q := range parts {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return nil, malformed("gpt %s partitions %d (%q) and %d (%q) overlap", which, q.Index, q.Name, p.Index, p.Name)
			}
		}

		parts = append(parts, p)
	}

	return parts, nil
}

// guidString formats a GUID stored mixed-endian, as GPT does.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)

	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}

		u = append(u, c)
	}

	return strings.TrimSpace(string(utf16.Decode(u)))
}
