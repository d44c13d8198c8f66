package synthetic

import (
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.yaml.in/yaml/v4"
)

// UpstreamRegistry is the registry written in the release's catalogs (image-digests, overlays.yaml), as in the
// real release; the factory replaces it with the registry it is configured with.
const UpstreamRegistry = "ghcr.io"

// extension is one synthetic system extension: a firmware-only or service-shaped image, never kernel modules (they
// would need a real rootfs.sqsh in the initramfs).
type extension struct {
	name        string // repository base name, e.g. "amd-ucode"
	tag         func(version string) string
	author      string
	description string
	rootfs      func(version string) []entry // paths relative to rootfs/
}

// extensions are the synthetic release's official extensions, in catalog (alphabetical) order.
var extensions = []extension{
	{
		name:        "amd-ucode",
		tag:         func(string) string { return "20250917" },
		author:      "Sidero Labs",
		description: "This system extension provides AMD microcode binaries (synthetic).",
		rootfs: func(string) []entry {
			return []entry{
				text("usr/lib/firmware/amd-ucode/microcode_amd_fam17h.bin", 0o644, "synthetic AMD microcode family 17h\n"),
				text("usr/lib/firmware/amd-ucode/microcode_amd_fam19h.bin", 0o644, "synthetic AMD microcode family 19h\n"),
			}
		},
	},
	{
		name:        "hello-world-service",
		tag:         func(v string) string { return v },
		author:      "Sidero Labs",
		description: "This system extension provides an example Talos extension service (synthetic).",
		rootfs: func(v string) []entry {
			return []entry{
				text("usr/local/etc/containers/hello-world-service.yaml", 0o644, helloServiceSpec),
				text("usr/local/lib/containers/hello-world-service/hello-world-service", 0o755,
					"#!/bin/sh\necho \"Hello from the synthetic hello-world-service "+v+"\"\n"),
			}
		},
	},
	{
		name:        "i915",
		tag:         func(v string) string { return "20250917-" + v },
		author:      "Sidero Labs",
		description: "This system extension provides Intel i915 GPU firmware (synthetic).",
		rootfs: func(string) []entry {
			return []entry{
				text("usr/lib/firmware/i915/tgl_guc_70.bin", 0o644, "synthetic i915 GuC firmware\n"),
				text("usr/lib/firmware/i915/tgl_huc.bin", 0o644, "synthetic i915 HuC firmware\n"),
			}
		},
	},
}

const helloServiceSpec = `name: hello-world-service
container:
  entrypoint: ./hello-world-service
depends:
  - network:
      - addresses
restart: always
`

// extensionManifest is manifest.yaml of a system extension.
type extensionManifest struct {
	Version  string `yaml:"version"`
	Metadata struct {
		Name          string `yaml:"name"`
		Version       string `yaml:"version"`
		Author        string `yaml:"author"`
		Description   string `yaml:"description"`
		Compatibility struct {
			Talos struct {
				Version string `yaml:"version"`
			} `yaml:"talos"`
		} `yaml:"compatibility"`
	} `yaml:"metadata"`
}

// image builds the extension's multi-arch index for a Talos version. minVersion is the constraint written in
// manifest.yaml (">= minVersion"), so every version of the release accepts every extension.
func (e extension) image(version, minVersion string) (v1.ImageIndex, error) {
	var m extensionManifest

	m.Version = "v1alpha1"
	m.Metadata.Name = e.name
	m.Metadata.Version = e.tag(version)
	m.Metadata.Author = e.author
	m.Metadata.Description = e.description
	m.Metadata.Compatibility.Talos.Version = ">= " + minVersion

	manifest, err := yaml.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("extension %s manifest: %w", e.name, err)
	}

	entries := []entry{file("manifest.yaml", 0o644, manifest)}
	for _, f := range e.rootfs(version) {
		f.path = "rootfs/" + f.path
		entries = append(entries, f)
	}

	l, err := layer(entries)
	if err != nil {
		return nil, fmt.Errorf("extension %s: %w", e.name, err)
	}

	return sameForAll(v1.Config{Labels: map[string]string{"org.opencontainers.image.title": e.name}}, l)
}

// catalogLine is an image-digests line: <upstream registry>/<repo>:<tag>@<digest>.
func catalogLine(repo, tag, digest string) string {
	return UpstreamRegistry + "/" + repo + ":" + tag + "@" + digest
}

// description is a descriptions.yaml value.
type description struct {
	Author      string `yaml:"author"`
	Description string `yaml:"description"`
}

// extensionsCatalog builds the <ns>/extensions:<v> image: image-digests (one line per extension, in order) and
// descriptions.yaml (keyed by the whole line), as the real catalog image holds them.
func extensionsCatalog(lines []string, descs map[string]description) (v1.ImageIndex, error) {
	sorted := append([]string(nil), lines...)
	sort.Strings(sorted) // the real file is sorted; our definitions already are, this keeps it true

	descYAML, err := yaml.Marshal(descs)
	if err != nil {
		return nil, fmt.Errorf("descriptions.yaml: %w", err)
	}

	l, err := layer([]entry{
		text("image-digests", 0o644, strings.Join(sorted, "\n")+"\n"),
		file("descriptions.yaml", 0o644, descYAML),
	})
	if err != nil {
		return nil, fmt.Errorf("extensions catalog: %w", err)
	}

	return sameForAll(v1.Config{}, l)
}
