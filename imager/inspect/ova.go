package inspect

import (
	"archive/tar"
	"bufio"
	"crypto/sha1" //nolint:gosec // OVF manifests may use SHA1; it is verified, not trusted for security
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// OVAReport describes an OVA: a tar holding an OVF descriptor first, a manifest and the disks.
type OVAReport struct {
	// Entries are the tar members in order.
	Entries []OVAEntry
	// OVF is the descriptor's file name; Manifest maps file names to "ALGO:hex" digests from the .mf.
	OVF      string
	Manifest map[string]string
	// References and Disks come from the OVF descriptor.
	References []OVFFile
	Disks      []OVFDisk
	VMDKs      []VMDKReport
}

// OVAEntry is one tar member.
type OVAEntry struct {
	Name string
	Size int64
}

// OVFFile is a References/File element.
type OVFFile struct {
	ID, Href string
	Size     int64
}

// OVFDisk is a DiskSection/Disk element; CapacityBytes applies capacityAllocationUnits.
type OVFDisk struct {
	FileRef, Format string
	CapacityBytes   int64
}

// OVA reads an OVA stream and checks that the .ovf comes first and parses, every file it references is present
// with its stated size, every .vmdk is a sparse extent whose capacity matches the OVF disk, and every digest in the
// .mf manifest matches the file it names (and every other file is listed).
func OVA(r io.Reader) (OVAReport, error) {
	rep := OVAReport{Manifest: map[string]string{}}
	digests := map[string]map[string]string{} // file → algorithm → hex

	tr := tar.NewReader(r)

	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return rep, fmt.Errorf("ova tar member %d: %w", i+1, asTarError(err))
		}

		if h.Typeflag != tar.TypeReg {
			return rep, malformed("ova member %q: tar type %q, want a regular file", h.Name, h.Typeflag)
		}

		rep.Entries = append(rep.Entries, OVAEntry{Name: h.Name, Size: h.Size})

		if i == 0 && path.Ext(h.Name) != ".ovf" {
			return rep, malformed("ova: first member is %q, the OVF descriptor must come first", h.Name)
		}

		if digests[h.Name], err = rep.member(h, tr); err != nil {
			return rep, fmt.Errorf("ova member %q: %w", h.Name, err)
		}
	}

	if rep.OVF == "" {
		return rep, malformed("ova: empty archive")
	}

	return rep, rep.crossCheck(digests)
}

// member reads one tar member, hashing it with every algorithm a manifest may use.
func (rep *OVAReport) member(h *tar.Header, r io.Reader) (map[string]string, error) {
	hashes := map[string]hash.Hash{"SHA1": sha1.New(), "SHA256": sha256.New(), "SHA512": sha512.New()} //nolint:gosec // OVF manifests name SHA1; checking it is not relying on it
	writers := make([]io.Writer, 0, len(hashes))

	for _, h := range hashes {
		writers = append(writers, h)
	}

	body := bufio.NewReader(io.TeeReader(r, io.MultiWriter(writers...)))

	var err error

	switch path.Ext(h.Name) {
	case ".ovf":
		if rep.OVF != "" {
			return nil, malformed("second OVF descriptor (first: %q)", rep.OVF)
		}

		rep.OVF = h.Name
		err = rep.parseOVF(body)
	case ".mf":
		err = rep.parseManifest(body)
	case ".vmdk":
		var v VMDKReport
		if v, err = VMDK(body); err == nil {
			v.Name = h.Name
			rep.VMDKs = append(rep.VMDKs, v)
		}
	}

	if err != nil {
		return nil, err
	}

	if _, err = io.Copy(io.Discard, body); err != nil {
		return nil, fmt.Errorf("data: %w", asTarError(err))
	}

	sums := map[string]string{}
	for algo, h := range hashes {
		sums[algo] = hex.EncodeToString(h.Sum(nil))
	}

	return sums, nil
}

type ovfEnvelope struct {
	Files []struct {
		ID   string `xml:"id,attr"`
		Href string `xml:"href,attr"`
		Size string `xml:"size,attr"`
	} `xml:"References>File"`
	Disks []struct {
		Capacity string `xml:"capacity,attr"`
		Units    string `xml:"capacityAllocationUnits,attr"`
		FileRef  string `xml:"fileRef,attr"`
		Format   string `xml:"format,attr"`
	} `xml:"DiskSection>Disk"`
}

var unitsRE = regexp.MustCompile(`^byte(?:\s*\*\s*2\^(\d+))?$`)

func (rep *OVAReport) parseOVF(r io.Reader) error {
	var env ovfEnvelope
	if err := xml.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&env); err != nil {
		return fmt.Errorf("OVF descriptor: %w", markMalformed(err))
	}

	for _, f := range env.Files {
		ref := OVFFile{ID: f.ID, Href: f.Href}

		if f.Size != "" {
			n, err := strconv.ParseInt(f.Size, 10, 64)
			if err != nil {
				return malformed("OVF File %q: size %q", f.Href, f.Size)
			}

			ref.Size = n
		}

		rep.References = append(rep.References, ref)
	}

	for _, d := range env.Disks {
		capacity, err := strconv.ParseInt(d.Capacity, 10, 64)
		if err != nil {
			return malformed("OVF Disk %q: capacity %q", d.FileRef, d.Capacity)
		}

		units := strings.TrimSpace(d.Units)
		if units == "" {
			units = "byte"
		}

		m := unitsRE.FindStringSubmatch(units)
		if m == nil {
			return malformed("OVF Disk %q: capacity units %q", d.FileRef, d.Units)
		}

		if m[1] != "" {
			shift, _ := strconv.Atoi(m[1])
			capacity <<= shift
		}

		rep.Disks = append(rep.Disks, OVFDisk{FileRef: d.FileRef, Format: d.Format, CapacityBytes: capacity})
	}

	return nil
}

var manifestRE = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)

func (rep *OVAReport) parseManifest(r io.Reader) error {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}

		m := manifestRE.FindStringSubmatch(text)
		if m == nil {
			return malformed("manifest line %d: %q is not ALGO(file)= hex", line, text)
		}

		rep.Manifest[m[2]] = m[1] + ":" + strings.ToLower(m[3])
	}

	return sc.Err()
}

// crossCheck compares the descriptor, the manifest and the members.
func (rep *OVAReport) crossCheck(digests map[string]map[string]string) error {
	sizes := map[string]int64{}
	for _, e := range rep.Entries {
		sizes[e.Name] = e.Size
	}

	for _, f := range rep.References {
		size, ok := sizes[f.Href]
		if !ok {
			return malformed("ova: OVF references %q, which the archive lacks", f.Href)
		}

		if f.Size != 0 && f.Size != size {
			return malformed("ova: OVF says %q is %d bytes, the archive holds %d", f.Href, f.Size, size)
		}
	}

	if err := rep.checkDiskCapacity(); err != nil {
		return err
	}

	hasManifest := false

	for _, e := range rep.Entries {
		switch path.Ext(e.Name) {
		case ".mf":
			hasManifest = true

			continue
		case ".cert":
			continue
		}

		if len(rep.Manifest) > 0 && rep.Manifest[e.Name] == "" {
			return malformed("ova: manifest has no digest for %q", e.Name)
		}
	}

	if !hasManifest {
		return nil
	}

	for name, want := range rep.Manifest {
		sums, ok := digests[name]
		if !ok {
			return malformed("ova: manifest lists %q, which the archive lacks", name)
		}

		algo, sum, _ := strings.Cut(want, ":")
		if sums[algo] != sum {
			return malformed("ova: %s of %q is %s, manifest says %s", algo, name, sums[algo], sum)
		}
	}

	return nil
}

// checkDiskCapacity matches each OVF disk with the VMDK its file reference names.
func (rep *OVAReport) checkDiskCapacity() error {
	hrefs := map[string]string{}
	for _, f := range rep.References {
		hrefs[f.ID] = f.Href
	}

	for _, d := range rep.Disks {
		for _, v := range rep.VMDKs {
			if v.Name == hrefs[d.FileRef] && v.CapacityBytes != d.CapacityBytes {
				return malformed("ova: OVF disk %q has capacity %d bytes, %s has %d", d.FileRef, d.CapacityBytes, v.Name, v.CapacityBytes)
			}
		}
	}

	return nil
}

// asTarError marks archive/tar's format errors as structural defects.
func asTarError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case errors.Is(err, tar.ErrHeader), errors.Is(err, tar.ErrFieldTooLong), errors.Is(err, tar.ErrInsecurePath):
		return markMalformed(err)
	default:
		return err
	}
}
