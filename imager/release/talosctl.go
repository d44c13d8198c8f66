package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
)

// TalosctlComponent is the release component that carries the talosctl binaries (Talos 1.11 and later).
const TalosctlComponent = "talosctl-all"

// TalosctlTimeout bounds one read of a talosctl-all image whose context has no deadline: unlike the catalog images
// it is hundreds of megabytes (nine binaries), all of which are read to hash every file.
const TalosctlTimeout = 20 * time.Minute

// Talosctl is a version's talosctl-all image and the talosctl binaries it carries. The image is the linux/amd64
// one, as the official service reads it (every platform image of the index carries the same files). Without
// digests and files, the registry had no talosctl-all image for the version.
type Talosctl struct {
	Repository string `json:"repository"`      // "siderolabs/talosctl-all"
	Tag        string `json:"tag,omitempty"`   // digest the version's tag named: an index, or a single image
	Image      string `json:"image,omitempty"` // digest of the image the files were read from
	// Files are the root files named talosctl-<os>-<arch>[.exe], sorted by name.
	Files []TalosctlFile `json:"files"`
}

// TalosctlFile is one talosctl binary of a talosctl-all image.
type TalosctlFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"` // "sha256:<hex>" of the file's bytes
}

// File finds a file by name.
func (t *Talosctl) File(name string) (TalosctlFile, bool) {
	if t == nil {
		return TalosctlFile{}, false
	}

	for _, f := range t.Files {
		if f.Name == name {
			return f, true
		}
	}

	return TalosctlFile{}, false
}

// Names lists the file names, sorted (empty, never nil).
func (t *Talosctl) Names() []string {
	names := []string{}

	if t != nil {
		for _, f := range t.Files {
			names = append(names, f.Name)
		}
	}

	return names
}

// talosctlName is the shape of the files the official service lists: talosctl-<os>-<arch>, .exe for Windows.
var talosctlName = regexp.MustCompile(`^talosctl-[a-z0-9]+-[a-z0-9]+(\.exe)?$`)

// IsTalosctlName reports whether name is a talosctl binary's name as talosctl-all publishes them.
func IsTalosctlName(name string) bool { return talosctlName.MatchString(name) }

// ServesTalosctl reports whether the factory serves talosctl for version: Talos 1.11.0-alpha.3 and later, by the
// official quirk, which compares major.minor.patch only (so every 1.11.0 pre-release counts, as officially).
func ServesTalosctl(version string) bool {
	return quirks.New(version).SupportsFactoryTalosctlDownload()
}

// ReadTalosctl reads the talosctl-all image of version: its digest and the name, size and sha256 of every talosctl
// binary in it. It is nil for a version before talosctl downloads, and a Talosctl without files (and without
// digests) when the registry has no such image (a mirror without it): neither is an error, nor a fault of the rest
// of the release. known is what an earlier read found; when the tag still names the same digest it is returned as
// it is, after one HEAD request, so a recheck does not download hundreds of megabytes again.
func (s Source) ReadTalosctl(ctx context.Context, version string, known *Talosctl) (*Talosctl, error) {
	sv, err := parseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("read talosctl of %q: %w", version, err)
	}

	tag := "v" + sv.String()
	if !ServesTalosctl(tag) {
		return nil, nil //nolint:nilnil // no talosctl for this version, and no error
	}

	ctx, cancel := timeoutUnlessDeadline(ctx, TalosctlTimeout)
	defer cancel()

	repoPath := s.Repository(TalosctlComponent)
	what := repoPath + ":" + tag

	ref, err := s.ref(repoPath, tag)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}

	desc, err := remote.Head(ref, s.remote(ctx)...)
	if err != nil {
		if notFound(err) {
			return &Talosctl{Repository: repoPath, Files: []TalosctlFile{}}, nil
		}

		return nil, fmt.Errorf("read %s: %w", what, err)
	}

	if known != nil && known.Repository == repoPath && known.Tag == desc.Digest.String() {
		return known, nil
	}

	if err := s.Verify(ctx, repoPath, desc.Digest.String()); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}

	out, err := s.readTalosctlFiles(ctx, repoPath, desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}

	return out, nil
}

// readTalosctlFiles hashes the talosctl binaries of the linux/amd64 image of repoPath@digest.
func (s Source) readTalosctlFiles(ctx context.Context, repoPath, digest string) (*Talosctl, error) {
	img, err := s.amd64Image(ctx, repoPath, digest)
	if err != nil {
		return nil, err
	}

	imgDigest, err := img.Digest()
	if err != nil {
		return nil, err
	}

	out := &Talosctl{Repository: repoPath, Tag: digest, Image: imgDigest.String(), Files: []TalosctlFile{}}

	err = eachRootFile(img, IsTalosctlName, func(name string, r io.Reader) error {
		hash := sha256.New()

		n, err := io.Copy(hash, r)
		out.Files = append(out.Files, TalosctlFile{Name: name, Size: n, Digest: "sha256:" + hex.EncodeToString(hash.Sum(nil))})

		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", repoPath, digest, err)
	}

	slices.SortFunc(out.Files, func(a, b TalosctlFile) int { return strings.Compare(a.Name, b.Name) })

	return out, nil
}
