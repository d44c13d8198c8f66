package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// VHDReport describes a Virtual Hard Disk (VPC) image.
type VHDReport struct {
	// DiskType is "fixed", "dynamic" or "differencing". Azure accepts only fixed disks whose size is a whole
	// number of MiB.
	DiskType                  string
	CurrentSize, OriginalSize uint64
	Cylinders                 uint16
	Heads, SectorsPerTrack    uint8
	// CreatorApp is the four-character creator ("qemu", "qem2" when qemu-img kept the exact size, "win ", …).
	CreatorApp string
	UUID       string
}

var vhdDiskTypes = map[uint32]string{2: "fixed", 3: "dynamic", 4: "differencing"}

// VHD checks the 512-byte footer at the end of a VHD of size bytes ("conectix" cookie, checksum, version). A fixed
// disk must hold exactly CurrentSize bytes of data before the footer; a dynamic disk must start with a copy of the
// footer and have a "cxsparse" dynamic header.
func VHD(r io.ReaderAt, size int64) (VHDReport, error) {
	if size < 512 {
		return VHDReport{}, fmt.Errorf("vhd: %d bytes, smaller than the footer: %w", size, io.ErrUnexpectedEOF)
	}

	footer := make([]byte, 512)
	if err := readAt(r, footer, size-512, "vhd footer"); err != nil {
		return VHDReport{}, err
	}

	if err := vhdChecksum(footer, 64, "vhd footer"); err != nil {
		return VHDReport{}, err
	}

	be := binary.BigEndian
	rep := VHDReport{
		OriginalSize: be.Uint64(footer[40:]), CurrentSize: be.Uint64(footer[48:]),
		Cylinders: be.Uint16(footer[56:]), Heads: footer[58], SectorsPerTrack: footer[59],
		CreatorApp: strings.TrimRight(string(footer[28:32]), "\x00"), UUID: guidBigEndian(footer[68:84]),
	}

	if v := be.Uint32(footer[12:]); v != 0x00010000 {
		return rep, malformed("vhd footer: file format version %#08x, want 0x00010000", v)
	}

	typ := be.Uint32(footer[60:])
	if rep.DiskType = vhdDiskTypes[typ]; rep.DiskType == "" {
		return rep, malformed("vhd footer: disk type %d", typ)
	}

	dataOffset := be.Uint64(footer[16:])

	if rep.DiskType == "fixed" {
		if dataOffset != ^uint64(0) {
			return rep, malformed("vhd footer: fixed disk with data offset %#x, want 0xffffffffffffffff", dataOffset)
		}

		if uint64(size-512) != rep.CurrentSize {
			return rep, fmt.Errorf("vhd: fixed disk of %d bytes holds %d bytes of data: %w",
				rep.CurrentSize, size-512, vhdSizeError(uint64(size-512), rep.CurrentSize))
		}

		return rep, nil
	}

	return rep, vhdDynamic(r, footer, dataOffset, size)
}

func vhdSizeError(have, want uint64) error {
	if have < want {
		return io.ErrUnexpectedEOF
	}

	return malformed("data longer than the footer's current size")
}

// vhdDynamic checks the footer copy at offset 0 and the dynamic disk header.
func vhdDynamic(r io.ReaderAt, footer []byte, dataOffset uint64, size int64) error {
	head := make([]byte, 512)
	if err := readAt(r, head, 0, "vhd footer copy"); err != nil {
		return err
	}

	if !bytes.Equal(head, footer) {
		return malformed("vhd: the footer copy at offset 0 differs from the footer")
	}

	if dataOffset < 512 || int64(dataOffset)+1024 > size-512 {
		return malformed("vhd footer: dynamic header offset %d outside the file", dataOffset)
	}

	dyn := make([]byte, 1024)
	if err := readAt(r, dyn, int64(dataOffset), "vhd dynamic header"); err != nil {
		return err
	}

	return vhdChecksum(dyn, 36, "vhd dynamic header")
}

// vhdChecksum checks the cookie and the one's complement checksum of a footer or dynamic header.
func vhdChecksum(b []byte, at int, what string) error {
	cookie := map[string]string{"vhd footer": "conectix", "vhd dynamic header": "cxsparse"}[what]
	if string(b[:8]) != cookie {
		return malformed("%s: cookie %q, want %q", what, b[:8], cookie)
	}

	var sum uint32

	for i, c := range b {
		if i < at || i >= at+4 {
			sum += uint32(c)
		}
	}

	if stored := binary.BigEndian.Uint32(b[at:]); stored != ^sum {
		return malformed("%s: checksum %#08x, computed %#08x", what, stored, ^sum)
	}

	return nil
}

// guidBigEndian formats 16 bytes stored in network order as a GUID.
func guidBigEndian(b []byte) string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
