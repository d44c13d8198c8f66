package inspect

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strconv"
)

// CPIOEntry is one record of a newc cpio archive.
type CPIOEntry struct {
	Name string
	Mode fs.FileMode
	Size int64
	// Target is the link target of a symbolic link.
	Target string
}

const (
	cpioHeaderLen = 110
	cpioTrailer   = "TRAILER!!!"
	cpioMaxName   = 4096
	cpioMaxLink   = 4096
)

var cpioFields = [13]string{
	"c_ino", "c_mode", "c_uid", "c_gid", "c_nlink", "c_mtime", "c_filesize",
	"c_devmajor", "c_devminor", "c_rdevmajor", "c_rdevminor", "c_namesize", "c_check",
}

// cpioReader streams the records of newc ("070701") and newc-with-CRC ("070702") archives.
type cpioReader struct {
	r      io.Reader
	off    int64 // offset in the archive stream, for messages
	remain int64 // unread data bytes of the current record
	pad    int64 // padding after the current record's data
}

// next skips the rest of the current record and returns the next header; io.EOF after the trailer.
func (c *cpioReader) next() (CPIOEntry, error) {
	if err := c.skipData(); err != nil {
		return CPIOEntry{}, err
	}

	start := c.off

	var hdr [cpioHeaderLen]byte
	if err := c.readFull(hdr[:]); err != nil {
		return CPIOEntry{}, fmt.Errorf("cpio header at offset %d: %w", start, short(err))
	}

	if magic := string(hdr[:6]); magic != "070701" && magic != "070702" {
		return CPIOEntry{}, malformed("cpio header at offset %d: magic %q, want newc 070701 or 070702", start, magic)
	}

	var field [13]uint64

	for i := range field {
		v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return CPIOEntry{}, malformed("cpio header at offset %d: %s is not hex: %q", start, cpioFields[i], hdr[6+8*i:14+8*i])
		}

		field[i] = v
	}

	mode, size, nameSize := uint32(field[1]), int64(field[6]), int(field[11])
	if nameSize == 0 || nameSize > cpioMaxName {
		return CPIOEntry{}, malformed("cpio header at offset %d: name size %d", start, nameSize)
	}

	name := make([]byte, int64(nameSize)+pad4(cpioHeaderLen+int64(nameSize)))
	if err := c.readFull(name); err != nil {
		return CPIOEntry{}, fmt.Errorf("cpio name at offset %d: %w", start+cpioHeaderLen, short(err))
	}

	if name[nameSize-1] != 0 {
		return CPIOEntry{}, malformed("cpio name at offset %d is not NUL-terminated", start+cpioHeaderLen)
	}

	e := CPIOEntry{Name: string(name[:nameSize-1]), Mode: unixMode(mode), Size: size}
	if e.Name == cpioTrailer {
		return e, io.EOF
	}

	c.remain, c.pad = size, pad4(size)

	if e.Mode&fs.ModeSymlink != 0 {
		if size > cpioMaxLink {
			return e, malformed("cpio symlink %q at offset %d: target of %d bytes", e.Name, start, size)
		}

		target, err := c.readContent()
		if err != nil {
			return e, err
		}

		e.Target = string(target)
	}

	return e, nil
}

// readContent reads the whole data of the current record.
func (c *cpioReader) readContent() ([]byte, error) {
	data := make([]byte, c.remain)
	if err := c.readFull(data); err != nil {
		return nil, fmt.Errorf("cpio data at offset %d: %w", c.off, short(err))
	}

	c.remain = 0

	return data, nil
}

func (c *cpioReader) skipData() error {
	if c.remain > 0 {
		n, err := io.CopyN(io.Discard, c.r, c.remain)
		c.off += n

		if err != nil {
			return fmt.Errorf("cpio data ends at offset %d, %d bytes early: %w", c.off, c.remain-n, short(err))
		}

		c.remain = 0
	}

	var pad [3]byte
	if err := c.readFull(pad[:c.pad]); err != nil {
		return fmt.Errorf("cpio data padding at offset %d: %w", c.off, short(err))
	}

	c.pad = 0

	return nil
}

func (c *cpioReader) readFull(p []byte) error {
	n, err := io.ReadFull(c.r, p)
	c.off += int64(n)

	return err
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

// unixMode converts st_mode bits to fs.FileMode.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)

	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	}

	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}

	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}

	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}

	return mode
}

// isCPIOMagic reports whether head starts a newc record.
func isCPIOMagic(head []byte) bool {
	return bytes.HasPrefix(head, []byte("070701")) || bytes.HasPrefix(head, []byte("070702"))
}
