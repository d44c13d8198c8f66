// Package inspect reads Talos boot assets back and checks their structure, so that a download can be trusted to
// be what it claims before it is written to a disk or booted. It understands compression framing (xz, zstd, gzip),
// the concatenated cpio archives of an initramfs and its extensions.yaml, ISO 9660 with El Torito, PE files: UKI
// sections and profiles and the Authenticode signature, GPT and MBR disks, qcow2, VHD, VMDK, OVA and installer
// image tarballs.
//
// File (or Asset, for any io.ReaderAt) is the entry point: it tells an asset's kind from its content, never from
// its name, runs the checkers that apply, including on what the asset holds (the UKI of an ISO or of an installer
// layer, the initramfs of a UKI, the disk of a fixed VHD or of a compressed image or tar), and returns a Report:
// Talos version, schematic ID, kernel command line, system extensions, partitions or boot entries, signature,
// compression, sizes. Report is the stable, JSON-tagged form that `edgefactory inspect` prints. The checkers of
// each format (ISO, UKI, GPT, Initramfs, …) remain available on their own, with fuller reports.
//
// Guarantee: a checker returns a report only when every structure it parses is consistent (magic numbers, the
// checksums the format defines, offsets that stay inside the input); otherwise it returns an error that names the
// structure, the offset and what was expected. Structural defects wrap ErrMalformed; inputs that end early wrap
// io.ErrUnexpectedEOF. Unknown or corrupt input gives an error, never a panic. The package only reads: it writes
// nothing, mounts nothing, and never runs a tool or executes anything it reads. Memory stays bounded whatever the
// input's size: disk images are read at their ends by offset, compressed and archived data is streamed (keeping the
// first and last MiB of a disk), a UKI inside a layer is streamed keeping only its headers and text sections, and
// decoders may not ask for a dictionary or window over 128 MiB.
package inspect

import (
	"errors"
	"fmt"
	"io"
)

// ErrMalformed is wrapped by every error that reports a structural defect in the input, as opposed to an I/O error
// of the underlying reader or an input that ends early.
var ErrMalformed = errors.New("malformed")

type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

func (e *malformedError) Unwrap() error { return ErrMalformed }

// malformed formats a structural error that wraps ErrMalformed without repeating its text.
func malformed(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// short turns the io.EOF of a read that found nothing into io.ErrUnexpectedEOF: every caller expected bytes there.
func short(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}

	return err
}

// readAt reads exactly len(p) bytes at off and names the structure when the input is too short.
func readAt(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}

	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}

	return fmt.Errorf("read %s (%d bytes at offset %d, got %d): %w", what, len(p), off, n, err)
}

// markedError gives an error found by a decoder the ErrMalformed identity without changing its message.
type markedError struct{ err error }

func (e *markedError) Error() string { return e.err.Error() }

func (e *markedError) Unwrap() []error { return []error{ErrMalformed, e.err} }

// markMalformed marks err as a structural defect of the input.
func markMalformed(err error) error {
	if err == nil || errors.Is(err, ErrMalformed) {
		return err
	}

	return &markedError{err: err}
}
