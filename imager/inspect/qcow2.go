package inspect

import (
	"encoding/binary"
	"fmt"
	"io"
)

// QCOW2Report describes a qcow2 image header.
type QCOW2Report struct {
	Version     uint32
	VirtualSize uint64
	ClusterBits uint32
	ClusterSize int64
	// BackingFile is empty for a standalone image.
	BackingFile string
	// CryptMethod is 0 for an unencrypted image.
	CryptMethod         uint32
	L1Size              uint32
	L1TableOffset       uint64
	RefcountTableOffset uint64
	Snapshots           uint32
	// Feature bits and refcount width exist from version 3; version 2 reports zero features and 16-bit refcounts.
	IncompatibleFeatures, CompatibleFeatures, AutoclearFeatures uint64
	RefcountBits                                                int
	HeaderLength                                                uint32
	// CompressionType is "zlib" or "zstd".
	CompressionType string
	// Extensions lists the header extension types present, in order.
	Extensions []uint32
}

const (
	qcow2IncompatDirty      = 1 << 0
	qcow2IncompatCorrupt    = 1 << 1
	qcow2IncompatCompress   = 1 << 3
	qcow2IncompatExtendedL2 = 1 << 4
)

// QCOW2 reads and checks a qcow2 header from the start of r (the image may come from a decompressor): magic
// "QFI\xfb", version 2 or 3, cluster size, L1 table large enough for the virtual size, aligned table offsets,
// header extensions and the backing file name.
func QCOW2(r io.Reader) (QCOW2Report, error) {
	cr := &countingReader{r: r}

	hdr := make([]byte, 72)
	if _, err := io.ReadFull(cr, hdr); err != nil {
		return QCOW2Report{}, fmt.Errorf("qcow2 header: %w", short(err))
	}

	be := binary.BigEndian

	if string(hdr[:4]) != "QFI\xfb" {
		return QCOW2Report{}, malformed("qcow2 header: magic % x, want 51 46 49 fb (\"QFI\\xfb\")", hdr[:4])
	}

	rep := QCOW2Report{
		Version: be.Uint32(hdr[4:]), ClusterBits: be.Uint32(hdr[20:]), VirtualSize: be.Uint64(hdr[24:]),
		CryptMethod: be.Uint32(hdr[32:]), L1Size: be.Uint32(hdr[36:]), L1TableOffset: be.Uint64(hdr[40:]),
		RefcountTableOffset: be.Uint64(hdr[48:]), Snapshots: be.Uint32(hdr[60:]),
		RefcountBits: 16, HeaderLength: 72, CompressionType: "zlib",
	}
	backingOffset, backingSize := be.Uint64(hdr[8:]), be.Uint32(hdr[16:])

	if rep.Version != 2 && rep.Version != 3 {
		return rep, malformed("qcow2 header: version %d, want 2 or 3", rep.Version)
	}

	if rep.ClusterBits < 9 || rep.ClusterBits > 21 {
		return rep, malformed("qcow2 header: cluster bits %d outside 9-21", rep.ClusterBits)
	}

	rep.ClusterSize = 1 << rep.ClusterBits

	if rep.Version == 3 {
		if err := qcow2V3(cr, &rep); err != nil {
			return rep, err
		}
	}

	if err := qcow2Tables(&rep); err != nil {
		return rep, err
	}

	if err := qcow2Extensions(cr, &rep); err != nil {
		return rep, err
	}

	if backingOffset != 0 {
		name, err := qcow2BackingFile(cr, &rep, backingOffset, backingSize)
		if err != nil {
			return rep, err
		}

		rep.BackingFile = name
	}

	return rep, nil
}

// qcow2V3 reads the version 3 header fields after the common 72 bytes.
func qcow2V3(cr *countingReader, rep *QCOW2Report) error {
	v3 := make([]byte, 32)
	if _, err := io.ReadFull(cr, v3); err != nil {
		return fmt.Errorf("qcow2 v3 header: %w", short(err))
	}

	be := binary.BigEndian
	rep.IncompatibleFeatures, rep.CompatibleFeatures = be.Uint64(v3[0:]), be.Uint64(v3[8:])
	rep.AutoclearFeatures, rep.HeaderLength = be.Uint64(v3[16:]), be.Uint32(v3[28:])

	order := be.Uint32(v3[24:])
	if order > 6 {
		return malformed("qcow2 header: refcount order %d > 6", order)
	}

	rep.RefcountBits = 1 << order

	if rep.HeaderLength < 104 || rep.HeaderLength%8 != 0 || int64(rep.HeaderLength) > rep.ClusterSize {
		return malformed("qcow2 header: header length %d", rep.HeaderLength)
	}

	if rep.IncompatibleFeatures&qcow2IncompatCorrupt != 0 {
		return malformed("qcow2 header: the image is marked corrupt (incompatible feature bit 1)")
	}

	if rep.HeaderLength > 104 {
		rest := make([]byte, rep.HeaderLength-104)
		if _, err := io.ReadFull(cr, rest); err != nil {
			return fmt.Errorf("qcow2 v3 header: %w", short(err))
		}

		if rep.IncompatibleFeatures&qcow2IncompatCompress != 0 {
			switch rest[0] {
			case 0:
			case 1:
				rep.CompressionType = "zstd"
			default:
				return malformed("qcow2 header: compression type %d", rest[0])
			}
		}
	}

	return nil
}

// qcow2Tables checks that the L1 table covers the virtual size and that tables are cluster aligned.
func qcow2Tables(rep *QCOW2Report) error {
	l2Entry := int64(8)
	if rep.IncompatibleFeatures&qcow2IncompatExtendedL2 != 0 {
		l2Entry = 16
	}

	perL1 := uint64(rep.ClusterSize/l2Entry) * uint64(rep.ClusterSize) // bytes one L1 entry maps
	if need := (rep.VirtualSize + perL1 - 1) / perL1; uint64(rep.L1Size) < need {
		return malformed("qcow2 header: L1 table of %d entries maps less than the %d-byte virtual size (needs %d)",
			rep.L1Size, rep.VirtualSize, need)
	}

	mask := uint64(rep.ClusterSize - 1)

	switch {
	case rep.L1Size > 0 && (rep.L1TableOffset == 0 || rep.L1TableOffset&mask != 0):
		return malformed("qcow2 header: L1 table offset %#x is not cluster aligned", rep.L1TableOffset)
	case rep.RefcountTableOffset == 0 || rep.RefcountTableOffset&mask != 0:
		return malformed("qcow2 header: refcount table offset %#x is not cluster aligned", rep.RefcountTableOffset)
	}

	return nil
}

// qcow2Extensions walks the header extensions that follow the header, up to the end marker.
func qcow2Extensions(cr *countingReader, rep *QCOW2Report) error {
	for {
		var ext [8]byte
		if _, err := io.ReadFull(cr, ext[:]); err != nil {
			return fmt.Errorf("qcow2 header extension at offset %d: %w", cr.n, short(err))
		}

		typ, n := binary.BigEndian.Uint32(ext[:]), int64(binary.BigEndian.Uint32(ext[4:]))
		if typ == 0 {
			return nil
		}

		padded := (n + 7) &^ 7
		if cr.n+padded > rep.ClusterSize {
			return malformed("qcow2 header extension %#08x of %d bytes at offset %d overruns the first cluster", typ, n, cr.n-8)
		}

		rep.Extensions = append(rep.Extensions, typ)

		if _, err := io.CopyN(io.Discard, cr, padded); err != nil {
			return fmt.Errorf("qcow2 header extension %#08x: %w", typ, short(err))
		}
	}
}

func qcow2BackingFile(cr *countingReader, rep *QCOW2Report, off uint64, n uint32) (string, error) {
	if n == 0 || n > 1023 || off < uint64(cr.n) || off+uint64(n) > uint64(rep.ClusterSize) {
		return "", malformed("qcow2 header: backing file name of %d bytes at offset %d", n, off)
	}

	if _, err := io.CopyN(io.Discard, cr, int64(off)-cr.n); err != nil {
		return "", fmt.Errorf("qcow2 backing file name: %w", short(err))
	}

	name := make([]byte, n)
	if _, err := io.ReadFull(cr, name); err != nil {
		return "", fmt.Errorf("qcow2 backing file name: %w", short(err))
	}

	return string(name), nil
}
