package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/raftstore"
)

// fromHolders asks the members that may build the key, in ring order — its builder first — to get or build the
// asset, and streams the first answer (every waiter on this node shares one request). A member that cannot be
// reached is skipped: the next one builds if it must.
func (s *Service) fromHolders(ctx context.Context, r recipe.Recipe) (frontends.Asset, error) {
	ch := s.flight.DoChan("ask:"+r.Key, func() (any, error) {
		return s.askHolders(context.WithoutCancel(ctx), r)
	})

	t, err := await[*transfer](ctx, ch)
	if err != nil {
		return nil, err
	}

	return s.attach(ctx, t)
}

// await waits for the result of a single flight this request joined, or for the request to end (the flight goes
// on for the others).
func await[T any](ctx context.Context, ch <-chan singleflight.Result) (T, error) {
	var zero T

	select {
	case <-ctx.Done():
		return zero, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return zero, res.Err
		}

		v, ok := res.Val.(T)
		if !ok {
			return zero, fmt.Errorf("single flight returned %T, not %T", res.Val, zero)
		}

		return v, nil
	}
}

func (s *Service) askHolders(ctx context.Context, r recipe.Recipe) (*transfer, error) {
	var errs []error

	builders := s.cluster.Builders(r.Key)
	if len(builders) == 0 {
		return nil, unavailable(s.cluster.NoBuilders())
	}

	for _, name := range builders {
		if name == s.cluster.Self() {
			continue
		}

		base, ok := s.cluster.PeerURL(name)
		if !ok {
			continue
		}

		s.log.Info("asking a holder for an asset", "key", r.Key[:16], "asset", r.Asset.Path, "holder", name,
			"ring", s.cluster.RingVersion(), "request_id", frontends.RequestID(ctx))

		body, rec, err := s.peers.OpenAsset(ctx, base, r, s.store.AppliedIndex())
		if err != nil {
			s.metrics.peerFetches.WithLabelValues("unreachable").Inc()
			s.log.Warn("holder could not deliver; trying the next one", "holder", name, "error", err)
			errs = append(errs, err)

			if refused := refusal(err); refused != nil {
				// The request itself is wrong (say, an unknown extension): every holder would say the same.
				return nil, refused
			}

			continue
		}

		return s.startTransfer(rec, &source{name: name, body: body}, s.sources(r.Key, rec)), nil
	}

	return nil, fmt.Errorf("no holder delivered %s: %w", r.Asset.Path, errors.Join(errs...))
}

// refusal presents a holder's refusal of the request itself (not found, invalid) as the client's error, with the
// holder's words; nil for any other failure.
func refusal(err error) error {
	var pe *peer.Error
	if !errors.As(err, &pe) {
		return nil
	}

	switch {
	case errors.Is(err, peer.ErrNotFound):
		return frontends.NewError(frontends.ClassNotFound, pe.Msg, err)
	case errors.Is(err, peer.ErrInvalid):
		return frontends.NewError(frontends.ClassInvalid, pe.Msg, err)
	}

	return nil
}

// sources lists the members to fetch a blob from, best first: the key's holders on the ring, the member that built
// it, then everyone else (a member that lacks it answers 404 at once). This node and members that recently sent
// corrupt bytes of it are left out.
func (s *Service) sources(key string, rec raftstore.AssetRecord) []string {
	members := s.cluster.Members()
	order := append(s.cluster.Holders(key, s.replicas()), rec.Builder)
	order = append(order, members...)

	s.mu.Lock()
	bad := s.badSourcesLocked(rec.Digest)
	s.mu.Unlock()

	var out []string

	for _, name := range order {
		if name == "" || name == s.cluster.Self() || slices.Contains(out, name) || !slices.Contains(members, name) ||
			slices.Contains(bad, name) {
			continue
		}

		out = append(out, name)
	}

	return out
}

// source is one place bytes come from: an open body (the owner's answer) or a member's blob endpoint.
type source struct {
	name    string
	body    io.ReadCloser // nil: open the member's blob endpoint at the current offset
	outside bool          // bytes from outside the cluster (Ingest), not a member's copy
}

// fetch copies rec's blob from the named members, unless a copy is already arriving. It returns nil when there is
// nobody to fetch from.
func (s *Service) fetch(rec raftstore.AssetRecord, from []string) *transfer {
	if len(from) == 0 {
		return nil
	}

	return s.startTransfer(rec, nil, from)
}

// startTransfer begins (or joins) the transfer of rec's blob: first from first (if any), then from the members in
// from, resuming at the byte already written.
func (s *Service) startTransfer(rec raftstore.AssetRecord, first *source, from []string) *transfer {
	s.mu.Lock()
	defer s.mu.Unlock()

	if t, ok := s.inflight[rec.Digest]; ok {
		if first != nil {
			first.body.Close()
		}

		return t
	}

	w, err := s.cas.Create(rec.Digest, rec.Size)
	if err != nil {
		if first != nil {
			first.body.Close()
		}

		t := newTransfer(rec, nil)
		t.err = fmt.Errorf("start a local copy: %w", err)
		close(t.done)

		return t
	}

	t := newTransfer(rec, w)
	s.inflight[rec.Digest] = t

	sources := make([]source, 0, len(from)+1)
	if first != nil {
		sources = append(sources, *first)
	}

	for _, name := range from {
		if first == nil || name != first.name {
			sources = append(sources, source{name: name})
		}
	}

	go s.run(t, sources)

	return t
}

// attach gives a request a reader of t — or, if t has already finished, the stored blob.
func (s *Service) attach(ctx context.Context, t *transfer) (frontends.Asset, error) {
	s.mu.Lock()
	if s.inflight[t.rec.Digest] == t {
		a := newTransferAsset(ctx, t)
		a.whole = s.wholeOnlyLocked(t.rec.Digest)
		s.mu.Unlock()

		return a, nil
	}
	s.mu.Unlock()

	if err := t.startErr(); err != nil {
		return nil, err
	}

	a, err := s.local(t.rec)
	if errors.Is(err, errMiss) {
		return nil, fmt.Errorf("fetching %s from peers failed; retry", t.rec.Digest)
	}

	return a, err
}

// run feeds t from its sources until the copy is stored and verified. A source that fails is left for the next,
// which resumes where it stopped; a copy that does not match its digest is dropped (its readers' responses end
// short), the source is told to check its copy, and the copy starts over from the next source.
func (s *Service) run(t *transfer, sources []source) {
	log := s.log.With("digest", t.rec.Digest, "size", t.rec.Size)
	start := time.Now()

	var (
		errs []error
		// senders are the sources whose bytes are in the copy: a copy that resumed from another source after a
		// failure holds bytes of each, and any of them may be the corrupt one.
		senders []string
	)

	for i := 0; i < len(sources); i++ {
		src := sources[i]

		before := t.written()
		err := s.copyFrom(t, src)
		stored := false

		if t.written() > before {
			senders = append(senders, src.name)
		}

		if err == nil {
			stored = true
			if err = t.complete(s.cas); err == nil {
				if src.outside {
					log.Debug("bytes from outside the cluster stored", "from", src.name)
				} else {
					s.metrics.peerFetches.WithLabelValues("ok").Inc()
					log.Info("asset copied from a peer", "from", src.name,
						"duration", time.Since(start).Round(time.Millisecond))
				}
				s.finishTransfer(t)
				s.Found(t.rec.Digest)

				return
			}
		}

		errs = append(errs, fmt.Errorf("%s: %w", src.name, err))

		if errors.Is(err, cas.ErrDigestMismatch) || errors.Is(err, cas.ErrSizeMismatch) {
			s.metrics.peerVerifyFailures.Inc()
			s.problem(fmt.Sprintf("copy of %s from %s", t.rec.Digest, strings.Join(senders, ", ")), err)
			log.Error("peers sent bytes that do not match the asset's digest: dropped, asking them to check their "+
				"copies", "from", senders, "error", err)
			t.fail(err)

			for _, name := range senders {
				s.markBad(t.rec.Digest, name)
			}

			if i+1 < len(sources) {
				if next := s.restartTransfer(t); next != nil {
					t, senders = next, nil

					continue
				}
			}

			break
		}

		if stored {
			break // the local store failed: another source would not help
		}

		s.metrics.peerFetches.WithLabelValues("error").Inc()
		log.Warn("copy from a peer failed; resuming from the next source", "from", src.name,
			"at", t.written(), "error", err)
	}

	failed := fmt.Errorf("no member delivered a verified copy: %w", errors.Join(errs...))
	t.fail(failed)
	s.problem("copy of "+t.rec.Digest, failed)
	s.finishTransfer(t)
	s.markLost(t.rec.Digest)
}

// restartTransfer replaces a transfer whose bytes turned out corrupt with a fresh one (new requests join the fresh
// one; readers of the old one have already been failed).
func (s *Service) restartTransfer(old *transfer) *transfer {
	s.mu.Lock()
	defer s.mu.Unlock()

	w, err := s.cas.Create(old.rec.Digest, old.rec.Size)
	if err != nil {
		return nil
	}

	t := newTransfer(old.rec, w)
	if s.inflight[old.rec.Digest] == old {
		s.inflight[old.rec.Digest] = t
	}

	close(old.done)
	old.closeReader()

	return t
}

// finishTransfer forgets t (later requests find the stored blob) and drops the fetcher's reference to it.
func (s *Service) finishTransfer(t *transfer) {
	s.mu.Lock()
	if s.inflight[t.rec.Digest] == t {
		delete(s.inflight, t.rec.Digest)
	}
	s.mu.Unlock()

	close(t.done)
	t.closeReader()
}

// copyFrom copies from src into t, from the byte t has reached, failing if src stalls.
func (s *Service) copyFrom(t *transfer, src source) error {
	ctx, cancel := context.WithCancel(s.bg)
	defer cancel()

	body := src.body
	if body == nil {
		base, ok := s.cluster.PeerURL(src.name)
		if !ok {
			return fmt.Errorf("member %s has no address", src.name)
		}

		b, err := s.peers.OpenBlob(ctx, base, t.rec.Digest, t.written(), t.rec.Size)
		if err != nil {
			return err
		}

		body = b
	} else if t.written() > 0 {
		body.Close()

		return errors.New("an open stream cannot resume")
	}
	defer body.Close()

	// A peer that stops sending for the silence limit is abandoned (the next source resumes).
	silence := s.peers.Silence()
	idle := time.AfterFunc(silence, cancel)
	defer idle.Stop()

	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()

	buf := make([]byte, 256<<10)

	for {
		n, err := body.Read(buf)
		if n > 0 {
			idle.Reset(silence)

			if _, werr := t.w.Write(buf[:n]); werr != nil {
				return werr
			}

			t.progress()
		}

		switch {
		case errors.Is(err, io.EOF):
			if t.written() != t.rec.Size {
				return fmt.Errorf("stream ended at %d of %d bytes", t.written(), t.rec.Size)
			}

			return nil
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("no bytes for %s: %w", silence, err)
			}

			return err
		}
	}
}

// pushTimeout bounds the wait for one holder's copy of a freshly built asset.
const pushTimeout = 10 * time.Minute

// push asks the key's other holders to copy a freshly built asset from this node, in the background, so losing this
// node does not cost a rebuild; done is called once every holder asked has its copy (or failed to get it).
func (s *Service) push(key string, rec raftstore.AssetRecord, done func()) {
	var wg sync.WaitGroup

	defer func() { go func() { wg.Wait(); done() }() }()

	for _, name := range s.cluster.Holders(key, s.replicas()) {
		if name == s.cluster.Self() {
			continue
		}

		base, ok := s.cluster.PeerURL(name)
		if !ok {
			continue
		}

		wg.Go(func() {
			ctx, cancel := context.WithTimeout(s.bg, pushTimeout)
			defer cancel()

			if err := s.peers.Keep(ctx, base, peer.PullRequest{Record: rec, From: []string{s.cluster.Self()}}); err != nil {
				s.log.Warn("could not ask a holder to keep a copy", "holder", name, "digest", rec.Digest, "error", err)
			}
		})
	}
}

// Prefetch copies rec's blob here in the background unless it is already here (a holder asked by a builder).
func (s *Service) Prefetch(rec raftstore.AssetRecord, from []string) {
	if s.cas.Has(rec.Digest) {
		return
	}

	s.fetch(rec, s.withSources(rec, from))
}

// Keep copies rec's blob here, from the members listed first, unless it is here already, and returns once it is
// stored and verified.
func (s *Service) Keep(ctx context.Context, rec raftstore.AssetRecord, from []string) error {
	if s.cas.Has(rec.Digest) {
		return nil
	}

	t := s.fetch(rec, s.withSources(rec, from))
	if t == nil {
		return fmt.Errorf("keep %s: no member to copy it from", rec.Digest)
	}

	return t.stored(ctx)
}

// withSources is from followed by the other members that may hold rec's blob.
func (s *Service) withSources(rec raftstore.AssetRecord, from []string) []string {
	from = slices.Clone(from)

	for _, name := range s.sources(rec.Key, rec) {
		if !slices.Contains(from, name) {
			from = append(from, name)
		}
	}

	return from
}
