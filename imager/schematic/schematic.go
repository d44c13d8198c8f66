// Package schematic is the recipe a client posts to the factory: which extensions, kernel arguments, META values,
// overlay, bootloader and secure boot options an image carries.
//
// Its guarantee is the identity of a schematic: ID is the lowercase hex sha256 of the canonical YAML that Marshal
// writes, and it equals, byte for byte, the ID the official Talos Image Factory gives the same schematic. Clients,
// installed nodes (through the virtual "schematic" extension) and Omni all recompute or compare that ID, so the struct
// layout, the YAML tags, the Go type names (they appear in error texts) and the YAML library are part of the contract
// and must not be "improved".
package schematic

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/imager/imageropts"
	yaml "go.yaml.in/yaml/v4"
)

// Schematic is the requested image customization. The field order is the serialisation order and therefore part
// of the ID.
type Schematic struct {
	// Owner is set only by the Enterprise edition of the official service; Unmarshal rejects it.
	Owner         string        `yaml:"owner,omitempty"`
	Overlay       Overlay       `yaml:"overlay,omitempty"`
	Customization Customization `yaml:"customization"` // never omitted: an empty one is written "customization: {}"
}

// Customization is what the schematic changes in the stock Talos image. The field order is part of the ID.
type Customization struct {
	// EmbeddedMachineConfiguration is a machine config baked into the image (Talos >= 1.12).
	EmbeddedMachineConfiguration string `yaml:"embeddedMachineConfiguration,omitempty"`
	// ExtraKernelArgs are appended to the kernel command line.
	ExtraKernelArgs []string `yaml:"extraKernelArgs,omitempty"`
	// Meta is the initial content of the META partition (or of the cmdline, for ISO and PXE).
	Meta []MetaValue `yaml:"meta,omitempty"`
	// SystemExtensions lists the official extensions to install.
	SystemExtensions SystemExtensions `yaml:"systemExtensions,omitempty"`
	// Bootloader overrides the imager's bootloader choice; BootloaderNone (the zero value) means "let it choose".
	Bootloader Bootloader `yaml:"bootloader,omitempty"`
	// SecureBoot holds the secure boot options.
	SecureBoot SecureBootCustomization `yaml:"secureboot,omitempty"`
	// DiskImage holds the disk image options.
	DiskImage DiskImageCustomization `yaml:"diskImage,omitempty"`
}

// MetaValue is one initial META key and its value.
type MetaValue struct {
	Key   uint8  `yaml:"key"`
	Value string `yaml:"value"`
}

// SystemExtensions lists official extensions by name, e.g. "siderolabs/iscsi-tools".
type SystemExtensions struct {
	// OfficialExtensions keeps the client's order: the order is part of the ID, so it is never sorted here.
	OfficialExtensions []string `yaml:"officialExtensions,omitempty"`
}

// Overlay selects a board overlay (single-board computers). Only Name is used to find it in the catalog.
type Overlay struct {
	Image   string         `yaml:"image"`
	Name    string         `yaml:"name"`
	Options map[string]any `yaml:"options,omitempty"`
}

// SecureBootCustomization holds the secure boot options.
type SecureBootCustomization struct {
	// EnrollKeys is sd-boot's secure-boot-enroll (off, manual, if-safe, force); it is validated only when a
	// secure boot ISO or disk image is built, never at creation, so any string is kept as given.
	EnrollKeys string `yaml:"enrollKeys,omitempty"`
	// IncludeWellKnownCertificates adds the well-known UEFI certificates to the auto-enrollment database.
	IncludeWellKnownCertificates bool `yaml:"includeWellKnownCertificates,omitempty"`
}

// DiskImageCustomization holds the disk image options.
type DiskImageCustomization struct {
	// SectorSize of the disk image in bytes; zero means the imager's default.
	SectorSize uint `yaml:"sectorSize,omitempty"`
}

// Bootloader is the Talos imager's own bootloader enum (the type profile.BootloaderKind aliases), used as is
// because its text form is what the canonical YAML holds: it marshals as none|dual-boot|sd-boot|grub, parses those
// names case-insensitively, rejects anything else with "<value> does not belong to BootloaderKind values", and its
// zero value is "none", so "bootloader: none" is omitted and gives the same ID as no bootloader at all.
type Bootloader = imageropts.BootloaderKind

// Bootloader values.
const (
	BootloaderNone     = imageropts.BootLoaderKindNone
	BootloaderDualBoot = imageropts.BootLoaderKindDualBoot
	BootloaderSDBoot   = imageropts.BootLoaderKindSDBoot
	BootloaderGrub     = imageropts.BootLoaderKindGrub
)

// ErrOwnerNotSupported is returned (wrapped in an InvalidError) for a schematic that sets owner: only the
// Enterprise edition of the official service assigns owners.
var ErrOwnerNotSupported = errors.New("owner field is only supported in Enterprise edition")

// InvalidError marks a schematic the client got wrong (bad YAML, unknown field, wrong type, empty body, owner set),
// so that HTTP layers can answer 400 with Error() as the body. Error() is the underlying text unchanged, because the
// official service answers with the YAML library's own message.
type InvalidError struct {
	Err error
}

func (e *InvalidError) Error() string { return e.Err.Error() }

func (e *InvalidError) Unwrap() error { return e.Err }

// Invalid marks the error as the client's fault for the frontends' error classification.
func (e *InvalidError) Invalid() bool { return true }

// IsInvalid reports whether err (or anything it wraps) is an InvalidError.
func IsInvalid(err error) bool {
	var invalid *InvalidError

	return errors.As(err, &invalid)
}

// Unmarshal parses a schematic strictly: unknown fields, duplicate keys, type errors and unknown bootloaders are
// errors, and so is an empty or comments-only body (io.EOF, text "EOF"). Only the first YAML document is read;
// JSON is accepted because it is YAML; null values count as absent. Every error it returns is an *InvalidError.
//
// Beyond what the official service checks, a schematic whose canonical form would not read back as itself is
// rejected (ErrUnstable). Only pathological overlay options do that, e.g. {1: a, 1.0: b}, which both marshal as
// the key "1": accepting them would store a text whose hash is the ID but which no longer parses.
// A NaN mapping key in overlay options (.nan) is rejected too (ErrNaNKey): its value cannot be looked up and its
// place in the sorted keys follows Go's random map order, so the same body would get a different ID each time.
func Unmarshal(data []byte) (*Schematic, error) {
	s, _, err := parse(data)

	return s, err
}

// Normalize parses a posted schematic as Unmarshal does and returns it with its canonical YAML and its ID: the one
// step POST /schematics needs.
func Normalize(data []byte) (*Schematic, []byte, string, error) {
	s, canonical, err := parse(data)
	if err != nil {
		return nil, nil, "", err
	}

	return s, canonical, IDOf(canonical), nil
}

// ErrNaNKey is wrapped (in an InvalidError) when overlay options use a YAML NaN (.nan, .NaN, !!float nan) as a
// mapping key.
var ErrNaNKey = errors.New("mapping key .nan is not a number, which never equals itself, so its value cannot be " +
	"looked up and its place among the keys is random; quote it (\".nan\") to use the text")

// ErrUnstable is wrapped (in an InvalidError) when a schematic's canonical form does not parse back to the same
// canonical form.
var ErrUnstable = errors.New("schematic has no stable canonical form")

func parse(data []byte) (*Schematic, []byte, error) {
	s, err := decode(data)
	if err != nil {
		return nil, nil, &InvalidError{Err: err}
	}

	if s.Owner != "" {
		return nil, nil, &InvalidError{Err: ErrOwnerNotSupported}
	}

	if err := findNaNKey("overlay options", s.Overlay.Options); err != nil {
		return nil, nil, &InvalidError{Err: err}
	}

	canonical, err := s.Marshal()
	if err != nil {
		return nil, nil, &InvalidError{Err: err}
	}

	again, err := decode(canonical)
	if err != nil {
		return nil, nil, &InvalidError{Err: fmt.Errorf("%w: %w", ErrUnstable, err)}
	}

	if recanonical, err := again.Marshal(); err != nil || !bytes.Equal(recanonical, canonical) {
		return nil, nil, &InvalidError{Err: ErrUnstable}
	}

	return s, canonical, nil
}

// findNaNKey looks for a NaN mapping key anywhere under an options value. The stability check in parse cannot be
// trusted to catch one, because the canonical text it compares is itself written in random map order. Keys are
// visited sorted, so a body with several NaN keys is refused with the same path every time.
func findNaNKey(path string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := findNaNKey(path+" "+k, v[k]); err != nil {
				return err
			}
		}
	case map[any]any:
		// Two keys can print alike (1 and "1"), so both subtrees are kept, not looked up by their text.
		type entry struct {
			key   string
			value any
		}

		entries := make([]entry, 0, len(v))

		for k, value := range v {
			if f, ok := k.(float64); ok && math.IsNaN(f) {
				return fmt.Errorf("%s: %w", path, ErrNaNKey)
			}

			entries = append(entries, entry{fmt.Sprint(k), value})
		}

		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })

		for _, e := range entries {
			if err := findNaNKey(path+" "+e.key, e.value); err != nil {
				return err
			}
		}
	case []any:
		for i, item := range v {
			if err := findNaNKey(fmt.Sprintf("%s[%d]", path, i), item); err != nil {
				return err
			}
		}
	}

	return nil
}

func decode(data []byte) (*Schematic, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)

	var s Schematic
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}

	return &s, nil
}

// Marshal writes the canonical YAML of the schematic: the text that is hashed into the ID, stored, and served back
// by GET /schematics/{id}.
func (s *Schematic) Marshal() ([]byte, error) {
	// yaml.Marshal is the v3-compatible encoder (4-space indent, no line folding) whose bytes the official service
	// hashes; the configurable Dump API folds at 80 columns by default.
	return yaml.Marshal(s)
}

// ID is the lowercase hex sha256 of Marshal's output.
func (s *Schematic) ID() (string, error) {
	canonical, err := s.Marshal()
	if err != nil {
		return "", err
	}

	return IDOf(canonical), nil
}

// IDOf is the schematic ID of canonical YAML bytes.
func IDOf(canonical []byte) string {
	sum := sha256.Sum256(canonical)

	return hex.EncodeToString(sum[:])
}

// ValidID reports whether s has the shape of a schematic ID: 64 lowercase hex digits. Routes use it to answer
// "not found" without a lookup.
func ValidID(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}

	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}

	return true
}

// HasOverlay reports whether the schematic names a board overlay. Only the name matters: the official service
// looks overlays up by name and ignores the image.
func (s *Schematic) HasOverlay() bool { return s.Overlay.Name != "" }

// Extensions returns the official extension names in the schematic's order.
func (s *Schematic) Extensions() []string { return s.Customization.SystemExtensions.OfficialExtensions }
