package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/edgefactory/edgefactory/node/cas"
	"github.com/edgefactory/edgefactory/raftstore"
)

// transfer is one copy of a blob arriving from peers into the local CAS. Clients read it while it arrives (so the
// first download through any node streams at network speed), but never its last byte before the whole blob has been
// verified against its digest: a corrupt copy ends every response short (the client sees a failed download, never
// a complete wrong file) and is never stored.
type transfer struct {
	rec raftstore.AssetRecord // what the bytes must be: digest, size, media type, file name

	mu      sync.Mutex
	changed *sync.Cond
	w       *cas.Writer
	blob    *cas.Blob // set once committed: readers switch to the stored blob
	err     error     // set when the transfer failed; readers fail with it
	readers int
	closed  bool
	done    chan struct{} // closed when the transfer is over (stored, or failed for good)
}

// newTransfer starts a transfer into w. The fetcher holds the first reader reference: it releases it (closeReader)
// once the transfer is over and no new reader can find it, so a reader that found it never sees its blob closed.
func newTransfer(rec raftstore.AssetRecord, w *cas.Writer) *transfer {
	t := &transfer{rec: rec, w: w, readers: 1, done: make(chan struct{})}
	t.changed = sync.NewCond(&t.mu)

	return t
}

// progress wakes readers after bytes arrived.
func (t *transfer) progress() {
	t.mu.Lock()
	t.changed.Broadcast()
	t.mu.Unlock()
}

// complete verifies and stores the bytes (the writer's Commit checks digest and size) and switches readers to the
// stored blob. On failure the transfer fails: readers end short, nothing is stored.
func (t *transfer) complete(store *cas.Store) error {
	t.mu.Lock()
	defer t.mu.Unlock()

	_, _, err := t.w.Commit()
	if err == nil {
		t.blob, err = store.Open(t.rec.Digest)
	}

	t.failLocked(err)

	return err
}

// fail ends the transfer with err: readers waiting for bytes get it.
func (t *transfer) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.w.Abort()
	t.failLocked(err)
}

func (t *transfer) failLocked(err error) {
	if err != nil && t.err == nil && t.blob == nil {
		t.err = err
	}

	t.changed.Broadcast()
	t.releaseLocked()
}

// written is how many bytes have arrived.
func (t *transfer) written() int64 { return t.w.Written() }

// readAt blocks until [off, off+len(p)) is available and verified enough to hand out, then reads it.
func (t *transfer) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= t.rec.Size {
		return 0, io.EOF
	}

	end := min(off+int64(len(p)), t.rec.Size)

	t.mu.Lock()
	defer t.mu.Unlock()

	for {
		switch {
		case t.err != nil:
			return 0, fmt.Errorf("transfer of %s: %w", t.rec.Digest, t.err)
		case t.blob != nil:
			n, err := t.blob.ReadAt(p[:end-off], off)
			if err == nil && end == t.rec.Size && n == len(p[:end-off]) && int64(len(p)) > end-off {
				err = io.EOF
			}

			return n, err
		case t.w.Written() >= end && end < t.rec.Size:
			// everything but the last byte may go out before verification
			return t.w.ReadAt(p[:end-off], off)
		case ctx.Err() != nil:
			return 0, ctx.Err()
		}

		t.changed.Wait()
	}
}

// open registers a reader; the transfer keeps its resources until the last reader closes.
func (t *transfer) open() {
	t.mu.Lock()
	t.readers++
	t.mu.Unlock()
}

func (t *transfer) closeReader() {
	t.mu.Lock()
	defer t.mu.Unlock()

	t.readers--
	t.releaseLocked()
}

// releaseLocked closes the committed blob once the transfer is over and no reader needs it.
func (t *transfer) releaseLocked() {
	if t.readers == 0 && !t.closed && (t.blob != nil || t.err != nil) {
		t.closed = true

		if t.blob != nil {
			t.blob.Close() //nolint:errcheck // read-only handle
		}
	}
}

// transferAsset is a frontends.Asset reading a transfer in progress.
type transferAsset struct {
	t    *transfer
	ctx  context.Context //nolint:containedctx // the request's: a reader stops waiting when its client is gone
	stop func() bool
	off  int64
	eof  bool
}

func newTransferAsset(ctx context.Context, t *transfer) *transferAsset {
	t.open()

	// A reader waiting for bytes must wake when its client goes away.
	return &transferAsset{t: t, ctx: ctx, stop: context.AfterFunc(ctx, t.progress)}
}

func (a *transferAsset) Content() io.ReadSeeker { return a }
func (a *transferAsset) Size() int64            { return a.t.rec.Size }
func (a *transferAsset) Digest() string         { return a.t.rec.Digest }
func (a *transferAsset) MediaType() string      { return a.t.rec.MediaType }
func (a *transferAsset) Filename() string       { return a.t.rec.Filename }

func (a *transferAsset) Close() error {
	if !a.eof {
		a.eof = true
		a.stop()
		a.t.closeReader()
	}

	return nil
}

func (a *transferAsset) Read(p []byte) (int, error) {
	n, err := a.t.readAt(a.ctx, p, a.off)
	a.off += int64(n)

	return n, err
}

func (a *transferAsset) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += a.off
	case io.SeekEnd:
		offset += a.t.rec.Size
	default:
		return 0, errors.New("seek: bad whence")
	}

	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}

	a.off = offset

	return offset, nil
}
