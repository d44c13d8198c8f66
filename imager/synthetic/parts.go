package synthetic

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// PartNames are the files expected per architecture in a parts directory (`make deps` puts them there).
var PartNames = []string{"vmlinuz", "busybox", "systemd-boot.efi", "systemd-stub.efi"}

// Architectures are the CPU architectures of the synthetic release.
var Architectures = []string{"amd64", "arm64"}

// Parts are the real binaries a synthetic release is made of: per architecture a Debian kernel, busybox-static,
// systemd-boot and the systemd UKI stub. A missing file is replaced by a small generated stand-in, so a release can
// always be built; only a release from real parts boots (Real reports which).
type Parts struct {
	dir      string
	files    map[string][]byte // "amd64/vmlinuz" → bytes
	missing  []string
	versions string
	sum      string
}

// DefaultPartsDir is where `make deps` leaves the parts: $EDGEFACTORY_PARTS, else $EDGEFACTORY_BUILD_DIR/parts, else
// build/parts in the repository that contains the working directory (or build/parts relative to it).
func DefaultPartsDir() string {
	if d := os.Getenv("EDGEFACTORY_PARTS"); d != "" {
		return d
	}

	if d := os.Getenv("EDGEFACTORY_BUILD_DIR"); d != "" {
		return filepath.Join(d, "parts")
	}

	return filepath.Join(repoRoot(), "build", "parts")
}

// repoRoot walks up from the working directory to the directory holding go.mod, so tests of any package find the
// parts of the repository they run in.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}

	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}

		if filepath.Dir(d) == d {
			return wd
		}
	}
}

// LoadParts reads the parts in dir. Missing files (or a missing dir) are not an error: they are replaced by
// stand-ins and reported by Missing. logger (may be nil) gets a warning naming what is missing.
func LoadParts(dir string, logger *slog.Logger) (*Parts, error) {
	p := &Parts{dir: dir, files: make(map[string][]byte)}

	for _, arch := range Architectures {
		for _, name := range PartNames {
			key := arch + "/" + name

			data, err := os.ReadFile(filepath.Join(dir, arch, name))

			switch {
			case errors.Is(err, fs.ErrNotExist):
				p.missing = append(p.missing, key)
				data = standIn(arch, name)
			case err != nil:
				return nil, fmt.Errorf("read part %s: %w", key, err)
			}

			p.files[key] = data
		}
	}

	if v, err := os.ReadFile(filepath.Join(dir, "VERSIONS")); err == nil {
		p.versions = string(v)
	}

	p.sum = p.fingerprint()

	if len(p.missing) > 0 && logger != nil {
		logger.Warn("synthetic release parts missing: using stand-ins that do not boot; `make deps` fetches the real ones",
			"dir", dir, "missing", p.missing)
	}

	return p, nil
}

// StandInParts returns parts made only of stand-ins (Real() == false): small and quick, for tests that never boot.
func StandInParts() *Parts {
	p, _ := LoadParts(filepath.Join(os.TempDir(), "edgefactory-no-parts-here"), nil) // no files: no error

	return p
}

// Real reports whether every part is the real file (so the release boots).
func (p *Parts) Real() bool { return len(p.missing) == 0 }

// Missing lists the parts replaced by stand-ins, as "arch/name".
func (p *Parts) Missing() []string { return slices.Clone(p.missing) }

// Dir is the directory the parts were loaded from.
func (p *Parts) Dir() string { return p.dir }

// Versions is the content of the parts' VERSIONS file (the Debian packages they came from), or "".
func (p *Parts) Versions() string { return p.versions }

// File returns the bytes of one part, e.g. File("arm64", "vmlinuz"). Callers must not modify them.
func (p *Parts) File(arch, name string) []byte { return p.files[arch+"/"+name] }

// fingerprint identifies the content of all parts (the cache key of built releases).
func (p *Parts) fingerprint() string {
	h := sha256.New()

	for _, arch := range Architectures {
		for _, name := range PartNames {
			sum := sha256.Sum256(p.files[arch+"/"+name])
			fmt.Fprintf(h, "%s/%s %x\n", arch, name, sum)
		}
	}

	return hex.EncodeToString(h.Sum(nil))
}

// standIn generates a small deterministic placeholder for a missing part. EFI binaries and kernels start with "MZ"
// like the real PE files so that magic checks pass; nothing about them is bootable.
func standIn(arch, name string) []byte {
	var b bytes.Buffer

	if name != "busybox" {
		b.WriteString("MZ")
	}

	line := fmt.Sprintf("edgefactory synthetic stand-in for %s/%s: run `make deps` for the real file\n", arch, name)
	for b.Len() < 4096 {
		b.WriteString(line)
	}

	return b.Bytes()
}
