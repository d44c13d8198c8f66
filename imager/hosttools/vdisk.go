package hosttools

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"
)

// qemu-img writes a VHD footer with the clock (seconds since 2000) and a random unique id, and a VMDK descriptor
// with a random content id (CID). These functions replace them, in place, with values derived from
// SOURCE_DATE_EPOCH and the image's own metadata, so that one disk converts to the same bytes on every node. The ids
// are then shared by images with equal metadata, as the Talos imager already does for GPT and XFS ids
// (makefs.GUIDFromLabel): they identify nothing outside one machine.

// VHD footer layout (Microsoft "Virtual Hard Disk Image Format Specification").
const (
	vhdFooterSize   = 512
	vhdTimestampOff = 24
	vhdChecksumOff  = 64
	vhdUniqueIDOff  = 68
	vhdUniqueIDLen  = 16
)

var (
	vhdCookie = []byte("conectix")
	// vhdEpoch is where VHD timestamps count from.
	vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// normalizeVHDFooter sets a footer's timestamp to t, its unique id to a digest of the rest of the footer, and
// recomputes its checksum.
func normalizeVHDFooter(footer []byte, t time.Time) error {
	if len(footer) != vhdFooterSize || !bytes.HasPrefix(footer, vhdCookie) {
		return errors.New("no VHD footer (cookie conectix)")
	}

	secs := t.Unix() - vhdEpoch.Unix()
	if secs < 0 || secs > 1<<32-1 {
		return fmt.Errorf("%s is outside the VHD timestamp range", t.UTC().Format(time.RFC3339))
	}

	binary.BigEndian.PutUint32(footer[vhdTimestampOff:], uint32(secs))
	clear(footer[vhdChecksumOff : vhdChecksumOff+4])
	clear(footer[vhdUniqueIDOff : vhdUniqueIDOff+vhdUniqueIDLen])

	id := sha256.Sum256(append([]byte("edgefactory vhd unique id\x00"), footer...))
	copy(footer[vhdUniqueIDOff:], id[:vhdUniqueIDLen])
	// Shape it as an RFC 4122 name-based UUID, as a generated one would be.
	footer[vhdUniqueIDOff+6] = footer[vhdUniqueIDOff+6]&0x0f | 0x50
	footer[vhdUniqueIDOff+8] = footer[vhdUniqueIDOff+8]&0x3f | 0x80

	var sum uint32
	for _, b := range footer {
		sum += uint32(b)
	}

	binary.BigEndian.PutUint32(footer[vhdChecksumOff:], ^sum)

	return nil
}

// normalizeVHD rewrites the footer at the end of the VHD at path and, for dynamic and differencing disks, its copy at
// the start.
func normalizeVHD(path string, t time.Time) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close() // closed explicitly on the success path

	st, err := f.Stat()
	if err != nil {
		return err
	}

	if st.Size() < vhdFooterSize {
		return fmt.Errorf("%s: %d bytes is too small for a VHD", path, st.Size())
	}

	footer := make([]byte, vhdFooterSize)
	if _, err := f.ReadAt(footer, st.Size()-vhdFooterSize); err != nil {
		return fmt.Errorf("%s: read footer: %w", path, err)
	}

	offsets := []int64{st.Size() - vhdFooterSize}

	// Dynamic disks start with a byte-equal copy of the footer; a fixed disk starts with its data, which may look
	// like a footer but is no copy of this one.
	if st.Size() >= 2*vhdFooterSize {
		head := make([]byte, vhdFooterSize)
		if _, err := f.ReadAt(head, 0); err != nil {
			return fmt.Errorf("%s: read footer copy: %w", path, err)
		}

		if bytes.Equal(head, footer) {
			offsets = append(offsets, 0)
		}
	}

	if err := normalizeVHDFooter(footer, t); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}

	for _, off := range offsets {
		if _, err := f.WriteAt(footer, off); err != nil {
			return fmt.Errorf("%s: write footer: %w", path, err)
		}
	}

	return f.Close()
}

// vmdkCIDRE matches the content id line of a VMDK descriptor: qemu-img writes it with "%x", so 1 to 8 hex digits.
var vmdkCIDRE = regexp.MustCompile(`(?m)^CID=([0-9a-fA-F]{1,8})$`)

// normalizeVMDKDescriptor replaces, in place, the CID in an embedded descriptor (text padded with NULs to its
// fixed size) with 8 hex digits derived from the rest of the descriptor and t. It reports false when there is no
// CID line or no room for the longer line.
func normalizeVMDKDescriptor(desc []byte, t time.Time) bool {
	text := desc
	if end := bytes.IndexByte(desc, 0); end >= 0 {
		text = desc[:end]
	}

	m := vmdkCIDRE.FindSubmatchIndex(text)
	if m == nil {
		return false
	}

	h := sha256.New()
	fmt.Fprintf(h, "edgefactory vmdk cid\x00%d\x00", t.Unix())
	h.Write(text[:m[2]])
	h.Write(text[m[3]:])

	var out []byte
	out = append(out, text[:m[2]]...)
	out = fmt.Appendf(out, "%08x", binary.BigEndian.Uint32(h.Sum(nil)))
	out = append(out, text[m[3]:]...)

	if len(out) > len(desc) {
		return false
	}

	clear(desc[copy(desc, out):])

	return true
}

// VMDK sparse extent header fields (VMware "Virtual Disk Format 1.1").
const (
	vmdkDescOffsetOff = 28 // uint64, sectors
	vmdkDescSizeOff   = 36 // uint64, sectors
	vmdkHeaderLen     = 512
	vmdkMaxDescSize   = 1 << 20
)

// normalizeVMDK rewrites the CID of the descriptor embedded in the sparse VMDK at path.
func normalizeVMDK(path string, t time.Time) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close() // closed explicitly on the success path

	header := make([]byte, vmdkHeaderLen)
	if _, err := f.ReadAt(header, 0); err != nil {
		return fmt.Errorf("%s: read header: %w", path, err)
	}

	if !bytes.HasPrefix(header, []byte("KDMV")) {
		return fmt.Errorf("%s: not a sparse VMDK (magic KDMV)", path)
	}

	off := binary.LittleEndian.Uint64(header[vmdkDescOffsetOff:]) * 512
	size := binary.LittleEndian.Uint64(header[vmdkDescSizeOff:]) * 512

	if off == 0 || size == 0 || size > vmdkMaxDescSize {
		return fmt.Errorf("%s: no embedded descriptor (offset %d, size %d)", path, off, size)
	}

	desc := make([]byte, size)
	if _, err := f.ReadAt(desc, int64(off)); err != nil {
		return fmt.Errorf("%s: read descriptor: %w", path, err)
	}

	if !normalizeVMDKDescriptor(desc, t) {
		return fmt.Errorf("%s: descriptor has no CID line, or no room for it", path)
	}

	if _, err := f.WriteAt(desc, int64(off)); err != nil {
		return fmt.Errorf("%s: write descriptor: %w", path, err)
	}

	return f.Close()
}
