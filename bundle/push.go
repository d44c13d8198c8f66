package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// pusher copies resolved images into a registry (Options.To docker://REGISTRY[/PREFIX]), each under its origin's
// repository path without the host ("registry.k8s.io/kube-apiserver" → REGISTRY/PREFIX/kube-apiserver). Blobs the
// registry has are not sent again; a blob already pushed to another repository is mounted from there.
type pusher struct {
	m      *mirror
	reused atomic.Int64

	mu      sync.Mutex
	pushed  map[v1.Hash]name.Repository // where a blob was first pushed
	counted map[v1.Hash]bool            // the blob's bytes were accounted for in the progress total
}

func (m *mirror) pushAll(ctx context.Context, images []*image) int64 {
	p := &pusher{m: m, pushed: map[v1.Hash]name.Repository{}, counted: map[v1.Hash]bool{}}

	var (
		total int64
		ok    int
		seen  = map[v1.Hash]bool{}
	)

	for _, im := range images {
		if im.failed() != nil {
			continue
		}

		ok++

		for _, ps := range im.all() {
			for _, b := range ps.blobs {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					total += b.Size
				}
			}
		}
	}

	m.prog.begin(ok, total)
	defer m.prog.end()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Jobs)

	for _, im := range images {
		if im.failed() != nil {
			continue
		}

		g.Go(func() error {
			if err := p.push(gctx, im); err != nil {
				im.fail(err)
			} else {
				m.prog.imageDone()
			}

			return nil
		})
	}

	_ = g.Wait() // failures are the images'

	return p.reused.Load()
}

func (p *pusher) options(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(p.m.client.base),
		remote.WithUserAgent(userAgent), remote.WithJobs(1),
	}
}

func (p *pusher) push(ctx context.Context, im *image) error {
	dst, err := p.m.client.repo(p.m.dest + "/" + repoPath(im.it.origin.Repository))
	if err != nil {
		return err
	}

	for _, ps := range im.all() {
		for _, b := range ps.blobs {
			if err := p.blob(ctx, im, dst, b); err != nil {
				return fmt.Errorf("push blob %s to %s: %w", b.Digest, dst, err)
			}
		}
	}

	top := dst.Digest(im.top.Digest.String())
	if im.it.origin.Tag != "" {
		if err := p.manifests(ctx, dst, im.own.manifests, dst.Tag(im.it.origin.Tag)); err != nil {
			return err
		}
	} else if err := p.manifests(ctx, dst, im.own.manifests, top); err != nil {
		return err
	}

	if s := im.sig; s != nil {
		if err := p.manifests(ctx, dst, s.parts.manifests, dst.Tag(s.tag)); err != nil {
			return err
		}
	}

	for _, r := range im.refs {
		if err := p.manifests(ctx, dst, r.parts.manifests, dst.Digest(r.desc.Digest.String())); err != nil {
			return err
		}
	}

	return nil
}

// manifests pushes manifests (children first) by digest, the last one under ref.
func (p *pusher) manifests(ctx context.Context, dst name.Repository, ms []v1.Descriptor, ref name.Reference) error {
	for i, d := range ms {
		raw, err := p.m.store.read(d.Digest.String(), maxManifest)
		if err != nil {
			return err
		}

		var to name.Reference = dst.Digest(d.Digest.String())
		if i == len(ms)-1 {
			to = ref
		}

		if err := remote.Put(to, rawManifest{raw: raw, mediaType: d.MediaType}, p.options(ctx)...); err != nil {
			return fmt.Errorf("push %s: %w", to, err)
		}
	}

	return nil
}

// blob pushes one blob into dst unless the registry has it there, mounting it from where it went first.
func (p *pusher) blob(ctx context.Context, im *image, dst name.Repository, desc v1.Descriptor) error {
	d := desc.Digest.String()
	l := &lazyLayer{desc: desc, open: func() (io.ReadCloser, error) {
		if ok, _ := p.m.store.has(d, desc.Size); ok {
			rc, _, err := p.m.store.open(d)

			return rc, err
		}

		rc, _, err := p.m.client.blob(im.src, d, desc.Size)(ctx, 0)
		if err != nil {
			return nil, err
		}

		return &counting{ReadCloser: rc, add: p.m.prog.add}, nil
	}}

	var layer v1.Layer = l

	p.mu.Lock()
	from, ok := p.pushed[desc.Digest]
	p.mu.Unlock()

	if ok && from.String() != dst.String() && from.RegistryStr() == dst.RegistryStr() {
		layer = &remote.MountableLayer{Layer: l, Reference: from.Digest(d)}
	}

	if err := remote.WriteLayer(dst, layer, p.options(ctx)...); err != nil {
		return err
	}

	p.mu.Lock()
	defer p.mu.Unlock()

	if !ok {
		p.pushed[desc.Digest] = dst
	}

	opened := l.opened.Load()

	switch {
	case !p.counted[desc.Digest] && !opened:
		p.reused.Add(desc.Size)
		p.m.prog.grow(-desc.Size) // the registry had it
	case p.counted[desc.Digest] && opened:
		p.m.prog.grow(desc.Size) // sent a second time (a mount refused)
	}

	p.counted[desc.Digest] = true

	return nil
}

// rawManifest is a manifest's bytes for remote.Put.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mediaType, nil }

// lazyLayer is a blob to push, opened only if the registry lacks it.
type lazyLayer struct {
	desc   v1.Descriptor
	open   func() (io.ReadCloser, error)
	opened atomic.Bool
}

func (l *lazyLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *lazyLayer) DiffID() (v1.Hash, error)            { return l.desc.Digest, nil } // unused by pushes
func (l *lazyLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *lazyLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("a mirrored blob is pushed as it is, never uncompressed")
}

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	l.opened.Store(true)

	return l.open()
}

// counting reports the bytes read.
type counting struct {
	io.ReadCloser
	add func(int64)
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(int64(n))

	return n, err
}
