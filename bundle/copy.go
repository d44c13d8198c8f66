package bundle

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobJob is one blob to have in the store, wanted by some images, readable from their sources.
type blobJob struct {
	desc    v1.Descriptor
	srcs    []name.Repository
	owners  []*image
	present bool // looked present (by size) when the copy began
}

// copyAll copies every blob of the images resolved into the store, each once, in the images' order so that
// images complete one after another. It returns the bytes that were already there.
func (m *mirror) copyAll(ctx context.Context, images []*image) int64 {
	var (
		jobs  []*blobJob
		byDig = map[v1.Hash]*blobJob{}
		ok    int
	)

	for _, im := range images {
		if im.failed() != nil {
			continue
		}

		ok++

		seen := map[v1.Hash]bool{}

		for _, p := range im.all() {
			for _, b := range p.blobs {
				if seen[b.Digest] {
					continue
				}

				seen[b.Digest] = true
				im.pending.Add(1)

				j := byDig[b.Digest]
				if j == nil {
					j = &blobJob{desc: b}
					byDig[b.Digest] = j
					jobs = append(jobs, j)
				}

				j.owners = append(j.owners, im)
				if !containsRepo(j.srcs, im.src) {
					j.srcs = append(j.srcs, im.src)
				}
			}
		}
	}

	var total int64

	for _, j := range jobs {
		d := j.desc.Digest.String()
		if j.present = m.store.mightHave(d, j.desc.Size); !j.present {
			total += j.desc.Size - min(m.store.partialSize(d), j.desc.Size)
		}
	}

	m.prog.begin(ok, total)
	defer m.prog.end()

	for _, im := range images {
		if im.failed() == nil && im.pending.Load() == 0 {
			m.prog.imageDone()
		}
	}

	var (
		reused atomic.Int64
		wg     sync.WaitGroup
		queue  = make(chan *blobJob)
	)

	for range m.opts.Jobs {
		wg.Go(func() {
			for j := range queue {
				m.copyBlob(ctx, j, &reused)
			}
		})
	}

	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}

		queue <- j
	}

	close(queue)
	wg.Wait()

	return reused.Load()
}

func (m *mirror) copyBlob(ctx context.Context, j *blobJob, reused *atomic.Int64) {
	d, size := j.desc.Digest.String(), j.desc.Size

	var err error

	for _, src := range j.srcs {
		var was bool

		was, err = m.store.ensure(ctx, d, size, m.client.blob(src, d, size), m.prog.add)

		switch {
		case err == nil && was:
			if !m.store.fetchedNow(d) {
				reused.Add(size)
			}

			if !j.present {
				m.prog.grow(-size) // fetched meanwhile (by a catalog read)
			}
		case err == nil && j.present:
			m.prog.grow(size) // looked present, but did not match its digest
		}

		if err == nil || ctx.Err() != nil {
			break
		}

		m.log.Warn("blob copy failed", "digest", d, "source", src.String(), "error", err)
	}

	for _, im := range j.owners {
		if err != nil {
			im.fail(fmt.Errorf("blob %s (%d bytes) from %s: %w", d, size, im.src, err))
		}

		if im.pending.Add(-1) == 0 && im.failed() == nil {
			m.prog.imageDone()
		}
	}
}

func containsRepo(rs []name.Repository, r name.Repository) bool {
	for _, x := range rs {
		if x.String() == r.String() {
			return true
		}
	}

	return false
}
