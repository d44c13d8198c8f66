package inspect

import (
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// VMDKReport describes the sparse extent header and embedded descriptor of a VMDK (the disk inside an OVA).
type VMDKReport struct {
	// Name is the file name inside the OVA.
	Name    string
	Version uint32
	Flags   uint32
	// CapacityBytes is the virtual disk size; GrainSize is in 512-byte sectors.
	CapacityBytes int64
	GrainSize     uint64
	// Compressed is set when grains are deflate-compressed, as in streamOptimized disks.
	Compressed bool
	// CreateType comes from the descriptor: "streamOptimized" for VMware OVAs.
	CreateType string
	Descriptor string
}

const (
	vmdkFlagNewlineTest = 1 << 0
	vmdkFlagCompressed  = 1 << 16
	vmdkFlagMarkers     = 1 << 17
	vmdkMaxDescriptor   = 1 << 20
)

var createTypeRE = regexp.MustCompile(`(?m)^createType\s*=\s*"([^"]*)"`)

// VMDK reads the sparse extent header ("KDMV") at the start of r and the descriptor embedded after it, consuming r
// up to the end of the descriptor. A streamOptimized disk must have compressed grains and markers.
func VMDK(r io.Reader) (VMDKReport, error) {
	hdr := make([]byte, 512)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return VMDKReport{}, fmt.Errorf("vmdk header: %w", short(err))
	}

	le := binary.LittleEndian

	if string(hdr[:4]) != "KDMV" {
		return VMDKReport{}, malformed("vmdk header: magic %q, want \"KDMV\" (a sparse extent)", hdr[:4])
	}

	rep := VMDKReport{
		Version: le.Uint32(hdr[4:]), Flags: le.Uint32(hdr[8:]),
		CapacityBytes: int64(le.Uint64(hdr[12:])) * 512, GrainSize: le.Uint64(hdr[20:]),
	}
	descOff, descSize := le.Uint64(hdr[28:]), le.Uint64(hdr[36:])
	rep.Compressed = rep.Flags&vmdkFlagCompressed != 0

	switch {
	case rep.Version < 1 || rep.Version > 3:
		return rep, malformed("vmdk header: version %d", rep.Version)
	case rep.GrainSize < 8 || rep.GrainSize&(rep.GrainSize-1) != 0:
		return rep, malformed("vmdk header: grain size %d sectors is not a power of two ≥ 8", rep.GrainSize)
	case rep.Flags&vmdkFlagNewlineTest != 0 && string(hdr[73:77]) != "\n \r\n":
		return rep, malformed("vmdk header: newline test bytes % x, want 0a 20 0d 0a (mangled by a text-mode transfer)", hdr[73:77])
	case rep.Compressed && le.Uint16(hdr[77:]) != 1:
		return rep, malformed("vmdk header: compression algorithm %d, want 1 (deflate)", le.Uint16(hdr[77:]))
	case descOff == 0 || descSize == 0:
		return rep, malformed("vmdk header: no embedded descriptor")
	case descSize*512 > vmdkMaxDescriptor:
		return rep, malformed("vmdk header: descriptor of %d sectors", descSize)
	}

	if _, err := io.CopyN(io.Discard, r, int64(descOff-1)*512); err != nil {
		return rep, fmt.Errorf("vmdk descriptor at sector %d: %w", descOff, short(err))
	}

	desc := make([]byte, descSize*512)
	if _, err := io.ReadFull(r, desc); err != nil {
		return rep, fmt.Errorf("vmdk descriptor at sector %d: %w", descOff, short(err))
	}

	rep.Descriptor = strings.TrimRight(string(desc), "\x00")

	if !strings.HasPrefix(rep.Descriptor, "# Disk DescriptorFile") {
		return rep, malformed("vmdk descriptor at sector %d does not start with \"# Disk DescriptorFile\"", descOff)
	}

	if m := createTypeRE.FindStringSubmatch(rep.Descriptor); m != nil {
		rep.CreateType = m[1]
	}

	if rep.CreateType == "streamOptimized" && rep.Flags&(vmdkFlagCompressed|vmdkFlagMarkers) != vmdkFlagCompressed|vmdkFlagMarkers {
		return rep, malformed("vmdk: streamOptimized disk without compressed grains and markers (flags %#x)", rep.Flags)
	}

	return rep, nil
}
