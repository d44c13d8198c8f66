// Package efistub reads which systemd release built an EFI binary (systemd-stub, systemd-boot) and refuses stubs too
// old to be safe in a Talos UKI.
//
// Guarantee: CheckStub accepts a file only if it is a PE/COFF systemd-stub of release 257 or newer without a COFF
// symbol table. Talos ≥ 1.10 UKIs carry extra boot profiles; stub 252 (Debian 12) ignores them and boots the last
// profile's command line, which on the ISO is the "reset" profile with talos.experimental.wipe=system: it wipes the
// disks. Anything unreadable is refused too.
package efistub

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
)

// MinMajor is the oldest systemd release whose stub honours UKI profiles (and whose sd-boot accepts
// "secure-boot-enroll if-safe").
const MinMajor = 257

// Info is what an EFI binary says about itself.
type Info struct {
	Product        string // "systemd-stub", "systemd-boot", "systemd-addon"
	Major          int    // 257
	Full           string // "257.13-1~deb13u1"
	HasCOFFSymbols bool   // the Talos imager refuses stubs with a COFF symbol table
}

// loaderInfoRE matches the marker systemd puts in the .sdmagic section: "#### LoaderInfo: systemd-stub 257.13 ####".
var loaderInfoRE = regexp.MustCompile(`#### LoaderInfo: (\S+) (\S+) ####`)

var errNoMagic = errors.New("no systemd LoaderInfo marker in a .sdmagic section")

// Version reads the systemd product and version from a PE/COFF file's .sdmagic section.
func Version(r io.ReaderAt) (Info, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return Info{}, fmt.Errorf("parse PE/COFF: %w", err)
	}

	defer f.Close()

	info := Info{HasCOFFSymbols: f.PointerToSymbolTable != 0 || f.NumberOfSymbols != 0}

	sec := f.Section(".sdmagic")
	if sec == nil {
		return info, errNoMagic
	}

	data, err := sec.Data()
	if err != nil {
		return info, fmt.Errorf("read .sdmagic: %w", err)
	}

	// Raw data is padded to the file alignment; the marker ends well before.
	if sec.VirtualSize != 0 && int(sec.VirtualSize) < len(data) {
		data = data[:sec.VirtualSize]
	}

	m := loaderInfoRE.FindSubmatch(bytes.TrimRight(data, "\x00"))
	if m == nil {
		return info, errNoMagic
	}

	info.Product, info.Full = string(m[1]), string(m[2])

	major, err := strconv.Atoi(leadingDigits(info.Full))
	if err != nil {
		return info, fmt.Errorf("version %q of %s has no major number", info.Full, info.Product)
	}

	info.Major = major

	return info, nil
}

func leadingDigits(s string) string {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}

	return s[:end]
}

// CheckStub returns nil only for a systemd-stub ≥ MinMajor without COFF symbols; the error names the file, what was
// found and the minimum.
func CheckStub(path string) error {
	return check(path, "systemd-stub", "it ignores UKI profiles and may boot the reset profile's wipe command line", true)
}

// CheckBoot returns nil only for a systemd-boot ≥ MinMajor.
func CheckBoot(path string) error {
	return check(path, "systemd-boot", "it rejects the \"secure-boot-enroll if-safe\" that Talos writes to loader.conf", false)
}

func check(path, product, risk string, noSymbols bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: need %s ≥ %d: %w", path, product, MinMajor, err)
	}
	defer f.Close() // read-only

	info, err := Version(f)

	switch {
	case err != nil:
		return fmt.Errorf("%s: need %s ≥ %d, cannot tell its version: %w", path, product, MinMajor, err)
	case info.Product != product:
		return fmt.Errorf("%s is %s %s, not %s (need %s ≥ %d)", path, info.Product, info.Full, product, product, MinMajor)
	case info.Major < MinMajor:
		return fmt.Errorf("%s is %s %s, older than the minimum %d: %s", path, info.Product, info.Full, MinMajor, risk)
	case noSymbols && info.HasCOFFSymbols:
		return fmt.Errorf("%s (%s %s) has a COFF symbol table, which the Talos imager refuses", path, info.Product, info.Full)
	}

	return nil
}
