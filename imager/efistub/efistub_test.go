package efistub

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// synthPE builds a minimal PE32+ image with one section holding sdmagic, and optionally a one-entry COFF symbol
// table (as systemd < 253 stubs built with objcopy have).
func synthPE(t *testing.T, sectionName string, sdmagic []byte, withSymbols bool) []byte {
	t.Helper()

	const (
		peOffset   = 0x40
		fileAlign  = 0x200
		dataOffset = 0x200 // headers fit well inside the first file-aligned block
	)

	rawSize := uint32((len(sdmagic) + fileAlign - 1) / fileAlign * fileAlign)

	var buf bytes.Buffer

	dos := make([]byte, peOffset)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], peOffset)
	buf.Write(dos)
	buf.WriteString("PE\x00\x00")

	fh := pe.FileHeader{
		Machine:              pe.IMAGE_FILE_MACHINE_AMD64,
		NumberOfSections:     1,
		SizeOfOptionalHeader: uint16(binary.Size(pe.OptionalHeader64{})),
		Characteristics:      pe.IMAGE_FILE_EXECUTABLE_IMAGE | pe.IMAGE_FILE_LARGE_ADDRESS_AWARE,
	}
	if withSymbols {
		fh.PointerToSymbolTable = dataOffset + rawSize
		fh.NumberOfSymbols = 1
	}

	oh := pe.OptionalHeader64{
		Magic:               0x20b,
		SectionAlignment:    0x1000,
		FileAlignment:       fileAlign,
		SizeOfImage:         0x2000,
		SizeOfHeaders:       dataOffset,
		Subsystem:           pe.IMAGE_SUBSYSTEM_EFI_APPLICATION,
		NumberOfRvaAndSizes: 16,
	}

	var name [8]uint8
	copy(name[:], sectionName)

	sh := pe.SectionHeader32{
		Name:             name,
		VirtualSize:      uint32(len(sdmagic)),
		VirtualAddress:   0x1000,
		SizeOfRawData:    rawSize,
		PointerToRawData: dataOffset,
		Characteristics:  pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ,
	}

	for _, v := range []any{fh, oh, sh} {
		require.NoError(t, binary.Write(&buf, binary.LittleEndian, v))
	}

	buf.Write(make([]byte, dataOffset-buf.Len()))
	buf.Write(sdmagic)
	buf.Write(make([]byte, int(rawSize)-len(sdmagic)))

	if withSymbols {
		sym := pe.COFFSymbol{Name: [8]uint8{'s', 'y', 'm'}, SectionNumber: 1, StorageClass: 2}
		require.NoError(t, binary.Write(&buf, binary.LittleEndian, sym))
		require.NoError(t, binary.Write(&buf, binary.LittleEndian, uint32(4))) // empty string table
	}

	return buf.Bytes()
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()

	p := filepath.Join(t.TempDir(), "stub.efi")
	require.NoError(t, os.WriteFile(p, data, 0o644))

	return p
}

func TestVersionSynthetic(t *testing.T) {
	tests := []struct {
		name    string
		section string
		magic   string
		symbols bool
		want    Info
		wantErr bool
	}{
		{
			name:    "stub 257 from trixie",
			section: ".sdmagic",
			magic:   "#### LoaderInfo: systemd-stub 257.13-1~deb13u1 ####",
			want:    Info{Product: "systemd-stub", Major: 257, Full: "257.13-1~deb13u1"},
		},
		{
			name:    "stub 252 from bookworm, with COFF symbols",
			section: ".sdmagic",
			magic:   "#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####",
			symbols: true,
			want:    Info{Product: "systemd-stub", Major: 252, Full: "252.39-1~deb12u2", HasCOFFSymbols: true},
		},
		{
			name:    "systemd-boot",
			section: ".sdmagic",
			magic:   "#### LoaderInfo: systemd-boot 258 ####",
			want:    Info{Product: "systemd-boot", Major: 258, Full: "258"},
		},
		{name: "no .sdmagic section", section: ".text", magic: "#### LoaderInfo: systemd-stub 257 ####", wantErr: true},
		{name: "garbage marker", section: ".sdmagic", magic: "hello", wantErr: true},
		{name: "version without number", section: ".sdmagic", magic: "#### LoaderInfo: systemd-stub vX ####", wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Version(bytes.NewReader(synthPE(t, tt.section, []byte(tt.magic), tt.symbols)))
			if tt.wantErr {
				require.Error(t, err)

				return
			}

			require.NoError(t, err)
			require.Equal(t, tt.want, info)
		})
	}
}

func TestVersionNotPE(t *testing.T) {
	_, err := Version(bytes.NewReader([]byte("#### LoaderInfo: systemd-stub 257 ####, but no PE headers")))
	require.Error(t, err)
}

func TestCheckStubSynthetic(t *testing.T) {
	tests := []struct {
		name    string
		magic   string
		symbols bool
		errHas  []string // empty: accepted
	}{
		{name: "257 accepted", magic: "#### LoaderInfo: systemd-stub 257.13 ####"},
		{name: "260 accepted", magic: "#### LoaderInfo: systemd-stub 260 ####"},
		{name: "252 refused", magic: "#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####",
			errHas: []string{"stub.efi", "252.39-1~deb12u2", "257", "wipe"}},
		{name: "256 refused", magic: "#### LoaderInfo: systemd-stub 256.7 ####", errHas: []string{"256.7", "257"}},
		{name: "252 with symbols stripped still refused", magic: "#### LoaderInfo: systemd-stub 252.39 ####",
			errHas: []string{"252.39"}},
		{name: "257 with COFF symbols refused", magic: "#### LoaderInfo: systemd-stub 257.13 ####", symbols: true,
			errHas: []string{"COFF symbol table"}},
		{name: "systemd-boot is not a stub", magic: "#### LoaderInfo: systemd-boot 257.13 ####",
			errHas: []string{"systemd-boot 257.13", "not systemd-stub"}},
		{name: "unreadable version", magic: "nothing here", errHas: []string{"stub.efi", "cannot tell its version", "257"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckStub(writeFile(t, synthPE(t, ".sdmagic", []byte(tt.magic), tt.symbols)))
			if len(tt.errHas) == 0 {
				require.NoError(t, err)

				return
			}

			require.Error(t, err)

			for _, s := range tt.errHas {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestCheckStubMissingFile(t *testing.T) {
	err := CheckStub("/nonexistent/linuxx64.efi.stub")
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), "/nonexistent/linuxx64.efi.stub")
}

func TestCheckBootSynthetic(t *testing.T) {
	require.NoError(t, CheckBoot(writeFile(t, synthPE(t, ".sdmagic", []byte("#### LoaderInfo: systemd-boot 257.13 ####"), true))))

	err := CheckBoot(writeFile(t, synthPE(t, ".sdmagic", []byte("#### LoaderInfo: systemd-boot 252.39 ####"), false)))
	require.ErrorContains(t, err, "secure-boot-enroll")

	err = CheckBoot(writeFile(t, synthPE(t, ".sdmagic", []byte("#### LoaderInfo: systemd-stub 257.13 ####"), false)))
	require.ErrorContains(t, err, "not systemd-boot")
}

// TestDebianBinaries checks the real files: Debian 12's systemd 252 stub and sd-boot must be refused, trixie's 257
// accepted.
func TestDebianBinaries(t *testing.T) {
	tests := []struct {
		suite  string
		major  int
		accept bool
	}{
		{suite: "bookworm", major: 252},
		{suite: "trixie", major: 257, accept: true},
	}

	for _, tt := range tests {
		t.Run(tt.suite, func(t *testing.T) {
			stub, boot := debianBinaries(t, tt.suite, tt.major)

			for _, f := range []struct {
				path    string
				product string
				check   func(string) error
			}{
				{stub, "systemd-stub", CheckStub},
				{boot, "systemd-boot", CheckBoot},
			} {
				r, err := os.Open(f.path)
				require.NoError(t, err)

				info, err := Version(r)
				require.NoError(t, r.Close())
				require.NoError(t, err, f.path)
				require.Equal(t, f.product, info.Product)
				require.Equal(t, tt.major, info.Major)

				err = f.check(f.path)
				if tt.accept {
					require.NoError(t, err)
				} else {
					require.ErrorContains(t, err, "older than the minimum 257")
				}
			}
		})
	}
}

// debianBinaries returns the systemd-stub and systemd-boot of a Debian suite with the given systemd major: from
// $EDGEFACTORY_TEST_SDBOOT_<suite> (a systemd-boot-efi package root), from where this host or `make deps` keeps
// them, or fetched with apt into a temporary directory. It skips when none of these works.
func debianBinaries(t *testing.T, suite string, major int) (stub, boot string) {
	t.Helper()

	roots := []string{os.Getenv("EDGEFACTORY_TEST_SDBOOT_" + suite), "/"}
	for _, root := range roots {
		if root == "" {
			continue
		}

		dir := filepath.Join(root, "usr/lib/systemd/boot/efi")
		if s, b := filepath.Join(dir, "linuxx64.efi.stub"), filepath.Join(dir, "systemd-bootx64.efi"); hasMajor(s, major) && hasMajor(b, major) {
			return s, b
		}
	}

	// scripts/deps.sh unpacks trixie's files here.
	parts, err := filepath.Abs("../../build/parts/amd64")
	require.NoError(t, err)

	if s, b := filepath.Join(parts, "systemd-stub.efi"), filepath.Join(parts, "systemd-boot.efi"); hasMajor(s, major) && hasMajor(b, major) {
		return s, b
	}

	if testing.Short() {
		t.Skipf("no systemd-boot-efi %d here and -short forbids fetching it", major)
	}

	root := fetchDeb(t, suite, "systemd-boot-efi")
	dir := filepath.Join(root, "usr/lib/systemd/boot/efi")

	return filepath.Join(dir, "linuxx64.efi.stub"), filepath.Join(dir, "systemd-bootx64.efi")
}

func hasMajor(path string, major int) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()

	info, err := Version(f)

	return err == nil && info.Major == major
}

// fetchDeb downloads a package of a Debian suite with a private apt configuration (the system's sources stay
// untouched) and unpacks it; it skips the test when apt or the mirror is unavailable.
func fetchDeb(t *testing.T, suite, pkg string) string {
	t.Helper()

	const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skipf("apt-get not available to fetch %s from %s: %v", pkg, suite, err)
	}

	if _, err := os.Stat(keyring); err != nil {
		t.Skipf("Debian archive keyring missing (debian-archive-keyring): %v", err)
	}

	work := t.TempDir()
	sources := filepath.Join(work, "sources.list")
	line := "deb [signed-by=" + keyring + "] http://deb.debian.org/debian " + suite + " main\n"
	require.NoError(t, os.WriteFile(sources, []byte(line), 0o644))

	for _, d := range []string{"lists/partial", "cache/archives/partial", "debs"} {
		require.NoError(t, os.MkdirAll(filepath.Join(work, d), 0o755))
	}

	opts := []string{
		"-q", "-o", "Dir::Etc::SourceList=" + sources, "-o", "Dir::Etc::SourceParts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(work, "lists"), "-o", "Dir::Cache=" + filepath.Join(work, "cache"),
		"-o", "APT::Sandbox::User=" + currentUser(), "-o", "Debug::NoLocking=1",
	}

	apt := func(dir string, args ...string) {
		cmd := exec.Command("apt-get", append(append([]string{}, opts...), args...)...)
		cmd.Dir = dir

		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("cannot fetch %s from Debian %s (apt-get %v): %v\n%s", pkg, suite, args, err, out)
		}
	}

	apt(work, "update")
	apt(filepath.Join(work, "debs"), "download", pkg)

	debs, err := filepath.Glob(filepath.Join(work, "debs", pkg+"_*.deb"))
	require.NoError(t, err)
	require.Len(t, debs, 1)

	root := filepath.Join(work, "root")
	out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput()
	require.NoError(t, err, string(out))

	return root
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}

	if u := os.Getenv("USER"); u != "" {
		return u
	}

	return "nobody"
}
