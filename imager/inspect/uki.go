package inspect

import (
	"bufio"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// UKIReport describes a Unified Kernel Image: a systemd-stub PE binary carrying the kernel and its inputs in
// sections.
type UKIReport struct {
	// Machine is the GOARCH name of the PE machine type ("amd64", "arm64", …) or its hex value.
	Machine  string
	Sections []PESection
	// Cmdline, OSRelease, Uname and SBAT are the base (before any .profile) text sections, trailing NULs removed.
	Cmdline   string
	OSRelease string
	Uname     string
	SBAT      string
	// Profiles lists the boot profiles (Talos ≥ 1.10 UKIs carry "main" plus a reset profile), in order.
	Profiles []UKIProfile
	// Signed is set when the security directory holds an Authenticode signature of SignatureSize bytes.
	Signed        bool
	SignatureSize uint32
}

// PESection is one section header.
type PESection struct {
	Name string
	// Offset and Size locate the raw data in the file; VirtualSize is the data's real size.
	Offset, Size, VirtualAddress, VirtualSize uint32
}

// UKIProfile is one boot profile: a .profile section and the sections after it up to the next .profile. Sections a
// profile lacks come from the base (the sections before the first .profile), as systemd-stub resolves them.
type UKIProfile struct {
	Index int
	// ID and Title are the ID= and TITLE= fields of the .profile section; Raw is its whole text.
	ID, Title, Raw string
	// Cmdline is the profile's own .cmdline, or the base one when OwnCmdline is false.
	Cmdline    string
	OwnCmdline bool
	Sections   []string
}

// Has reports whether a section of that name is present.
func (r UKIReport) Has(name string) bool {
	return slices.ContainsFunc(r.Sections, func(s PESection) bool { return s.Name == name })
}

// Profile returns the profile with that ID.
func (r UKIReport) Profile(id string) (UKIProfile, bool) {
	i := slices.IndexFunc(r.Profiles, func(p UKIProfile) bool { return p.ID == id })
	if i < 0 {
		return UKIProfile{}, false
	}

	return r.Profiles[i], true
}

// maxTextSection bounds the text sections UKI reads (command lines, os-release, SBAT, profiles).
const maxTextSection = 1 << 20

var peMachines = map[uint16]string{
	pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64", pe.IMAGE_FILE_MACHINE_I386: "386",
	pe.IMAGE_FILE_MACHINE_ARMNT: "arm", pe.IMAGE_FILE_MACHINE_RISCV64: "riscv64",
}

// UKI parses a PE file as a UKI: it must have a .linux section, and every section's data must be inside the file.
func UKI(r io.ReaderAt) (UKIReport, error) {
	rep, f, err := peSections(r)
	if err != nil {
		return rep, err
	}

	if !rep.Has(".linux") {
		return rep, malformed("pe: no .linux section, not a UKI (sections: %s)", sectionNames(rep.Sections))
	}

	rep.SignatureSize, err = authenticode(r, f)
	rep.Signed = rep.SignatureSize > 0

	return rep, err
}

// peFile reads any PE file as UKI does, without requiring a .linux section: an EFI application such as
// systemd-boot, or a kernel with an EFI stub, reports its sections, SBAT and signature the same way.
func peFile(r io.ReaderAt) (UKIReport, error) {
	rep, f, err := peSections(r)
	if err != nil {
		return rep, err
	}

	rep.SignatureSize, err = authenticode(r, f)
	rep.Signed = rep.SignatureSize > 0

	return rep, err
}

// peSections checks the PE headers, lists the sections (whose data must be inside the file) and reads the text
// sections UKIReport exposes.
func peSections(r io.ReaderAt) (UKIReport, *pe.File, error) {
	if err := peHeaders(r); err != nil {
		return UKIReport{}, nil, err
	}

	f, err := pe.NewFile(r)
	if err != nil {
		return UKIReport{}, nil, fmt.Errorf("pe headers: %w", asPEError(err))
	}

	rep := UKIReport{Machine: peMachines[f.Machine]}
	if rep.Machine == "" {
		rep.Machine = fmt.Sprintf("%#04x", f.Machine)
	}

	var profile *UKIProfile

	for _, s := range f.Sections {
		rep.Sections = append(rep.Sections, PESection{
			Name: s.Name, Offset: s.Offset, Size: s.Size, VirtualAddress: s.VirtualAddress, VirtualSize: s.VirtualSize,
		})

		if err = checkInFile(r, int64(s.Offset), int64(s.Size), "section "+s.Name); err != nil {
			return rep, nil, err
		}

		if s.Name == ".profile" {
			rep.Profiles = append(rep.Profiles, UKIProfile{Index: len(rep.Profiles)})
			profile = &rep.Profiles[len(rep.Profiles)-1]
		}

		if profile != nil {
			profile.Sections = append(profile.Sections, s.Name)
		}

		if err = readUKIText(&rep, profile, s); err != nil {
			return rep, nil, err
		}
	}

	for i := range rep.Profiles {
		if !rep.Profiles[i].OwnCmdline {
			rep.Profiles[i].Cmdline = rep.Cmdline
		}
	}

	return rep, f, nil
}

// peHeaders checks the headers debug/pe reads, because its errors do not tell a short file from a corrupt one.
func peHeaders(r io.ReaderAt) error {
	var dos [64]byte
	if err := readAt(r, dos[:], 0, "pe headers: DOS header"); err != nil {
		return err
	}

	if dos[0] != 'M' || dos[1] != 'Z' {
		return malformed("pe headers: DOS magic % x, want \"MZ\"", dos[:2])
	}

	lfanew := int64(binary.LittleEndian.Uint32(dos[0x3c:]))

	var coff [24]byte
	if err := readAt(r, coff[:], lfanew, "pe headers: COFF header"); err != nil {
		return err
	}

	if string(coff[:4]) != "PE\x00\x00" {
		return malformed("pe headers: signature % x at offset %d, want \"PE\\0\\0\"", coff[:4], lfanew)
	}

	sections, optional := binary.LittleEndian.Uint16(coff[6:]), binary.LittleEndian.Uint16(coff[20:])

	return checkInFile(r, lfanew+24, int64(optional)+40*int64(sections), "pe headers: optional header and section table")
}

// readUKIText stores the text sections UKIReport exposes, into the base or the current profile.
func readUKIText(rep *UKIReport, profile *UKIProfile, s *pe.Section) error {
	var dst *string

	switch {
	case s.Name == ".profile":
		dst = &profile.Raw
	case s.Name == ".cmdline" && profile != nil:
		dst, profile.OwnCmdline = &profile.Cmdline, true
	case profile != nil:
		return nil
	case s.Name == ".cmdline":
		dst = &rep.Cmdline
	case s.Name == ".osrel":
		dst = &rep.OSRelease
	case s.Name == ".uname":
		dst = &rep.Uname
	case s.Name == ".sbat":
		dst = &rep.SBAT
	default:
		return nil
	}

	n := s.Size
	if s.VirtualSize > 0 && s.VirtualSize < n {
		n = s.VirtualSize // raw data is padded to the file alignment
	}

	if n > maxTextSection {
		return malformed("pe section %s: %d bytes, more than a text section should hold", s.Name, n)
	}

	data := make([]byte, n)
	if err := readAt(s, data, 0, "pe section "+s.Name); err != nil {
		return err
	}

	*dst = strings.TrimRight(string(data), "\x00")
	if s.Name == ".cmdline" {
		*dst = strings.TrimSpace(*dst)
	}

	if s.Name == ".profile" {
		profile.ID, profile.Title = profileField(*dst, "ID"), profileField(*dst, "TITLE")
	}

	return nil
}

// profileField returns KEY=value from the os-release style text of a .profile section.
func profileField(text, key string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			return strings.Trim(v, `"'`)
		}
	}

	return ""
}

// dataDirectories is the PE optional header's data directory table (as many entries as it says it has, 16 at most);
// false when the file has no optional header.
func dataDirectories(f *pe.File) ([]pe.DataDirectory, bool) {
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		return oh.DataDirectory[:min(oh.NumberOfRvaAndSizes, 16)], true
	case *pe.OptionalHeader32:
		return oh.DataDirectory[:min(oh.NumberOfRvaAndSizes, 16)], true
	}

	return nil, false
}

// authenticode returns the size of the security directory after checking its WIN_CERTIFICATE header.
func authenticode(r io.ReaderAt, f *pe.File) (uint32, error) {
	dd, ok := dataDirectories(f)
	if !ok {
		return 0, malformed("pe: no optional header")
	}

	if len(dd) <= pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
		return 0, nil
	}

	sec := dd[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	if sec.Size == 0 {
		return 0, nil
	}

	// The security directory's address is a file offset, not an RVA.
	if err := checkInFile(r, int64(sec.VirtualAddress), int64(sec.Size), "security directory"); err != nil {
		return 0, err
	}

	var hdr [8]byte
	if sec.Size < 8 {
		return 0, malformed("pe security directory: %d bytes, smaller than a WIN_CERTIFICATE header", sec.Size)
	}

	if err := readAt(r, hdr[:], int64(sec.VirtualAddress), "WIN_CERTIFICATE header"); err != nil {
		return 0, err
	}

	length, revision, typ := binary.LittleEndian.Uint32(hdr[:]), binary.LittleEndian.Uint16(hdr[4:]), binary.LittleEndian.Uint16(hdr[6:])

	switch {
	case length < 8 || length > sec.Size:
		return 0, malformed("pe WIN_CERTIFICATE: length %d outside the %d-byte security directory", length, sec.Size)
	case revision != 0x0200 && revision != 0x0100:
		return 0, malformed("pe WIN_CERTIFICATE: revision %#04x", revision)
	case typ != 0x0002:
		return 0, malformed("pe WIN_CERTIFICATE: type %#04x, want PKCS#7 signed data (0x0002)", typ)
	}

	return sec.Size, nil
}

// checkInFile makes sure [off, off+n) can be read, so a truncated file is caught at the structure it cuts.
func checkInFile(r io.ReaderAt, off, n int64, what string) error {
	if n == 0 {
		return nil
	}

	var b [1]byte

	got, err := r.ReadAt(b[:], off+n-1)
	if got == 1 {
		return nil
	}

	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", what, err)
	}

	return fmt.Errorf("%s (%d bytes at offset %d) ends past the end of the input: %w", what, n, off, io.ErrUnexpectedEOF)
}

func sectionNames(ss []PESection) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Name
	}

	return strings.Join(names, " ")
}

// asPEError marks debug/pe's complaints about the headers as structural defects.
func asPEError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case errors.Is(err, io.EOF):
		return fmt.Errorf("headers end early: %w", io.ErrUnexpectedEOF)
	default:
		return markMalformed(err)
	}
}
