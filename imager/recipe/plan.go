package recipe

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// PlanOptions are the node-wide settings a recipe depends on.
type PlanOptions struct {
	// SecureBootKeys is the fingerprint of the secure-boot signing material; "" means secure boot is disabled.
	SecureBootKeys string
	// Author is the author of the virtual "schematic" extension, e.g. "Image Factory (https://factory.example)".
	Author string
	// Builder names the builder and Talos imager versions.
	Builder string
	// HostArch is the build host's architecture; "" means runtime.GOARCH.
	HostArch string
}

// keyDomain starts the hashed encoding so that a future change of the encoding can never collide with this one.
const keyDomain = "edgefactory recipe v1\n"

// sectorSize is the only disk sector size the Talos v1.13 imager writes (its profile has no sector size option).
const sectorSize = 512

// Plan turns a parsed asset and a schematic into the recipe that builds it against the catalog of one Talos
// version. It is pure: everything comes from the arguments, so every node plans the same recipe and key.
//
// It checks what the official service checks when it builds (docs/api.md §2.3), each only for the outputs that use the
// field, and answers those failures with an *InvalidError; a catalog that lacks an architecture is a plain error.
func Plan(a Asset, schematicID string, canonical []byte, s *schematic.Schematic, v release.Version, opts PlanOptions) (Recipe, error) {
	if s == nil {
		return Recipe{}, fmt.Errorf("plan %s: no schematic", a.Path)
	}

	if len(canonical) > 0 && schematic.IDOf(canonical) != schematicID {
		return Recipe{}, fmt.Errorf("plan %s: canonical schematic does not hash to %s", a.Path, schematicID)
	}

	hostArch := opts.HostArch
	if hostArch == "" {
		hostArch = runtime.GOARCH
	}

	if _, ok := archAliases[hostArch]; !ok || archAliases[hostArch] != hostArch {
		return Recipe{}, fmt.Errorf("plan %s: unsupported build host architecture %q", a.Path, hostArch)
	}

	if err := validate(a, s, v, opts); err != nil {
		return Recipe{}, err
	}

	inputs, err := resolveInputs(a, s, v, hostArch)
	if err != nil {
		return Recipe{}, err
	}

	r := Recipe{
		SchematicID: schematicID,
		Schematic:   canonical,
		Version:     v.Version,
		Asset:       a,
		Inputs:      inputs,
		Builder:     opts.Builder,
	}

	// Settings that cannot change the bytes stay out of the key, so changing them rebuilds only what they affect.
	if a.SecureBoot {
		r.SecureBootKeys = opts.SecureBootKeys
	}

	if buildsInitramfs(a.Kind) {
		r.Author = opts.Author // only the schematic extension carries it
	}

	if r.Key, err = r.ComputeKey(); err != nil {
		return Recipe{}, fmt.Errorf("plan %s: %w", a.Path, err)
	}

	return r, nil
}

// buildsInitramfs reports whether the output carries an initramfs, and therefore extensions, the overlay and the
// embedded configuration: everything but kernel and cmdline.
func buildsInitramfs(k profile.OutputKind) bool {
	return k != profile.OutKindKernel && k != profile.OutKindCmdline
}

// validate runs the build-time checks in the official order, each for the outputs it applies to.
func validate(a Asset, s *schematic.Schematic, v release.Version, opts PlanOptions) error {
	q := quirks.New(v.Version)

	if a.SecureBoot {
		if opts.SecureBootKeys == "" {
			return &InvalidError{Err: ErrSecureBootDisabled}
		}

		if !q.SupportsUKI() {
			return invalidf("secure boot is not supported for Talos version %s", v.Version)
		}
	}

	if a.Kind == profile.OutKindUKI && !q.SupportsUKI() {
		return invalidf("UKI output is not supported for Talos version %s", v.Version)
	}

	if err := validateBoard(a, s, v, q); err != nil {
		return err
	}

	overlay, _ := overlayOf(a, s)
	if overlay != "" && !q.SupportsOverlay() {
		return invalidf("overlay is not supported for Talos version %s", v.Version)
	}

	if buildsInitramfs(a.Kind) {
		for _, name := range s.Extensions() {
			if _, ok := release.ResolveExtension(v, name); !ok {
				return invalidf("official extension %q is not available for Talos version %s", name, v.Version)
			}
		}

		// The official message formats an empty struct here (a bug); naming the overlay is what it meant.
		if overlay != "" {
			if _, ok := release.FindOverlay(v, overlay); !ok {
				return invalidf("official overlay %q is not available for Talos version %s", overlay, v.Version)
			}
		}

		if s.Customization.EmbeddedMachineConfiguration != "" && !q.SupportsEmbeddedConfig() {
			return invalidf("embedding configuration is not supported for Talos version %s", v.Version)
		}
	}

	if a.SecureBoot && (a.Kind == profile.OutKindISO || a.Kind == profile.OutKindImage) {
		if _, err := enrollKeys(s); err != nil {
			return err
		}
	}

	if ss := s.Customization.DiskImage.SectorSize; a.Kind == profile.OutKindImage && ss != 0 && ss != sectorSize {
		return invalidf("disk image sector size %d is not supported: only %d", ss, sectorSize)
	}

	// Not an official check: such options would give the recipe a key chosen by chance (see jsonSafe).
	if _, options := overlayOf(a, s); takesOverlay(a) && options != nil {
		if _, err := jsonSafe(options); err != nil {
			return invalidf("overlay options: %w", err)
		}
	}

	return nil
}

// takesOverlay reports whether the output is built with its overlay. A schematic's overlay, like the official
// service's, never reaches the kernel or the command line; a board path's does reach its command line: the board's
// kernel arguments (its serial console) are what an image-service board command line carried, and what a board's
// PXE script must boot with.
func takesOverlay(a Asset) bool {
	return buildsInitramfs(a.Kind) || a.Board != ""
}

// validateBoard checks a legacy board path: the board must be an overlay of this version's catalog (for every
// output, the command line included: the board is what was asked for), and the schematic must not have an overlay
// of its own, since one build has one overlay and silently picking one would build something nobody asked for.
func validateBoard(a Asset, s *schematic.Schematic, v release.Version, q quirks.Quirks) error {
	if a.Board == "" {
		return nil
	}

	if o := s.Overlay; o.Name != "" || o.Image != "" || len(o.Options) > 0 {
		theirs := fmt.Sprintf("overlay %q", o.Name)
		if o.Name == "" {
			theirs = "overlay section"
		}

		return invalidf("board %q conflicts with the schematic's %s: name the overlay in the schematic or "+
			"the board in the path, not both", a.Board, theirs)
	}

	if !q.SupportsOverlay() {
		return invalidf("board %q is not supported for Talos version %s: boards are built from overlays, which "+
			"need Talos v1.7.0 or later", a.Board, v.Version)
	}

	if _, ok := release.FindOverlay(v, a.Board); !ok {
		return invalidf("unknown board %q: Talos version %s has no overlay of that name", a.Board, v.Version)
	}

	return nil
}

// enrollKeys parses secureboot.enrollKeys; empty means sd-boot's default, if-safe.
func enrollKeys(s *schematic.Schematic) (profile.SDBootEnrollKeys, error) {
	value := s.Customization.SecureBoot.EnrollKeys
	if value == "" {
		return profile.SDBootEnrollKeysIfSafe, nil
	}

	keys, err := profile.SDBootEnrollKeysString(value)
	if err != nil {
		return 0, invalidf("invalid secureboot enrollKeys value: %q (want one of off, manual, if-safe, force)", value)
	}

	return keys, nil
}

// resolveInputs pins every image the build reads by digest. validate has already checked the names exist.
func resolveInputs(a Asset, s *schematic.Schematic, v release.Version, hostArch string) (Inputs, error) {
	var in Inputs

	// The imager image of any architecture holds the boot files of both targets; the host's is the one we can run.
	imagerDigest := v.Imager.Arch[hostArch]
	if imagerDigest == "" {
		return Inputs{}, fmt.Errorf("catalog %s: no %s image for linux/%s", v.Version, v.Imager.Repository, hostArch)
	}

	in.Imager = Image{Repository: v.Imager.Repository, Digest: imagerDigest, Tag: v.Version}

	if a.Kind == profile.OutKindInstaller {
		digest := v.InstallerBase.Arch[a.Arch]
		if digest == "" {
			return Inputs{}, fmt.Errorf("catalog %s: no %s image for linux/%s", v.Version, v.InstallerBase.Repository, a.Arch)
		}

		in.InstallerBase = &Image{Repository: v.InstallerBase.Repository, Digest: digest, Platform: "linux/" + a.Arch, Tag: v.Version}
	}

	if name, options := overlayOf(a, s); name != "" && takesOverlay(a) {
		o, _ := release.FindOverlay(v, name)
		img := Image{Repository: o.Image, Digest: o.Digest, Platform: "linux/" + hostArch, Tag: tagOf(o.Ref)}
		in.Overlay = &Overlay{Image: img, Name: name, Options: maps.Clone(options)}

		if a.Kind == profile.OutKindInstaller {
			target := img
			target.Platform = "linux/" + a.Arch
			in.OverlayInstaller = &target
		}
	}

	if !buildsInitramfs(a.Kind) {
		return in, nil
	}

	for _, name := range s.Extensions() {
		ext, _ := release.ResolveExtension(v, name)
		in.Extensions = append(in.Extensions, Image{
			Repository: ext.Name,
			Digest:     ext.Digest,
			Platform:   "linux/" + a.Arch,
			Tag:        tagOf(ext.Ref),
		})
	}

	return in, nil
}

// overlayOf names the overlay of the build and its options: the legacy board of the path (the overlay of the same
// name, with no options; validateBoard has made sure the schematic has no overlay then), else the schematic's.
func overlayOf(a Asset, s *schematic.Schematic) (string, map[string]any) {
	if a.Board != "" {
		return a.Board, nil
	}

	return s.Overlay.Name, s.Overlay.Options
}

// tagOf is the tag of "<registry>/<repository>:<tag>", or "".
func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}

	return ""
}

// ComputeKey hashes the recipe: lowercase hex sha256 of its JSON encoding (fields in struct order, map keys sorted
// by encoding/json). Schematic and Key take no part: the schematic ID stands for the schematic.
func (r Recipe) ComputeKey() (string, error) {
	if r.Inputs.Overlay != nil {
		overlay := *r.Inputs.Overlay
		r.Inputs.Overlay = &overlay

		if overlay.Options != nil {
			options, err := jsonSafe(overlay.Options)
			if err != nil {
				return "", fmt.Errorf("encode recipe: overlay options: %w", err)
			}

			overlay.Options, _ = options.(map[string]any)
		}
	}

	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode recipe: %w", err)
	}

	sum := sha256.Sum256(append([]byte(keyDomain), data...))

	return hex.EncodeToString(sum[:]), nil
}

// jsonSafe rewrites free-form YAML values (overlay options) into values encoding/json accepts: mappings with
// non-string keys get string keys, NaN and infinities become text. A collision between two schematics' options
// cannot make them share a key, because the schematic ID is hashed too; a collision within one mapping (null and
// "<nil>", .nan and "NaN", a timestamp and its text: different YAML keys that print alike) would leave the
// surviving value, and so the key, to map iteration order. jsonSafe refuses it instead, naming the keys, and
// visits mappings in key order so that the one it names is always the same.
func jsonSafe(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))

		for _, k := range slices.Sorted(maps.Keys(v)) {
			e, err := jsonSafe(v[k])
			if err != nil {
				return nil, err
			}

			out[k] = e
		}

		return out, nil
	case map[any]any:
		return jsonSafeMapping(v)
	case []any:
		out := make([]any, len(v))

		for i, e := range v {
			var err error
			if out[i], err = jsonSafe(e); err != nil {
				return nil, err
			}
		}

		return out, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprint(v), nil
		}

		return v, nil
	default:
		return v, nil
	}
}

// jsonSafeMapping is jsonSafe of a mapping with keys of any type. Entries are collected rather than looked up by
// key: a NaN key is never found again.
func jsonSafeMapping(v map[any]any) (any, error) {
	type entry struct {
		name       string
		key, value any
	}

	entries := make([]entry, 0, len(v))
	for k, e := range v {
		entries = append(entries, entry{name: fmt.Sprint(k), key: k, value: e})
	}

	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })

	for i := 1; i < len(entries); i++ {
		if name := entries[i].name; name == entries[i-1].name {
			var alike []string

			for _, e := range entries {
				if e.name == name {
					alike = append(alike, yamlKey(e.key))
				}
			}

			slices.Sort(alike)

			return nil, fmt.Errorf("keys %s read alike (%q): rename one", strings.Join(alike, " and "), name)
		}
	}

	out := make(map[string]any, len(entries))

	for _, e := range entries {
		value, err := jsonSafe(e.value)
		if err != nil {
			return nil, err
		}

		out[e.name] = value
	}

	return out, nil
}

// yamlKey is a mapping key as YAML writes it, strings quoted, for an error naming keys that print alike.
func yamlKey(k any) string {
	if s, ok := k.(string); ok {
		return strconv.Quote(s)
	}

	text, err := yaml.Marshal(k)
	if err != nil {
		return fmt.Sprintf("%v (%T)", k, k)
	}

	return strings.TrimSpace(string(text))
}
