package bundle

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// Bundle is a bundle opened for reading: a directory, or a tar read in place (its members are indexed once; no
// member is extracted). Its methods are safe for concurrent use.
type Bundle struct {
	path     string
	f        *os.File         // tar
	members  map[string]span  // tar: member name → where its bytes are
	blobs    map[string]int64 // digest → size
	manifest *Manifest
	index    v1.IndexManifest
}

type span struct{ off, size int64 }

// BlobInfo is a blob of a bundle.
type BlobInfo struct {
	Digest string
	Size   int64
}

// Open opens a bundle, a directory or a tar archive, and reads its oci-layout, index.json and bundle.json.
func Open(p string) (*Bundle, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}

	b := &Bundle{path: p, blobs: map[string]int64{}}

	if st.IsDir() {
		err = b.scanDir()
	} else {
		err = b.scanTar()
	}

	if err == nil {
		err = b.readMeta()
	}

	if err != nil {
		b.Close()

		return nil, fmt.Errorf("bundle %s: %w", p, err)
	}

	return b, nil
}

func (b *Bundle) scanDir() error {
	entries, err := os.ReadDir(filepath.Join(b.path, filepath.FromSlash(BlobsDir)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	for _, e := range entries {
		if !e.Type().IsRegular() || digest.CheckHex(e.Name()) != nil {
			continue // temporary files, partial blobs
		}

		info, err := e.Info()
		if err != nil {
			return err
		}

		b.blobs[digest.Prefix+e.Name()] = info.Size()
	}

	return nil
}

// offsetReader tracks the offset of a file read by archive/tar, so that each member's data can later be read in
// place (tar reads headers block by block, never ahead).
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.off += int64(n)

	return n, err
}

func (r *offsetReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := r.f.Seek(offset, whence)
	if err == nil {
		r.off = pos
	}

	return pos, err
}

func (b *Bundle) scanTar() error {
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}

	b.f = f
	b.members = map[string]span{}

	or := &offsetReader{f: f}
	tr := tar.NewReader(or)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}

		if h.Typeflag != tar.TypeReg {
			continue
		}

		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		b.members[name] = span{off: or.off, size: h.Size}

		if hexPart, ok := strings.CutPrefix(name, BlobsDir+"/"); ok && digest.CheckHex(hexPart) == nil {
			b.blobs[digest.Prefix+hexPart] = h.Size
		}
	}

	return nil
}

// file reads a small file at the bundle's root.
func (b *Bundle) file(name string) ([]byte, error) {
	if b.f == nil {
		return os.ReadFile(filepath.Join(b.path, name))
	}

	s, ok := b.members[name]
	if !ok {
		return nil, fmt.Errorf("no %s: %w", name, os.ErrNotExist)
	}

	if s.size > maxManifest*16 {
		return nil, fmt.Errorf("%s: %d bytes, too large", name, s.size)
	}

	buf := make([]byte, s.size)
	_, err := b.f.ReadAt(buf, s.off)

	return buf, err
}

func (b *Bundle) readMeta() error {
	raw, err := b.file(LayoutFile)
	if err != nil {
		return fmt.Errorf("not an OCI image layout: %w", err)
	}

	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}

	if err := json.Unmarshal(raw, &layout); err != nil || layout.Version != "1.0.0" {
		if err != nil {
			return fmt.Errorf("%s: %w", LayoutFile, err)
		}

		return fmt.Errorf("%s: imageLayoutVersion %q, want 1.0.0", LayoutFile, layout.Version)
	}

	if raw, err = b.file(IndexFile); err != nil {
		return err
	}

	if err := json.Unmarshal(raw, &b.index); err != nil {
		return fmt.Errorf("%s: %w", IndexFile, err)
	}

	if raw, err = b.file(ManifestFile); err != nil {
		return fmt.Errorf("not an Edge Factory bundle: %w", err)
	}

	b.manifest = &Manifest{}
	if err := json.Unmarshal(raw, b.manifest); err != nil {
		return fmt.Errorf("%s: %w", ManifestFile, err)
	}

	if b.manifest.Format < 1 || b.manifest.Format > FormatVersion {
		return fmt.Errorf("%s: format %d; this edgefactory reads formats 1 to %d", ManifestFile, b.manifest.Format,
			FormatVersion)
	}

	return nil
}

// Close releases the bundle's file.
func (b *Bundle) Close() error {
	if b.f != nil {
		err := b.f.Close()
		b.f = nil

		return err
	}

	return nil
}

// Path is where the bundle was opened.
func (b *Bundle) Path() string { return b.path }

// Manifest is bundle.json.
func (b *Bundle) Manifest() *Manifest { return b.manifest }

// Images are bundle.json's images.
func (b *Bundle) Images() []Image { return b.manifest.Images }

// Index is index.json's descriptors: every image, signature and referrer, annotated with its original reference.
func (b *Bundle) Index() []v1.Descriptor { return b.index.Manifests }

// Has reports whether the bundle holds a blob, and its size.
func (b *Bundle) Has(d string) (int64, bool) {
	n, ok := b.blobs[d]

	return n, ok
}

// Blobs lists every blob, sorted by digest.
func (b *Bundle) Blobs() []BlobInfo {
	out := make([]BlobInfo, 0, len(b.blobs))
	for d, n := range b.blobs {
		out = append(out, BlobInfo{Digest: d, Size: n})
	}

	slices.SortFunc(out, func(a, b BlobInfo) int { return strings.Compare(a.Digest, b.Digest) })

	return out
}

// Blob reads a blob by digest, with its size. The bytes are as stored: Verify, or the reader's own check, tells
// whether they match the digest.
func (b *Bundle) Blob(d string) (io.ReadCloser, int64, error) {
	size, ok := b.blobs[d]
	if !ok {
		return nil, 0, fmt.Errorf("bundle %s: blob %s: %w", b.path, d, os.ErrNotExist)
	}

	if b.f == nil {
		f, err := os.Open(filepath.Join(b.path, filepath.FromSlash(BlobsDir), strings.TrimPrefix(d, digest.Prefix)))
		if err != nil {
			return nil, 0, err
		}

		return f, size, nil
	}

	s := b.members[BlobsDir+"/"+strings.TrimPrefix(d, digest.Prefix)]

	return io.NopCloser(io.NewSectionReader(b.f, s.off, s.size)), size, nil
}

// ReadManifest reads a manifest or index by digest, checked against it.
func (b *Bundle) ReadManifest(d string) ([]byte, error) {
	rc, n, err := b.Blob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close() // read-only

	if n > maxManifest {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than %d", d, n, maxManifest)
	}

	raw, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}

	if got := digest.Of(raw); got != d {
		return nil, fmt.Errorf("manifest %s: bytes hash to %s", d, got)
	}

	return raw, nil
}

// Descriptors lists everything under a manifest or index of the bundle, in an order a registry accepts them:
// configs and layers before the manifest naming them, child manifests before their index, the manifest itself
// last. Non-distributable layers are not listed (they are not in bundles).
func (b *Bundle) Descriptors(d string) ([]v1.Descriptor, error) {
	h, err := v1.NewHash(d)
	if err != nil {
		return nil, err
	}

	size, ok := b.blobs[d]
	if !ok {
		return nil, fmt.Errorf("bundle %s: manifest %s: %w", b.path, d, os.ErrNotExist)
	}

	var out []v1.Descriptor

	seen := map[v1.Hash]bool{}
	err = b.walk(v1.Descriptor{Digest: h, Size: size}, seen, func(desc v1.Descriptor, _ bool) error {
		out = append(out, desc)

		return nil
	}, 0)

	return out, err
}

// walk calls visit for every descriptor under desc (children first), reading manifests as it goes.
func (b *Bundle) walk(desc v1.Descriptor, seen map[v1.Hash]bool, visit func(v1.Descriptor, bool) error, depth int) error {
	if seen[desc.Digest] {
		return nil
	}

	seen[desc.Digest] = true

	raw, err := b.ReadManifest(desc.Digest.String())
	if err != nil {
		return err
	}

	if desc.MediaType == "" {
		desc.MediaType = mediaTypeOf(raw, nil)
	}

	var doc manifestDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}

	if depth > 4 {
		return fmt.Errorf("manifest %s: indexes nested too deep", desc.Digest)
	}

	for _, child := range doc.Manifests {
		if err := b.checkPresent(child); err != nil {
			return err
		}

		if err := b.walk(child, seen, visit, depth+1); err != nil {
			return err
		}
	}

	blobs := slices.Concat(doc.Layers, doc.Blobs)
	if doc.Config != nil {
		blobs = append([]v1.Descriptor{*doc.Config}, blobs...)
	}

	for _, l := range blobs {
		if foreign(l) || seen[l.Digest] {
			continue
		}

		seen[l.Digest] = true

		if err := b.checkPresent(l); err != nil {
			return err
		}

		if err := visit(l, false); err != nil {
			return err
		}
	}

	return visit(desc, true)
}

// checkPresent checks a descriptor's blob is in the bundle with its size.
func (b *Bundle) checkPresent(d v1.Descriptor) error {
	n, ok := b.blobs[d.Digest.String()]

	switch {
	case !ok:
		return fmt.Errorf("blob %s (%s) is missing", d.Digest, d.MediaType)
	case n != d.Size:
		return fmt.Errorf("blob %s: %d bytes, its descriptor says %d", d.Digest, n, d.Size)
	}

	return nil
}

// maxProblems bounds the problems Verify lists.
const maxProblems = 20

// Verify checks the whole bundle: every blob hashes to its name; every descriptor reachable from index.json is in
// the bundle with its size; every image, signature and referrer of bundle.json is in index.json; and bundle.json's
// blob count and bytes are those index.json reaches.
func (b *Bundle) Verify(ctx context.Context) error {
	var problems []string

	problems = append(problems, b.verifyBlobs(ctx)...)
	if err := ctx.Err(); err != nil {
		return err
	}

	reached := map[string]int64{}
	seen := map[v1.Hash]bool{}

	for _, d := range b.index.Manifests {
		ref := d.Annotations[AnnotationRefName]

		if err := b.checkPresent(d); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", ref, err))

			continue
		}

		err := b.walk(d, seen, func(desc v1.Descriptor, _ bool) error {
			reached[desc.Digest.String()] = desc.Size

			return nil
		}, 0)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", ref, err))
		}
	}

	problems = append(problems, b.verifyManifest(reached)...)

	if len(problems) == 0 {
		return nil
	}

	if len(problems) > maxProblems {
		problems = append(problems[:maxProblems], fmt.Sprintf("and %d more problems", len(problems)-maxProblems))
	}

	return fmt.Errorf("bundle %s does not verify:\n  %s", b.path, strings.Join(problems, "\n  "))
}

// verifyBlobs hashes every blob, in parallel.
func (b *Bundle) verifyBlobs(ctx context.Context) []string {
	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
		queue    = make(chan BlobInfo)
	)

	for range min(runtime.GOMAXPROCS(0), 8) {
		wg.Go(func() {
			for bi := range queue {
				if err := b.hashBlob(ctx, bi); err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
				}
			}
		})
	}

	for _, bi := range b.Blobs() {
		if ctx.Err() != nil {
			break
		}

		queue <- bi
	}

	close(queue)
	wg.Wait()
	slices.Sort(problems)

	return problems
}

func (b *Bundle) hashBlob(ctx context.Context, bi BlobInfo) error {
	rc, _, err := b.Blob(bi.Digest)
	if err != nil {
		return err
	}
	defer rc.Close() // read-only

	h := sha256.New()

	n, err := io.Copy(h, &ctxReader{ctx: ctx, r: rc})
	if err != nil {
		return fmt.Errorf("blob %s: %w", bi.Digest, err)
	}

	if got := digest.OfHash(h); got != bi.Digest || n != bi.Size {
		return fmt.Errorf("blob %s: its %d bytes hash to %s", bi.Digest, n, got)
	}

	return nil
}

// verifyManifest checks bundle.json against index.json and what it reaches.
func (b *Bundle) verifyManifest(reached map[string]int64) []string {
	var problems []string

	indexed := map[string]string{} // ref name → digest
	for _, d := range b.index.Manifests {
		indexed[d.Annotations[AnnotationRefName]] = d.Digest.String()
	}

	want := func(ref, d string) {
		if got, ok := indexed[ref]; !ok || got != d {
			problems = append(problems, fmt.Sprintf("%s: bundle.json says %s, index.json has %q", ref, d, got))
		}
	}

	for _, im := range b.manifest.Images {
		want(im.Reference, im.Digest)

		for _, s := range im.Signatures {
			want(im.Repository+":"+s.Tag, s.Digest)
		}

		for _, r := range im.Referrers {
			want(im.Repository+"@"+r.Digest, r.Digest)
		}
	}

	if x := b.manifest.IPXE; x != nil {
		for _, f := range x.Files {
			if n, ok := b.Has(f.Digest); !ok || n != f.Size {
				problems = append(problems, fmt.Sprintf("iPXE binary %s: blob %s (%d bytes) is not in the bundle",
					f.Name, f.Digest, f.Size))
			}
		}
	}

	var total int64
	for _, n := range reached {
		total += n
	}

	if len(reached) != b.manifest.Blobs || total != b.manifest.Bytes {
		problems = append(problems, fmt.Sprintf("bundle.json counts %d blobs (%d bytes), index.json reaches %d (%d bytes)",
			b.manifest.Blobs, b.manifest.Bytes, len(reached), total))
	}

	return problems
}
