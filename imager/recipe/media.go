package recipe

import "strings"

// mediaTypes are the Content-Types the official service sets from the path's extension (docs/api.md §3.4), checked in
// order. Anything else is application/octet-stream: the official image has no mime database, so Go's
// mime.TypeByExtension falls back to that there, and a host's /etc/mime.types must not change our headers.
var mediaTypes = []struct{ suffix, mediaType string }{
	{".efi", "application/efi"},
	{".iso", "application/x-iso9660-image"},
	{".xz", "application/x-xz"},
	{".gz", "application/gzip"}, // also .tar.gz
	{".qcow2", "application/x-qemu-disk"},
}

// MediaType is the Content-Type of the asset, from its normalised path's extension.
func MediaType(a Asset) string {
	for _, m := range mediaTypes {
		if strings.HasSuffix(a.Path, m.suffix) {
			return m.mediaType
		}
	}

	return "application/octet-stream"
}

// Filename is the default download name (Content-Disposition) of the asset: its normalised path. A ?filename=
// override is the frontend's business and never reaches the recipe.
func (a Asset) Filename() string { return a.Path }
