package bundle

import (
	"archive/tar"
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layoutJSON is the oci-layout file.
var layoutJSON = []byte(`{"imageLayoutVersion": "1.0.0"}` + "\n")

// contents is what a run produced: bundle.json, index.json and the blobs they need.
type contents struct {
	manifest *Manifest
	index    v1.IndexManifest
	blobs    map[string]int64 // digest → size
}

// collect builds bundle.json and index.json from the images copied; failures are the plan's and the images'.
func (m *mirror) collect(p plan, images []*image) (contents, int) {
	keys := make([]PublicKey, 0, len(m.keys))
	for _, k := range m.keys {
		keys = append(keys, PublicKey{Fingerprint: k.Fingerprint, PEM: k.PEM})
	}

	mf := &Manifest{
		Format: FormatVersion, Created: m.start.UTC().Truncate(time.Second), Tool: m.opts.Tool, Source: m.from,
		SourceMap: m.smap.strings(), Versions: sortedVersions(p.versions), PublicKeys: keys, Images: []Image{},
		Incomplete: slices.Clone(p.failures),
	}
	c := contents{manifest: mf, blobs: map[string]int64{}}
	byKey := map[string]int{}
	copied := 0

	for _, im := range images {
		if err := im.failed(); err != nil {
			mf.Incomplete = append(mf.Incomplete, Failure{What: im.it.origin.String(), Error: err.Error()})

			continue
		}

		copied++

		for _, ps := range im.all() {
			for _, d := range slices.Concat(ps.manifests, ps.blobs) {
				c.blobs[d.Digest.String()] = d.Size
			}
		}

		o := im.it.origin
		key := o.Reference() + "@" + im.top.Digest.String()

		if i, ok := byKey[key]; ok {
			prev := &mf.Images[i]
			if im.it.role.rank() < prev.Role.rank() {
				prev.Role = im.it.role
			}

			prev.Versions = sortedVersions(append(prev.Versions, im.it.versions...))

			continue
		}

		img := Image{
			Reference: o.Reference(), Repository: o.Repository, Tag: o.Tag, Digest: im.top.Digest.String(),
			MediaType: string(im.top.MediaType), Size: im.top.Size, TotalBytes: im.own.bytes(), Role: im.it.role,
			Versions: sortedVersions(im.it.versions), Platforms: im.platforms,
		}

		if s := im.sig; s != nil {
			img.Signatures = []Signature{{Tag: s.tag, Digest: s.desc.Digest.String(), Size: s.desc.Size, VerifiedWith: s.verifiedWith}}
		}

		for _, r := range im.refs {
			img.Referrers = append(img.Referrers, Referrer{Digest: r.desc.Digest.String(), MediaType: string(r.desc.MediaType),
				ArtifactType: r.desc.ArtifactType, Size: r.desc.Size})
		}

		byKey[key] = len(mf.Images)
		mf.Images = append(mf.Images, img)
	}

	slices.SortFunc(mf.Images, func(a, b Image) int {
		return cmp.Or(a.Role.rank()-b.Role.rank(), strings.Compare(a.Reference, b.Reference), strings.Compare(a.Digest, b.Digest))
	})
	slices.SortFunc(mf.Incomplete, func(a, b Failure) int { return strings.Compare(a.What, b.What) })

	for _, n := range c.blobs {
		mf.Blobs++
		mf.Bytes += n
	}

	// The iPXE binaries are blobs of the bundle too (kept by a prune, written into a tar) but not images: not in
	// index.json, not counted in Blobs and Bytes, so that a reader that does not know them still verifies.
	if m.ipxe != nil {
		mf.IPXE = m.ipxe

		for _, f := range m.ipxe.Files {
			c.blobs[f.Digest] = f.Size
		}
	}

	c.index = indexOf(mf)

	return c, copied
}

// indexOf is index.json for a manifest's images: each image, signature and referrer under its original reference.
func indexOf(mf *Manifest) v1.IndexManifest {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	seen := map[string]bool{}

	add := func(ref, d, mediaType string, size int64) {
		if seen[ref+"@"+d] {
			return
		}

		seen[ref+"@"+d] = true

		h, err := v1.NewHash(d)
		if err != nil {
			return // digests here were read from registries and checked
		}

		idx.Manifests = append(idx.Manifests, v1.Descriptor{
			MediaType: types.MediaType(mediaType), Digest: h, Size: size,
			Annotations: map[string]string{AnnotationRefName: ref},
		})
	}

	for _, im := range mf.Images {
		add(im.Reference, im.Digest, im.MediaType, im.Size)

		for _, s := range im.Signatures {
			add(im.Repository+":"+s.Tag, s.Digest, string(types.OCIManifestSchema1), s.Size)
		}

		for _, r := range im.Referrers {
			add(im.Repository+"@"+r.Digest, r.Digest, r.MediaType, r.Size)
		}
	}

	slices.SortFunc(idx.Manifests, func(a, b v1.Descriptor) int {
		return cmp.Or(strings.Compare(a.Annotations[AnnotationRefName], b.Annotations[AnnotationRefName]),
			strings.Compare(a.Digest.String(), b.Digest.String()))
	})

	return idx
}

// finish writes the bundle (or, for a registry target, only reports) and tells what was not copied.
func (m *mirror) finish(p plan, images []*image, reused int64) (*Result, error) {
	c, copied := m.collect(p, images)
	complete := len(c.manifest.Incomplete) == 0

	res := &Result{Target: m.opts.To, Manifest: c.manifest, Images: copied, Fetched: m.client.fetched.Load(), Reused: reused}

	if m.kind != targetRegistry {
		if err := m.write(c, complete); err != nil {
			return nil, err
		}
	}

	res.Elapsed = time.Since(m.start)

	if !complete && m.kind == targetTar {
		res.Target = m.root + " (incomplete: the tar is written once everything is copied)"
	}

	if !complete {
		return res, &Error{Failures: c.manifest.Incomplete, Copied: copied}
	}

	return res, nil
}

func (m *mirror) write(c contents, complete bool) error {
	mfJSON, err := json.MarshalIndent(c.manifest, "", "  ")
	if err != nil {
		return err
	}

	idxJSON, err := json.MarshalIndent(c.index, "", "  ")
	if err != nil {
		return err
	}

	mfJSON, idxJSON = append(mfJSON, '\n'), append(idxJSON, '\n')

	if m.kind == targetDir && complete {
		removed, err := m.store.prune(c.blobs)
		if err != nil {
			return err
		}

		if removed > 0 {
			m.log.Info("removed blobs the bundle no longer needs", "blobs", removed)
		}
	}

	for _, f := range []struct {
		name string
		data []byte
	}{{LayoutFile, layoutJSON}, {IndexFile, idxJSON}, {ManifestFile, mfJSON}} {
		if err := m.store.writeFile(filepath.Join(m.root, f.name), f.data); err != nil {
			return err
		}
	}

	switch {
	case !complete:
		return syncDir(m.root)
	case m.kind == targetDir:
		return m.store.finishDir()
	}

	if err := m.writeTar(c, mfJSON, idxJSON); err != nil {
		return err
	}

	m.store.close()

	return os.RemoveAll(m.root)
}

// writeTar writes the bundle as a tar next to its name, then renames it into place: metadata first, then the blobs
// in digest order.
func (m *mirror) writeTar(c contents, mfJSON, idxJSON []byte) (err error) {
	dst := m.opts.To

	f, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}

	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name()) // not kept
		}
	}()

	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	mtime := c.manifest.Created

	file := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime})
	}

	for _, e := range []struct {
		name string
		data []byte
	}{{LayoutFile, layoutJSON}, {IndexFile, idxJSON}, {ManifestFile, mfJSON}} {
		if err := file(e.name, int64(len(e.data))); err != nil {
			return err
		}

		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}

	for _, d := range []string{"blobs/", BlobsDir + "/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			return err
		}
	}

	digests := make([]string, 0, len(c.blobs))
	for d := range c.blobs {
		digests = append(digests, d)
	}

	slices.Sort(digests)

	for _, d := range digests {
		if err := m.tarBlob(tw, file, d, c.blobs[d]); err != nil {
			return err
		}
	}

	if err := tw.Close(); err != nil {
		return err
	}

	if err := bw.Flush(); err != nil {
		return err
	}

	if err := f.Sync(); err != nil {
		return err
	}

	if err := f.Close(); err != nil {
		return err
	}

	if err := os.Chmod(f.Name(), 0o644); err != nil { //nolint:gosec // public release content, readable by the importer
		return err
	}

	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}

	return syncDir(filepath.Dir(dst))
}

func (m *mirror) tarBlob(tw *tar.Writer, file func(string, int64) error, d string, size int64) error {
	rc, n, err := m.store.open(d)
	if err != nil {
		return err
	}
	defer rc.Close() // read-only

	if n != size {
		return fmt.Errorf("blob %s: %d bytes, want %d", d, n, size)
	}

	if err := file(BlobsDir+"/"+hexOf(d), n); err != nil {
		return err
	}

	_, err = io.CopyN(tw, rc, n)

	return err
}
