package recipe

import (
	"archive/tar"
	"fmt"
	"io"
	"iter"
	"path"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/schematic"
)

// SchematicExtensionName is the name of the virtual extension that records an image's schematic. Talos reports it
// on installed nodes, and Omni and talosctl read the schematic ID from its version, so the name is fixed.
const SchematicExtensionName = "schematic"

// schematicDir is where the extension's marker file lives on the node: an empty file named after the schematic ID.
const schematicDir = "rootfs/usr/local/share/schematic"

// extensionEpoch is the fixed modification time of every tar entry, so the tarball's bytes depend only on its
// arguments.
var extensionEpoch = time.Unix(0, 0).UTC()

// SchematicExtension writes the virtual "schematic" extension (docs/api.md §2.5) as a plain filesystem tarball, the
// form the Talos imager accepts as a TarballPath extension: its root holds exactly manifest.yaml and rootfs/, parent
// directories come before what they contain, and owners and times are fixed, so equal arguments give equal bytes.
//
// The manifest's version is the schematic ID and, for Talos >= 1.7, its extraInfo is the canonical schematic YAML.
func SchematicExtension(w io.Writer, id string, canonical []byte, author, version string) error {
	if !schematic.ValidID(id) {
		return fmt.Errorf("schematic extension: invalid schematic ID %q", id)
	}

	manifest := extensions.Manifest{
		Version: "v1alpha1",
		Metadata: extensions.Metadata{
			Name:        SchematicExtensionName,
			Version:     id,
			Author:      author,
			Description: "Virtual extension recording the schematic this image was built from.",
			Compatibility: extensions.Compatibility{
				Talos: extensions.Constraint{Version: ">= 1.0.0"},
			},
		},
	}

	// The extraInfo field arrived with overlays (Talos 1.7); older Talos does not read it.
	if quirks.New(version).SupportsOverlay() {
		manifest.Metadata.ExtraInfo = string(canonical)
	}

	manifestYAML, err := yaml.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("schematic extension %s: manifest: %w", id, err)
	}

	tw := tar.NewWriter(w)

	if err = writeEntry(tw, tar.TypeReg, "manifest.yaml", 0o644, manifestYAML); err != nil {
		return fmt.Errorf("schematic extension %s: %w", id, err)
	}

	for dir := range parents(schematicDir) {
		if err = writeEntry(tw, tar.TypeDir, dir+"/", 0o755, nil); err != nil {
			return fmt.Errorf("schematic extension %s: %w", id, err)
		}
	}

	if err = writeEntry(tw, tar.TypeReg, path.Join(schematicDir, id), 0o644, nil); err != nil {
		return fmt.Errorf("schematic extension %s: %w", id, err)
	}

	if err = tw.Close(); err != nil {
		return fmt.Errorf("schematic extension %s: %w", id, err)
	}

	return nil
}

// parents yields "a", "a/b", "a/b/c" for "a/b/c": every directory down to and including dir, outermost first.
func parents(dir string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := range len(dir) {
			if dir[i] == '/' && !yield(dir[:i]) {
				return
			}
		}

		yield(dir)
	}
}

func writeEntry(tw *tar.Writer, typ byte, name string, mode int64, data []byte) error {
	h := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     int64(len(data)),
		ModTime:  extensionEpoch,
		Format:   tar.FormatUSTAR,
	}

	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}

	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}

	return nil
}
