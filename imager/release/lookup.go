package release

// ExtensionAliases maps extension names that were renamed upstream to their current names. A lookup uses the alias
// only when the exact name is not in the catalog (docs/api.md §2.3).
var ExtensionAliases = map[string]string{
	"siderolabs/v4l-uvc":                        "siderolabs/v4l-uvc-drivers",
	"siderolabs/usb-modem":                      "siderolabs/usb-modem-drivers",
	"siderolabs/gasket":                         "siderolabs/gasket-driver",
	"siderolabs/talos-vmtoolsd":                 "siderolabs/vmtoolsd-guest-agent",
	"siderolabs/xe-guest-utilities":             "siderolabs/xen-guest-agent",
	"siderolabs/nvidia-container-toolkit":       "siderolabs/nvidia-container-toolkit-lts",
	"siderolabs/nvidia-open-gpu-kernel-modules": "siderolabs/nvidia-open-gpu-kernel-modules-lts",
	"siderolabs/nonfree-kmod-nvidia":            "siderolabs/nonfree-kmod-nvidia-lts",
	"siderolabs/nvidia-fabricmanager":           "siderolabs/nvidia-fabric-manager-lts",
	"siderolabs/i915-ucode":                     "siderolabs/i915",
	"siderolabs/amdgpu-firmware":                "siderolabs/amdgpu",
}

// ResolveExtension finds an official extension of v by name, trying the alias when the exact name is missing.
func ResolveExtension(v Version, name string) (Extension, bool) {
	if e, ok := findExtension(v, name); ok {
		return e, true
	}

	if alias, ok := ExtensionAliases[name]; ok {
		return findExtension(v, alias)
	}

	return Extension{}, false
}

func findExtension(v Version, name string) (Extension, bool) {
	for _, e := range v.Extensions {
		if e.Name == name {
			return e, true
		}
	}

	return Extension{}, false
}

// FindOverlay finds an official overlay of v by name (overlay.image is never used for the lookup).
func FindOverlay(v Version, name string) (Overlay, bool) {
	for _, o := range v.Overlays {
		if o.Name == name {
			return o, true
		}
	}

	return Overlay{}, false
}
