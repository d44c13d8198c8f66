package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/edgefactory/edgefactory/frontends/imports"
	"github.com/edgefactory/edgefactory/frontends/netboot"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/raftstore"
)

// The iPXE binaries an air-gap bundle carries: blobs spread to their holders like an image's, and a cluster setting
// naming them, which members doing network boot without --ipxe-dir read to fetch them. They carry no signature
// (Debian signs its archive, not the files): the digests the bundle lists are all that is checked.

// IPXESetting is the cluster setting naming the iPXE binaries the last bundle carrying them brought.
const IPXESetting = "netboot/ipxe"

// ipxeMediaType is how the binaries are recorded in the asset index.
const ipxeMediaType = "application/octet-stream"

// IPXEBinaries is the IPXESetting's value.
type IPXEBinaries struct {
	Source string                `json:"source,omitempty"` // where they come from (the bundle's VERSION text)
	Files  map[string]IPXEBinary `json:"files"`            // by name: undionly.kpxe, ipxe.efi, ipxe-arm64.efi
}

// IPXEBinary is one binary's blob.
type IPXEBinary struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// IPXE reads the binaries the cluster holds (ok is false until a bundle carrying them was imported).
func (reg *Registry) IPXE() (IPXEBinaries, bool, error) {
	raw, ok, err := reg.store.Setting(IPXESetting)
	if err != nil || !ok {
		return IPXEBinaries{}, false, err
	}

	var x IPXEBinaries
	if err := json.Unmarshal(raw, &x); err != nil {
		return IPXEBinaries{}, false, fmt.Errorf("setting %s: %w", IPXESetting, err)
	}

	return x, true, nil
}

// checkIPXE checks a commit's iPXE binaries: exactly the three names, each a blob the cluster has with that digest
// and size. It adds their blobs to blobs, to be spread with the images'.
func (reg *Registry) checkIPXE(ctx context.Context, x *imports.IPXE, blobs map[string]raftstore.Blob) error {
	want := netboot.BinaryNames()
	seen := map[string]bool{}

	for _, f := range x.Files {
		switch {
		case !slices.Contains(want, f.Name):
			return fmt.Errorf("iPXE binary %q: not one of %s", f.Name, strings.Join(want, ", "))
		case seen[f.Name]:
			return fmt.Errorf("iPXE binary %s: listed twice", f.Name)
		}

		seen[f.Name] = true

		if err := digest.Check(f.Digest); err != nil {
			return fmt.Errorf("iPXE binary %s: %w", f.Name, err)
		}

		if err := reg.checkBlobSize(ctx, f.Digest, f.Size); err != nil {
			return fmt.Errorf("iPXE binary %s: %w", f.Name, err)
		}

		blobs[f.Digest] = raftstore.Blob{Digest: f.Digest, Size: f.Size, MediaType: ipxeMediaType}
	}

	for _, name := range want {
		if !seen[name] {
			return fmt.Errorf("iPXE binary %s: missing (a bundle carries all three: %s)", name, strings.Join(want, ", "))
		}
	}

	return nil
}

// checkBlobSize checks that the cluster has a blob, of that size (its bytes were checked against the digest when
// they arrived).
func (reg *Registry) checkBlobSize(ctx context.Context, d string, size int64) error {
	if !reg.known(d) {
		return fmt.Errorf("blob %s is missing from the bundle", d)
	}

	a, err := reg.Blob(ctx, d)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer a.Close()

	if a.Size() != size {
		return fmt.Errorf("blob %s is %d bytes, the bundle says %d", d, a.Size(), size)
	}

	return nil
}

// recordIPXE writes the IPXESetting (unchanged when it says the same already).
func (reg *Registry) recordIPXE(ctx context.Context, x *imports.IPXE) error {
	v := IPXEBinaries{Source: x.Source, Files: map[string]IPXEBinary{}}
	for _, f := range x.Files {
		v.Files[f.Name] = IPXEBinary{Digest: f.Digest, Size: f.Size}
	}

	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}

	if old, ok, _ := reg.store.Setting(IPXESetting); ok && string(old) == string(raw) {
		return nil
	}

	return raftstore.PutSetting(ctx, reg.leader, IPXESetting, raw)
}
