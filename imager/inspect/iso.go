package inspect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// isoSector is the CD-ROM sector: volume descriptors and El Torito addresses count in it.
const isoSector = 2048

// ISOReport describes an ISO 9660 image.
type ISOReport struct {
	VolumeID string
	// BlockSize is the logical block size (2048 in practice) and VolumeBlocks the volume size in blocks.
	BlockSize    int
	VolumeBlocks uint32
	Joliet       bool
	RockRidge    bool
	// HybridMBR is set when sector 0 carries an MBR boot signature (isohybrid), so the image also boots as a disk.
	HybridMBR bool
	// BootCatalog is the sector of the El Torito boot catalog; 0 when the image has no El Torito boot record.
	BootCatalog uint32
	BootEntries []BootEntry
	// Files lists every regular file, "/"-separated without a leading slash, under the names ISOFS presents.
	Files []string
}

// BootEntry is an El Torito boot catalog entry.
type BootEntry struct {
	// Platform is 0 for x86 BIOS, 0xEF for EFI.
	Platform     byte
	PlatformName string
	Bootable     bool
	// Media is the emulation: "no emulation", "1.2M floppy", "1.44M floppy", "2.88M floppy" or "hard disk".
	Media       string
	LoadSegment uint16
	SystemType  byte
	// SectorCount is the number of 512-byte sectors loaded at boot (for EFI, often the whole FAT image or 1).
	SectorCount uint16
	// LoadLBA is the 2048-byte sector where the boot image starts.
	LoadLBA uint32
}

// Offset is the byte offset of the boot image in the ISO.
func (e BootEntry) Offset() int64 { return int64(e.LoadLBA) * isoSector }

// Platform IDs of El Torito.
const (
	PlatformBIOS byte = 0x00
	PlatformPPC  byte = 0x01
	PlatformMac  byte = 0x02
	PlatformEFI  byte = 0xef
)

var platformNames = map[byte]string{PlatformBIOS: "x86 BIOS", PlatformPPC: "PowerPC", PlatformMac: "Mac", PlatformEFI: "EFI"}

var mediaNames = []string{"no emulation", "1.2M floppy", "1.44M floppy", "2.88M floppy", "hard disk"}

// ISO checks the volume descriptors, the El Torito boot catalog and the directory tree of an ISO 9660 image of
// size bytes. Use OpenISO to read files from it.
func ISO(r io.ReaderAt, size int64) (ISOReport, error) {
	fsys, err := OpenISO(r, size)
	if err != nil {
		return ISOReport{}, err
	}

	rep := fsys.vol

	var mbr [2]byte
	if err = readAt(r, mbr[:], 510, "MBR signature"); err != nil {
		return rep, err
	}

	rep.HybridMBR = mbr == [2]byte{0x55, 0xaa}

	if rep.BootCatalog != 0 {
		if rep.BootEntries, err = bootCatalog(r, rep.BootCatalog); err != nil {
			return rep, err
		}
	}

	// A boot image may lie past the ISO 9660 volume (Talos appends the EFI FAT image as a partition), so the
	// volume check above does not cover it.
	for i, e := range rep.BootEntries {
		if end := e.Offset() + int64(e.SectorCount)*512; end > size {
			return rep, fmt.Errorf("el torito entry %d (%s): boot image at sector %d ends at byte %d, past the %d-byte image: %w",
				i+1, e.PlatformName, e.LoadLBA, end, size, io.ErrUnexpectedEOF)
		}
	}

	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		if d.Type().IsRegular() {
			rep.Files = append(rep.Files, p)
		}

		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("iso directory tree: %w", err)
	}

	return rep, nil
}

// volumeDescriptors reads the descriptor set starting at sector 16 up to its terminator.
func (f *ISOFS) volumeDescriptors() error {
	var pvd []byte

	for sector := int64(16); ; sector++ {
		if sector == 16+64 {
			return malformed("iso: no volume descriptor set terminator in sectors 16-79")
		}

		vd := make([]byte, isoSector)
		if err := readAt(f.r, vd, sector*isoSector, fmt.Sprintf("iso volume descriptor at sector %d", sector)); err != nil {
			return err
		}

		if string(vd[1:6]) != "CD001" {
			return malformed("iso volume descriptor at sector %d: identifier %q, want \"CD001\"", sector, vd[1:6])
		}

		switch vd[0] {
		case 0: // boot record
			if strings.TrimRight(string(vd[7:39]), "\x00 ") == "EL TORITO SPECIFICATION" {
				f.vol.BootCatalog = binary.LittleEndian.Uint32(vd[71:75])
			}
		case 1:
			if pvd == nil {
				pvd = vd
			}
		case 2:
			if esc := vd[88:91]; bytes.Equal(esc, []byte("%/@")) || bytes.Equal(esc, []byte("%/C")) || bytes.Equal(esc, []byte("%/E")) {
				f.vol.Joliet = true
			}
		case 255:
			if pvd == nil {
				return malformed("iso: no primary volume descriptor before the terminator at sector %d", sector)
			}

			return f.primary(pvd)
		}
	}
}

// primary reads the primary volume descriptor.
func (f *ISOFS) primary(pvd []byte) error {
	blocks, blocksBE := binary.LittleEndian.Uint32(pvd[80:84]), binary.BigEndian.Uint32(pvd[84:88])
	bs, bsBE := binary.LittleEndian.Uint16(pvd[128:130]), binary.BigEndian.Uint16(pvd[130:132])

	switch {
	case blocks != blocksBE:
		return malformed("iso primary volume descriptor: volume size %d (LE) and %d (BE) differ", blocks, blocksBE)
	case bs != bsBE:
		return malformed("iso primary volume descriptor: block size %d (LE) and %d (BE) differ", bs, bsBE)
	case bs < 512 || bs > isoSector || bs&(bs-1) != 0:
		return malformed("iso primary volume descriptor: block size %d", bs)
	case int64(blocks)*int64(bs) > f.size:
		return fmt.Errorf("iso: volume is %d bytes, input has %d: %w", int64(blocks)*int64(bs), f.size, io.ErrUnexpectedEOF)
	}

	f.vol.VolumeID = strings.TrimRight(string(pvd[40:72]), " \x00")
	f.vol.BlockSize, f.vol.VolumeBlocks = int(bs), blocks
	f.block = int64(bs)

	root, err := f.parseRecord(pvd[156:190], true)
	if err != nil {
		return fmt.Errorf("iso root directory record: %w", err)
	}

	if !root.dir {
		return malformed("iso root directory record is not a directory")
	}

	f.root = root

	return f.detectRockRidge()
}

// bootCatalog parses the El Torito catalog: validation entry, initial entry, then section headers and entries.
func bootCatalog(r io.ReaderAt, lba uint32) ([]BootEntry, error) {
	cat := make([]byte, isoSector)
	if err := readAt(r, cat, int64(lba)*isoSector, "el torito boot catalog"); err != nil {
		return nil, err
	}

	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}

	switch {
	case cat[0] != 1:
		return nil, malformed("el torito validation entry at sector %d: header ID %#02x, want 0x01", lba, cat[0])
	case cat[30] != 0x55 || cat[31] != 0xaa:
		return nil, malformed("el torito validation entry at sector %d: key % x, want 55 aa", lba, cat[30:32])
	case sum != 0:
		return nil, malformed("el torito validation entry at sector %d: checksum does not sum to zero", lba)
	}

	initial, err := bootEntry(cat[32:64], cat[1])
	if err != nil {
		return nil, fmt.Errorf("el torito initial entry: %w", err)
	}

	entries := []BootEntry{initial}

	for off := 64; off+32 <= len(cat); {
		hdr := cat[off : off+32]
		if hdr[0] != 0x90 && hdr[0] != 0x91 {
			if allZero(hdr) {
				return entries, nil
			}

			return nil, malformed("el torito catalog offset %d: %#02x is not a section header", off, hdr[0])
		}

		off += 32

		for n := int(binary.LittleEndian.Uint16(hdr[2:4])); n > 0; n-- {
			if off+32 > len(cat) {
				return nil, malformed("el torito section overruns the catalog sector (entries in a second sector are not read)")
			}

			e, err := bootEntry(cat[off:off+32], hdr[1])
			if err != nil {
				return nil, fmt.Errorf("el torito section entry at catalog offset %d: %w", off, err)
			}

			entries = append(entries, e)

			for off += 32; off+32 <= len(cat) && cat[off] == 0x44; off += 32 {
				// Section entry extensions only refine the selection criteria.
			}
		}

		if hdr[0] == 0x91 {
			return entries, nil
		}
	}

	return entries, nil
}

func bootEntry(b []byte, platform byte) (BootEntry, error) {
	if b[0] != 0x88 && b[0] != 0x00 {
		return BootEntry{}, malformed("boot indicator %#02x, want 0x88 or 0x00", b[0])
	}

	media := b[1] & 0x0f
	if int(media) >= len(mediaNames) {
		return BootEntry{}, malformed("boot media type %d", media)
	}

	name, ok := platformNames[platform]
	if !ok {
		name = fmt.Sprintf("unknown (%#02x)", platform)
	}

	return BootEntry{
		Platform:     platform,
		PlatformName: name,
		Bootable:     b[0] == 0x88,
		Media:        mediaNames[media],
		LoadSegment:  binary.LittleEndian.Uint16(b[2:4]),
		SystemType:   b[4],
		SectorCount:  binary.LittleEndian.Uint16(b[6:8]),
		LoadLBA:      binary.LittleEndian.Uint32(b[8:12]),
	}, nil
}

var errNotDir = errors.New("not a directory")
