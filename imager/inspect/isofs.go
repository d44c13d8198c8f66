package inspect

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// ISOFS is the directory tree of an ISO 9660 image as an fs.FS. Names are the Rock Ridge names when the image has
// them (xorriso writes them); otherwise ISO 9660 names with the ";1" version and a trailing "." removed, in lower
// case. Lookups ignore case and a ";N" version suffix, so "EFI/BOOT/BOOTX64.EFI;1" finds "efi/boot/bootx64.efi".
// Files opened from it implement io.ReaderAt and io.Seeker.
type ISOFS struct {
	r     io.ReaderAt
	size  int64
	block int64
	vol   ISOReport
	root  isoRecord

	susp     bool // the root carries a SUSP "SP" entry: system use areas hold SUSP entries
	suspSkip int

	mu   sync.Mutex
	dirs map[uint32][]isoRecord
}

// OpenISO reads the volume descriptors of an ISO 9660 image of size bytes and returns its directory tree.
func OpenISO(r io.ReaderAt, size int64) (*ISOFS, error) {
	f := &ISOFS{r: r, size: size, dirs: map[uint32][]isoRecord{}}
	if err := f.volumeDescriptors(); err != nil {
		return nil, err
	}

	return f, nil
}

// isoRecord is a parsed directory record.
type isoRecord struct {
	name     string // presentation name
	lba      uint32
	size     int64
	dir      bool
	multi    bool // more extents of this file follow
	hidden   bool // Rock Ridge RE: a relocated directory, listed through its CL placeholder instead
	mode     fs.FileMode
	modTime  time.Time
	hasPosix bool
}

// Directory record field offsets (ECMA-119 9.1).
const (
	drLen    = 0
	drExtent = 2
	drSize   = 10
	drDate   = 18
	drFlags  = 25
	drName   = 32
	drMin    = 33
)

// parseRecord parses one directory record; raw is exactly the record.
func (f *ISOFS) parseRecord(raw []byte, isRoot bool) (isoRecord, error) {
	if len(raw) < drMin+1 || int(raw[drLen]) != len(raw) {
		return isoRecord{}, malformed("directory record length %d", len(raw))
	}

	nameLen := int(raw[drName])
	if drMin+nameLen > len(raw) {
		return isoRecord{}, malformed("directory record name of %d bytes overruns its %d-byte record", nameLen, len(raw))
	}

	rec := isoRecord{
		lba:     binary.LittleEndian.Uint32(raw[drExtent:]),
		size:    int64(binary.LittleEndian.Uint32(raw[drSize:])),
		dir:     raw[drFlags]&0x02 != 0,
		multi:   raw[drFlags]&0x80 != 0,
		modTime: isoTime(raw[drDate : drDate+7]),
	}

	if !isRoot {
		rec.name = isoName(string(raw[drMin:drMin+nameLen]), rec.dir)
	}

	// The system use area follows the name and, after an even-length name, one padding byte.
	if suStart := drMin + nameLen + (1 - nameLen%2); f.susp && !isRoot && suStart <= len(raw) {
		su := raw[suStart:]
		if f.suspSkip <= len(su) {
			if err := f.systemUse(&rec, su[f.suspSkip:]); err != nil {
				return rec, fmt.Errorf("rock ridge entries of %q: %w", rec.name, err)
			}
		}
	}

	return rec, nil
}

// isoName turns "VMLINUZ.EFI;1" into "vmlinuz.efi" and "README.;1" into "readme".
func isoName(id string, dir bool) string {
	if !dir {
		if i := strings.LastIndexByte(id, ';'); i >= 0 {
			id = id[:i]
		}

		id = strings.TrimSuffix(id, ".")
	}

	return strings.ToLower(id)
}

func isoTime(b []byte) time.Time {
	if b[0] == 0 && b[1] == 0 {
		return time.Time{}
	}

	zone := time.FixedZone("", int(int8(b[6]))*15*60)

	return time.Date(1900+int(b[0]), time.Month(b[1]), int(b[2]), int(b[3]), int(b[4]), int(b[5]), 0, zone)
}

// detectRockRidge looks for the SUSP "SP" entry in the root's "." record, which says system use areas are SUSP.
func (f *ISOFS) detectRockRidge() error {
	data, err := f.extent(f.root)
	if err != nil {
		return fmt.Errorf("iso root directory: %w", err)
	}

	if len(data) < drMin+1 || int(data[0]) < drMin+1 || int(data[0]) > len(data) {
		return malformed("iso root directory: first record length %d", data[0])
	}

	dot := data[:data[0]]
	su := dot[drMin+1:] // "." has a one-byte name, hence no padding byte

	if len(su) >= 7 && string(su[:2]) == "SP" && su[4] == 0xbe && su[5] == 0xef {
		f.susp, f.suspSkip = true, int(su[6])

		var probe isoRecord

		f.vol.RockRidge = f.systemUse(&probe, su) == nil && probe.hasPosix
	}

	return nil
}

// systemUse applies the SUSP entries of a record (following continuation areas) to rec.
func (f *ISOFS) systemUse(rec *isoRecord, su []byte) error {
	var name strings.Builder

	hasName := false

	for hops := 0; su != nil; hops++ {
		if hops > 16 {
			return malformed("more than 16 continuation areas")
		}

		area := su
		su = nil

		for len(area) >= 4 && area[0] != 0 {
			l := int(area[2])
			if l < 4 || l > len(area) {
				return malformed("entry %q has length %d with %d bytes left", area[:2], l, len(area))
			}

			e := area[:l]
			area = area[l:]

			switch string(e[:2]) {
			case "NM":
				if l >= 5 && e[4]&0x06 == 0 { // not "." or ".."
					name.Write(e[5:])
					hasName = true
				}
			case "PX":
				if l >= 12 {
					rec.mode, rec.hasPosix = unixMode(binary.LittleEndian.Uint32(e[4:])), true
				}
			case "RE":
				rec.hidden = true
			case "CL":
				if err := f.childLink(rec, e); err != nil {
					return err
				}
			case "CE":
				next, err := f.continuation(e)
				if err != nil {
					return err
				}

				su = next
			case "ST":
				area = nil
			}
		}
	}

	if hasName {
		rec.name = name.String()
	}

	return nil
}

// continuation reads the area a CE entry points to.
func (f *ISOFS) continuation(e []byte) ([]byte, error) {
	if len(e) < 28 {
		return nil, malformed("CE entry of %d bytes", len(e))
	}

	off := int64(binary.LittleEndian.Uint32(e[4:]))*f.block + int64(binary.LittleEndian.Uint32(e[12:]))
	n := binary.LittleEndian.Uint32(e[20:])

	if n > uint32(f.block) {
		return nil, malformed("CE area of %d bytes", n)
	}

	area := make([]byte, n)
	if err := readAt(f.r, area, off, "rock ridge continuation area"); err != nil {
		return nil, err
	}

	return area, nil
}

// childLink turns the placeholder of a relocated directory into that directory.
func (f *ISOFS) childLink(rec *isoRecord, e []byte) error {
	if len(e) < 12 {
		return malformed("CL entry of %d bytes", len(e))
	}

	lba := binary.LittleEndian.Uint32(e[4:])

	dot := make([]byte, drMin+1)
	if err := readAt(f.r, dot, int64(lba)*f.block, "relocated directory"); err != nil {
		return err
	}

	rec.dir, rec.lba, rec.size = true, lba, int64(binary.LittleEndian.Uint32(dot[drSize:]))

	return nil
}

// extent reads the data of a record, checking it lies inside the image.
func (f *ISOFS) extent(rec isoRecord) ([]byte, error) {
	off := int64(rec.lba) * f.block
	if off+rec.size > f.size {
		return nil, fmt.Errorf("extent at block %d (%d bytes) ends past the image end (%d bytes): %w",
			rec.lba, rec.size, f.size, io.ErrUnexpectedEOF)
	}

	if rec.dir && rec.size > 64<<20 {
		return nil, malformed("directory of %d bytes", rec.size)
	}

	data := make([]byte, rec.size)

	return data, readAt(f.r, data, off, "extent")
}

// readDir returns the records of a directory, "." and ".." and hidden ones left out, multi-extent files merged.
func (f *ISOFS) readDir(dir isoRecord) ([]isoRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if recs, ok := f.dirs[dir.lba]; ok {
		return recs, nil
	}

	data, err := f.extent(dir)
	if err != nil {
		return nil, err
	}

	var recs []isoRecord

	for off := 0; off < len(data); {
		l := int(data[off])
		if l == 0 { // records never cross a block: the rest of this block is padding
			off = (off/int(f.block) + 1) * int(f.block)

			continue
		}

		if l < drMin+1 || off+l > len(data) {
			return nil, malformed("directory at block %d: record at offset %d has length %d (%d bytes left)",
				dir.lba, off, l, len(data)-off)
		}

		raw := data[off : off+l]
		off += l

		if raw[drName] == 1 && (raw[drMin] == 0 || raw[drMin] == 1) {
			continue // "." and ".."
		}

		rec, err := f.parseRecord(raw, false)
		if err != nil {
			return nil, fmt.Errorf("directory at block %d: %w", dir.lba, err)
		}

		if n := len(recs); n > 0 && recs[n-1].multi && recs[n-1].name == rec.name {
			prev := &recs[n-1]
			if int64(prev.lba)+(prev.size+f.block-1)/f.block != int64(rec.lba) {
				return nil, malformed("file %q: non-contiguous extents are not supported", rec.name)
			}

			prev.size += rec.size
			prev.multi = rec.multi

			continue
		}

		recs = append(recs, rec)
	}

	recs = slices.DeleteFunc(recs, func(r isoRecord) bool { return r.hidden })
	f.dirs[dir.lba] = recs

	return recs, nil
}

// Open implements fs.FS.
func (f *ISOFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}

	rec := f.root
	rec.name = "."

	if name != "." {
		for _, part := range strings.Split(name, "/") {
			if !rec.dir {
				return nil, &fs.PathError{Op: "open", Path: name, Err: errNotDir}
			}

			recs, err := f.readDir(rec)
			if err != nil {
				return nil, &fs.PathError{Op: "open", Path: name, Err: err}
			}

			i := slices.IndexFunc(recs, func(r isoRecord) bool { return matchISOName(r.name, part) })
			if i < 0 {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			}

			rec = recs[i]
		}
	}

	if rec.dir {
		recs, err := f.readDir(rec)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}

		entries := make([]fs.DirEntry, len(recs))
		for i, r := range recs {
			entries[i] = isoInfo{r}
		}

		return &isoDir{info: isoInfo{rec}, entries: entries}, nil
	}

	if int64(rec.lba)*f.block+rec.size > f.size {
		return nil, &fs.PathError{Op: "open", Path: name,
			Err: fmt.Errorf("data ends past the image end: %w", io.ErrUnexpectedEOF)}
	}

	return &isoFile{SectionReader: io.NewSectionReader(f.r, int64(rec.lba)*f.block, rec.size), info: isoInfo{rec}}, nil
}

func matchISOName(have, want string) bool {
	if strings.EqualFold(have, want) {
		return true
	}

	if i := strings.LastIndexByte(want, ';'); i >= 0 {
		want = strings.TrimSuffix(want[:i], ".")
	}

	return strings.EqualFold(have, want)
}

// isoInfo is both the fs.FileInfo and the fs.DirEntry of a record.
type isoInfo struct{ rec isoRecord }

func (i isoInfo) Name() string       { return path.Base(i.rec.name) }
func (i isoInfo) Size() int64        { return i.rec.size }
func (i isoInfo) ModTime() time.Time { return i.rec.modTime }
func (i isoInfo) IsDir() bool        { return i.rec.dir }
func (i isoInfo) Sys() any           { return nil }
func (i isoInfo) Type() fs.FileMode  { return i.Mode().Type() }

func (i isoInfo) Info() (fs.FileInfo, error) { return i, nil }

func (i isoInfo) Mode() fs.FileMode {
	mode := i.rec.mode
	if !i.rec.hasPosix {
		mode = 0o444
		if i.rec.dir {
			mode = 0o555
		}
	}

	if i.rec.dir {
		mode = mode.Perm() | fs.ModeDir
	}

	return mode
}

type isoFile struct {
	*io.SectionReader
	info isoInfo
}

func (f *isoFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *isoFile) Close() error               { return nil }

type isoDir struct {
	info    isoInfo
	entries []fs.DirEntry
	pos     int
}

func (d *isoDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *isoDir) Close() error               { return nil }

func (d *isoDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: fs.ErrInvalid}
}

// ReadDir implements fs.ReadDirFile.
func (d *isoDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.pos:]
	if n <= 0 {
		d.pos = len(d.entries)

		return slices.Clone(rest), nil
	}

	if len(rest) == 0 {
		return nil, io.EOF
	}

	if n > len(rest) {
		n = len(rest)
	}

	d.pos += n

	return slices.Clone(rest[:n]), nil
}
