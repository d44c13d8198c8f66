package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"

	"github.com/edgefactory/edgefactory/frontends/imports"
)

// importParallel is how many blobs an import sends at once.
const importParallel = 4

// ImportOptions says how an import reports its progress.
type ImportOptions struct {
	// Progress receives a bar (ProgressBar, on a terminal) or a line every ProgressInterval; nil is silent.
	Progress         io.Writer
	ProgressBar      bool
	ProgressInterval time.Duration
}

// Import brings the bundle into a cluster through the member client talks to (frontends/imports says the protocol):
// it lists every blob, sends only those the cluster lacks, then has the member check and record every image.
func Import(ctx context.Context, b *Bundle, client *imports.Client, opts ImportOptions) (imports.CommitResponse,
	error,
) {
	var plan imports.PlanRequest
	for _, blob := range b.Blobs() {
		plan.Blobs = append(plan.Blobs, imports.Blob{Digest: blob.Digest, Size: blob.Size})
	}

	opened, err := client.Plan(ctx, plan)
	if err != nil {
		return imports.CommitResponse{}, fmt.Errorf("plan the import: %w", err)
	}

	var total int64

	for _, d := range opened.Missing {
		n, ok := b.Has(d)
		if !ok {
			return imports.CommitResponse{}, fmt.Errorf("the member asked for %s, which the bundle does not hold", d)
		}

		total += n
	}

	prog := newProgress("import", "blobs", opts.Progress, opts.ProgressBar, opts.ProgressInterval)
	prog.printf("import: sending %d of %d blobs (%s); the cluster has the rest", len(opened.Missing),
		len(plan.Blobs), humanize.IBytes(uint64(max(total, 0))))
	prog.begin(len(opened.Missing), total)

	// A few blobs travel at once: the member's per-blob work (a file, an fsync) overlaps the next blob's bytes. After
	// a failure no blob starts, and those on their way finish: a refused bundle's blobs are all dropped by the
	// member when Import returns.
	var (
		g      errgroup.Group
		failed atomic.Bool
	)

	g.SetLimit(importParallel)

	for _, d := range opened.Missing {
		g.Go(func() error {
			if failed.Load() {
				return nil
			}

			if err := sendBlob(ctx, b, client, opened.Session, d, prog); err != nil {
				failed.Store(true)

				return err
			}

			prog.imageDone()

			return nil
		})
	}

	err = g.Wait()

	prog.end()

	if err != nil {
		return imports.CommitResponse{}, err
	}

	res, err := client.Commit(ctx, opened.Session, imports.CommitRequest{Images: importImages(b.Images()),
		IPXE: importIPXE(b.Manifest().IPXE)})
	if err != nil {
		return imports.CommitResponse{}, fmt.Errorf("commit the import: %w", err)
	}

	return res, nil
}

func sendBlob(ctx context.Context, b *Bundle, client *imports.Client, session, d string, prog *progress) error {
	rc, n, err := b.Blob(d)
	if err != nil {
		return err
	}
	defer rc.Close() // read-only

	err = client.PutBlob(ctx, session, d, n, &countingReader{r: rc, prog: prog})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("send blob %s: %w", d, err)
	}

	return err
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r    io.Reader
	prog *progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.prog.add(int64(n))

	return n, err
}

// importIPXE is the commit's iPXE binaries, from bundle.json (nil for a bundle without them).
func importIPXE(x *IPXE) *imports.IPXE {
	if x == nil {
		return nil
	}

	out := &imports.IPXE{Source: x.Source, Files: make([]imports.IPXEFile, 0, len(x.Files))}
	for _, f := range x.Files {
		out.Files = append(out.Files, imports.IPXEFile{Name: f.Name, Digest: f.Digest, Size: f.Size})
	}

	return out
}

// importImages is the commit's list of images, from bundle.json.
func importImages(images []Image) []imports.Image {
	out := make([]imports.Image, 0, len(images))

	for _, im := range images {
		ii := imports.Image{Name: im.Repository, Tag: im.Tag, Digest: im.Digest, MediaType: im.MediaType,
			Size: im.Size, Role: string(im.Role), Versions: im.Versions}

		for _, s := range im.Signatures {
			ii.Signatures = append(ii.Signatures, imports.Signature{Tag: s.Tag, Digest: s.Digest, Size: s.Size})
		}

		for _, r := range im.Referrers {
			ii.Referrers = append(ii.Referrers, imports.Descriptor{MediaType: r.MediaType, Digest: r.Digest,
				Size: r.Size, ArtifactType: r.ArtifactType})
		}

		out = append(out, ii)
	}

	return out
}
