// Package frontends speaks the wire protocols of Edge Factory — the Image Factory HTTP API, iPXE and the OCI
// registry — on one listener. It knows protocols only: everything it serves comes through the small interfaces
// below, which the node implements. It never imports raftstore or ring.
//
// Errors crossing these interfaces are classified by behaviour, not by type: an error (or any error it wraps)
// with a method `NotFound() bool`, `Invalid() bool`, `TooLarge() bool` or `Unavailable() bool` returning true is
// the client's or the cluster's condition and maps to 404, 400, 413 or 503; a full data disk (ENOSPC or EDQUOT in
// the chain) maps to 507; anything else is a server failure. Each frontend maps these classes to its own wire form
// in one place.
package frontends

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// Schematics stores and finds schematics.
type Schematics interface {
	// CreateSchematic stores s (idempotently) and returns its ID and canonical YAML once the write has committed.
	CreateSchematic(ctx context.Context, s *schematic.Schematic) (id string, canonical []byte, err error)
	// Schematic returns the canonical YAML of a stored schematic, or a NotFound error.
	Schematic(ctx context.Context, id string) ([]byte, error)
}

// Catalog answers questions about the Talos releases this factory knows. Versions may be given with or without
// the "v" prefix; a malformed version is Invalid, an unknown one NotFound.
type Catalog interface {
	// Versions lists available versions ("v"-prefixed), ascending.
	Versions(ctx context.Context) ([]string, error)
	// BrokenVersions lists the versions configured as broken (hidden from Versions).
	BrokenVersions(ctx context.Context) ([]string, error)
	// Extensions lists a version's official extensions.
	Extensions(ctx context.Context, version string) ([]release.Extension, error)
	// Overlays lists a version's official overlays (empty for versions without overlay support).
	Overlays(ctx context.Context, version string) ([]release.Overlay, error)
}

// Assets finds boot assets, building them when needed.
type Assets interface {
	// Asset returns the asset at path (an /image path: docs/api.md §3.1) for a schematic and Talos version. The caller
	// must Close it.
	Asset(ctx context.Context, schematicID, version, path string) (Asset, error)
	// PXE returns what an iPXE script for a `<platform>-<arch>[-secureboot]` path needs.
	PXE(ctx context.Context, schematicID, version, path string) (PXEBoot, error)
	// SecureBootCertificate returns the PEM certificate secure-boot assets are signed with.
	SecureBootCertificate(ctx context.Context) ([]byte, error)
}

// Talosctl serves the talosctl binaries of a Talos version (its talosctl-all image). Versions are parsed tolerantly
// ("v1.11" is v1.11.0); a malformed version is Invalid, an unknown one NotFound, and one whose image the cluster has
// not read yet Unavailable.
type Talosctl interface {
	// TalosctlFiles lists the binaries' file names, sorted; empty for versions before talosctl downloads.
	TalosctlFiles(ctx context.Context, version string) ([]string, error)
	// TalosctlFile returns one binary, served like any asset; an unknown name, or a version without
	// talosctl-all, is NotFound. The caller must Close it.
	TalosctlFile(ctx context.Context, version, name string) (Asset, error)
}

// Mirrors points Talos machines at the cluster's registry.
type Mirrors interface {
	// RegistryMirrorPatch is the machine-configuration patch (YAML) that makes machines of a Talos version pull
	// that version's images from the cluster; NotFound when no image of the cluster serves that version.
	RegistryMirrorPatch(ctx context.Context, version string) ([]byte, error)
}

// Asset is one stored, verified boot asset. Every frontend serves it through this one shape.
type Asset interface {
	// Content reads the bytes; it is an *os.File where possible so the kernel can send it (sendfile).
	Content() io.ReadSeeker
	Size() int64
	// Digest is "sha256:<hex>" of the bytes.
	Digest() string
	MediaType() string
	// Filename is the default download name (the normalised path).
	Filename() string
	Close() error
}

// PXEBoot is the data of an iPXE script.
type PXEBoot struct {
	// Version is the normalised "v"-prefixed Talos version, Arch the normalised architecture.
	Version, Platform, Arch string
	SecureBoot              bool
	// Cmdline is the kernel command line of the cmdline-<platform>-<arch>[-secureboot] asset.
	Cmdline string
}

// Health reports whether the node can serve.
type Health interface {
	// Ready returns nil when the node can answer requests, or an error saying what it is waiting for.
	Ready(ctx context.Context) error
}

// Class is how a frontend should present an error.
type Class int

// Error classes, in the order Classify checks them.
const (
	ClassInternal Class = iota
	ClassInvalid
	ClassNotFound
	ClassTooLarge
	ClassUnavailable
	ClassCanceled
	ClassNoSpace // this member's data disk is full (ENOSPC, EDQUOT anywhere in the chain)
)

// Classify finds the class of err by looking for the marker methods described in the package comment in its
// chain.
func Classify(err error) Class {
	switch {
	case err == nil:
		return ClassInternal
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return ClassNoSpace
	case marked(err, func(e interface{ Invalid() bool }) bool { return e.Invalid() }):
		return ClassInvalid
	case marked(err, func(e interface{ NotFound() bool }) bool { return e.NotFound() }):
		return ClassNotFound
	case marked(err, func(e interface{ TooLarge() bool }) bool { return e.TooLarge() }):
		return ClassTooLarge
	case marked(err, func(e interface{ Unavailable() bool }) bool { return e.Unavailable() }):
		return ClassUnavailable
	default:
		return ClassInternal
	}
}

func marked[M any](err error, set func(M) bool) bool {
	var m M

	return errors.As(err, &m) && set(m)
}

// Error is a classified error with a message meant for the client.
type Error struct {
	class Class
	msg   string
	err   error
}

func (e *Error) Error() string     { return e.msg }
func (e *Error) Unwrap() error     { return e.err }
func (e *Error) Invalid() bool     { return e.class == ClassInvalid }
func (e *Error) NotFound() bool    { return e.class == ClassNotFound }
func (e *Error) TooLarge() bool    { return e.class == ClassTooLarge }
func (e *Error) Unavailable() bool { return e.class == ClassUnavailable }

// NewError returns an error of the given class whose text is msg and which wraps cause (which may be nil).
func NewError(class Class, msg string, cause error) error {
	return &Error{class: class, msg: msg, err: cause}
}
