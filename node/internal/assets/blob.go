package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/raftstore"
)

// ErrUnknownBlob: no asset record of the cluster names the digest, and this member does not store it.
var ErrUnknownBlob = errors.New("blob unknown to this cluster")

// Blob returns any blob the cluster knows by digest (an asset, or a part of one such as an installer layer):
// stored here, or fetched, verified, with a copy kept, from the members holding the asset it belongs to. The digest
// must be canonical (digest.Check).
func (s *Service) Blob(ctx context.Context, d string) (frontends.Asset, error) {
	if err := digest.Check(d); err != nil {
		return nil, err
	}

	rec, known, err := s.store.AssetByDigest(d)
	if err != nil {
		return nil, err
	}

	part, _ := rec.Find(d)
	want := raftstore.AssetRecord{Key: rec.Key, Digest: d, Size: part.Size, MediaType: part.MediaType,
		Builder: rec.Builder, Filename: strings.TrimPrefix(d, digest.Prefix)}

	if a, err := s.local(want); err == nil {
		if !known {
			a.rec.Size = a.blob.Size()
		}

		return a, nil
	} else if !errors.Is(err, errMiss) {
		return nil, err
	}

	if known {
		if t := s.fetch(want, s.sources(rec.Key, rec)); t != nil {
			return s.attach(ctx, t)
		}
	}

	return nil, fmt.Errorf("%w: %s", ErrUnknownBlob, d)
}

// Drop deletes a blob this member stores that nothing records (what a refused import brought).
func (s *Service) Drop(d string) error { return s.cas.Delete(d) }

// Has reports whether this member stores digest.
func (s *Service) Has(d string) bool { return s.cas.Has(d) }

// Lost reports whether a blob is known to be gone from the cluster: not here, and no other member is alive to have
// it, or the last copy attempted found no member with verified bytes. (A blob another member may hold is not lost:
// fetching it finds out.)
func (s *Service) Lost(d string) bool {
	if s.cas.Has(d) {
		return false
	}

	return len(s.cluster.Members()) <= 1 || s.lostRecently(d)
}

// Arrival is bytes from outside the cluster on their way into this member's store.
type Arrival struct {
	s *Service
	t *transfer
}

// Ingest stores the bytes body delivers from outside the cluster (an upstream registry, a layer read from a built
// image) under rec's digest and size, verified against them; origin names where they come from in logs. A copy of
// the same digest already arriving is joined (body is closed).
func (s *Service) Ingest(rec raftstore.AssetRecord, origin string, body io.ReadCloser) *Arrival {
	return &Arrival{s: s, t: s.startTransfer(rec, &source{name: origin, body: body, outside: true}, nil)}
}

// Asset reads the bytes while they arrive; the last byte only once all of them are verified.
func (a *Arrival) Asset(ctx context.Context) (frontends.Asset, error) { return a.s.attach(ctx, a.t) }

// Stored waits until the bytes are stored (nil) or the copy failed.
func (a *Arrival) Stored(ctx context.Context) error { return a.t.stored(ctx) }

// Put stores small bytes made on this member (a manifest, a config, a signature payload) and returns their digest.
func (s *Service) Put(data []byte) (string, error) {
	d := digest.Of(data)

	if s.cas.Has(d) {
		return d, nil
	}

	w, err := s.cas.Create(d, int64(len(data)))
	if err != nil {
		return "", err
	}
	defer w.Abort()

	if _, err := w.Write(data); err != nil {
		return "", err
	}

	if _, _, err := w.Commit(); err != nil {
		return "", fmt.Errorf("store %s: %w", d, err)
	}

	return d, nil
}
