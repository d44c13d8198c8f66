package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/edgefactory/edgefactory/frontends/netboot"
)

// The iPXE binaries travel in a bundle so that an air-gapped site's members can answer network boot: they are loose
// files, not images, so they are blobs of the bundle's store (content-addressed, checked, reused by a rerun like
// every blob) listed in bundle.json's ipxe field, and not in index.json. A registry target has no place for them.

// versionFile is the file of an iPXE directory that says where its binaries come from (make deps writes Debian's
// package name and version there).
const versionFile = "VERSION"

// maxVersionText bounds the VERSION file read (one line in practice).
const maxVersionText = 4 << 10

// checkIPXEDir checks that dir holds the three binaries, before any network or disk work.
func checkIPXEDir(dir string) error {
	for _, name := range netboot.BinaryNames() {
		st, err := os.Stat(filepath.Join(dir, name))

		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("--ipxe-dir %s: %s is missing (the bundle carries all three iPXE binaries: %s)", dir,
				name, strings.Join(netboot.BinaryNames(), ", "))
		case err != nil:
			return fmt.Errorf("--ipxe-dir %s: %w", dir, err)
		case !st.Mode().IsRegular():
			return fmt.Errorf("--ipxe-dir %s: %s is not a regular file", dir, name)
		}
	}

	return nil
}

// copyIPXE stores the binaries of Options.IPXEDir as blobs (a blob already there, checked against its digest, is
// kept) and says what bundle.json lists. reused is the bytes already there.
func (m *mirror) copyIPXE(ctx context.Context) (x *IPXE, copied, reused int64, err error) {
	dir := m.opts.IPXEDir
	x = &IPXE{Files: []IPXEFile{}}

	if raw, err := os.ReadFile(filepath.Join(dir, versionFile)); err == nil {
		x.Source = strings.TrimSpace(string(raw[:min(len(raw), maxVersionText)]))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, 0, 0, fmt.Errorf("iPXE binaries: %w", err)
	}

	for _, name := range netboot.BinaryNames() {
		path := filepath.Join(dir, name)

		d, size, err := hashFile(path)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("iPXE binary %s: %w", name, err)
		}

		there, err := m.store.ensure(ctx, d, size, fileFetch(path), nil)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("iPXE binary %s: %w", name, err)
		}

		if there {
			reused += size
		} else {
			copied += size
		}

		x.Files = append(x.Files, IPXEFile{Name: name, Digest: d, Size: size})
	}

	m.log.Info("iPXE binaries stored", "dir", dir, "source", x.Source, "copied", copied, "reused", reused)
	m.prog.printf("mirror: iPXE binaries of %s (%s): %s copied, %s already there", dir, orUnknown(x.Source),
		humanize.IBytes(uint64(max(copied, 0))), humanize.IBytes(uint64(max(reused, 0))))

	return x, copied, reused, nil
}

// fileFetch reads a local file from an offset (the store's fetch, for files that are not in a registry).
func fileFetch(path string) fetchFunc {
	return func(_ context.Context, offset int64) (io.ReadCloser, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}

		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()

			return nil, 0, err
		}

		return f, offset, nil
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "no VERSION file"
	}

	return s
}
