package inspect

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

type peSection struct {
	name string
	data []byte
}

// minimalPE is a PE32+ EFI application header with no sections, room for 16 section headers.
func minimalPE(t *testing.T) []byte {
	t.Helper()

	var buf bytes.Buffer

	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 0x40)
	buf.Write(dos)
	buf.WriteString("PE\x00\x00")

	write := func(v any) { require.NoError(t, binary.Write(&buf, binary.LittleEndian, v)) }
	write(pe.FileHeader{Machine: pe.IMAGE_FILE_MACHINE_AMD64, SizeOfOptionalHeader: 240, Characteristics: 0x22})
	write(pe.OptionalHeader64{
		Magic: 0x20b, ImageBase: 0x10000000, SectionAlignment: 0x1000, FileAlignment: 0x200,
		SizeOfImage: 0x1000, SizeOfHeaders: 0x400, Subsystem: 10, NumberOfRvaAndSizes: 16,
	})

	return append(buf.Bytes(), make([]byte, 0x400-buf.Len())...)
}

// appendSections adds sections to a PE the way UKI builders do: headers into the free header space, data at the
// end of the file, virtual addresses after the last section.
func appendSections(t *testing.T, img []byte, secs ...peSection) []byte {
	t.Helper()

	img = bytes.Clone(img)
	f, err := pe.NewFile(bytes.NewReader(img))
	require.NoError(t, err)

	oh := f.OptionalHeader.(*pe.OptionalHeader64)
	coff := int(binary.LittleEndian.Uint32(img[0x3c:])) + 4
	table := coff + 20 + int(f.SizeOfOptionalHeader)
	n := len(f.Sections)
	require.LessOrEqual(t, table+40*(n+len(secs)), int(oh.SizeOfHeaders), "no room for section headers")

	align := func(v, a uint32) uint32 { return (v + a - 1) / a * a }
	va := oh.SizeOfImage

	for i, s := range secs {
		off := align(uint32(len(img)), oh.FileAlignment)
		raw := align(uint32(len(s.data)), oh.FileAlignment)
		img = append(img, make([]byte, int(off)-len(img))...)
		img = append(img, s.data...)
		img = append(img, make([]byte, int(raw)-len(s.data))...)

		h := pe.SectionHeader32{VirtualSize: uint32(len(s.data)), VirtualAddress: va, SizeOfRawData: raw,
			PointerToRawData: off, Characteristics: 0x40000040}
		copy(h.Name[:], s.name)

		var hb bytes.Buffer
		require.NoError(t, binary.Write(&hb, binary.LittleEndian, h))
		copy(img[table+40*(n+i):], hb.Bytes())

		va = align(va+uint32(len(s.data)), oh.SectionAlignment)
	}

	binary.LittleEndian.PutUint16(img[coff+2:], uint16(n+len(secs)))
	binary.LittleEndian.PutUint32(img[coff+20+56:], va) // SizeOfImage

	return img
}

// sign appends a WIN_CERTIFICATE and points the security directory at it, as sbsign does (the signature bytes
// here are not a real PKCS#7 blob: only the structure is checked).
func sign(img []byte, certType uint16) []byte {
	img = append(bytes.Clone(img), make([]byte, (8-len(img)%8)%8)...)
	off := len(img)
	cert := make([]byte, 8+1024)
	binary.LittleEndian.PutUint32(cert, uint32(len(cert)))
	binary.LittleEndian.PutUint16(cert[4:], 0x0200)
	binary.LittleEndian.PutUint16(cert[6:], certType)
	img = append(img, cert...)

	dd := int(binary.LittleEndian.Uint32(img[0x3c:])) + 4 + 20 + 112 + 4*8
	binary.LittleEndian.PutUint32(img[dd:], uint32(off))
	binary.LittleEndian.PutUint32(img[dd+4:], uint32(len(cert)))

	return img
}

const talosCmdline = "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on"

// talosUKISections are laid out as Talos ≥ 1.10 builds them: base sections, then profile "main" (no command line
// of its own) and the ISO's "reset" profile with the wipe argument.
func talosUKISections() []peSection {
	return []peSection{
		{".osrel", []byte("NAME=\"Talos\"\nID=talos\nVERSION_ID=v1.13.0\n")},
		{".cmdline", []byte(talosCmdline + "\x00")},
		{".initrd", randomBytes(10000, 8)},
		{".linux", append([]byte("MZ"), randomBytes(20000, 9)...)},
		{".uname", []byte("6.12.40-talos")},
		{".sbat", []byte("sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n")},
		{".profile", []byte("ID=main")},
		{".profile", []byte("ID=reset\nTITLE=Reset system disk")},
		{".cmdline", []byte(talosCmdline + " talos.experimental.wipe=system")},
	}
}

func stubs(t *testing.T) map[string][]byte {
	bases := map[string][]byte{"minimal": minimalPE(t)}

	if stub, err := os.ReadFile("../../build/parts/amd64/systemd-stub.efi"); err == nil {
		bases["systemd-stub"] = stub
	} else {
		t.Log("build/parts/amd64/systemd-stub.efi absent: testing the minimal PE only")
	}

	return bases
}

func TestUKIProfiles(t *testing.T) {
	for name, base := range stubs(t) {
		t.Run(name, func(t *testing.T) {
			img := appendSections(t, base, talosUKISections()...)

			rep, err := UKI(bytes.NewReader(img))
			require.NoError(t, err)

			require.Equal(t, "amd64", rep.Machine)
			require.Equal(t, talosCmdline, rep.Cmdline)
			require.Contains(t, rep.OSRelease, "VERSION_ID=v1.13.0")
			require.Equal(t, "6.12.40-talos", rep.Uname)
			require.Contains(t, rep.SBAT, "sbat,1")
			require.False(t, rep.Signed)

			for _, s := range []string{".linux", ".initrd", ".cmdline", ".osrel", ".uname", ".sbat", ".profile"} {
				require.True(t, rep.Has(s), s)
			}

			require.False(t, rep.Has(".pcrsig"))
			require.Len(t, rep.Profiles, 2)

			main, ok := rep.Profile("main")
			require.True(t, ok)
			require.Equal(t, 0, main.Index)
			require.False(t, main.OwnCmdline)
			require.Equal(t, talosCmdline, main.Cmdline)
			require.Equal(t, []string{".profile"}, main.Sections)

			reset, ok := rep.Profile("reset")
			require.True(t, ok)
			require.Equal(t, "Reset system disk", reset.Title)
			require.True(t, reset.OwnCmdline)
			require.Equal(t, talosCmdline+" talos.experimental.wipe=system", reset.Cmdline)
			require.Equal(t, []string{".profile", ".cmdline"}, reset.Sections)
		})
	}
}

func TestUKIWithoutProfilesAndSigned(t *testing.T) {
	img := appendSections(t, minimalPE(t),
		peSection{".linux", []byte("MZ kernel")}, peSection{".cmdline", []byte("console=ttyS0\n\x00\x00")})

	rep, err := UKI(bytes.NewReader(sign(img, 0x0002)))
	require.NoError(t, err)
	require.Equal(t, "console=ttyS0", rep.Cmdline)
	require.Empty(t, rep.Profiles)
	require.True(t, rep.Signed)
	require.Equal(t, uint32(8+1024), rep.SignatureSize)
}

// TestUKIRealSystemdBoot reads the sd-boot binary: a PE, but not a UKI.
func TestUKIRealSystemdBoot(t *testing.T) {
	data, err := os.ReadFile("../../build/parts/amd64/systemd-boot.efi")
	if err != nil {
		t.Skip("build/parts/amd64/systemd-boot.efi absent")
	}

	rep, err := UKI(bytes.NewReader(data))
	require.ErrorIs(t, err, ErrMalformed)
	require.Contains(t, err.Error(), "not a UKI")
	require.True(t, rep.Has(".sbat"))
	require.Contains(t, rep.SBAT, "systemd-boot")
}

func TestUKIRejectsCorruption(t *testing.T) {
	good := appendSections(t, minimalPE(t), talosUKISections()...)
	linux, err := pe.NewFile(bytes.NewReader(good))
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"not a PE", randomBytes(4096, 10), ErrMalformed, "pe headers"},
		{"bad PE signature", append(append(bytes.Clone(good[:0x40]), "PX\x00\x00"...), good[0x44:]...), ErrMalformed, "pe headers"},
		{"truncated headers", good[:0x60], io.ErrUnexpectedEOF, "pe headers"},
		{"truncated section", good[:linux.Section(".linux").Offset+100], io.ErrUnexpectedEOF, "section .linux"},
		{"no .linux", appendSections(t, minimalPE(t), peSection{".cmdline", []byte("x")}), ErrMalformed, "not a UKI"},
		{"bad certificate type", sign(good, 0x0001), ErrMalformed, "WIN_CERTIFICATE"},
		{"truncated signature", sign(good, 0x0002)[:len(good)+100], io.ErrUnexpectedEOF, "security directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UKI(bytes.NewReader(tc.in))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}
