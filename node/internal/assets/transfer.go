package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

	mu       sync.Mutex
	changed  *sync.Cond
	w        *cas.Writer
	blob     *cas.Blob // set once committed: readers switch to the stored blob
	verified bool      // the bytes match the digest: the last byte may go out
	err      error     // set when the transfer failed; readers fail with it
	readers  int
	waiting  int // readers blocked in awaitLocked (tests wait for a request to be held)
	closed   bool
	done     chan struct{} // closed when the transfer is over (stored, or failed for good)
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

// complete verifies the bytes (digest and size), lets readers have the last byte, then stores them and switches
// readers to the stored blob; storing (an fsync) does not hold readers up. On failure the transfer fails: readers
// end short, nothing is stored.
func (t *transfer) complete(store *cas.Store) error {
	_, _, err := t.w.Verify()
	if err == nil {
		t.mu.Lock()
		t.verified = true
		t.changed.Broadcast()
		t.mu.Unlock()

		_, _, err = t.w.Commit()
	}

	var blob *cas.Blob
	if err == nil {
		blob, err = store.Open(t.rec.Digest)
	}

	t.mu.Lock()
	defer t.mu.Unlock()

	t.blob = blob
	t.failLocked(err)

	return err
}

// startErr is why the transfer could not start (no local copy could be created), or nil.
func (t *transfer) startErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.w == nil {
		return t.err
	}

	return nil
}

// verifiedOrDone waits until every byte has arrived and matched the digest (or the transfer failed).
func (t *transfer) verifiedOrDone(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()

	return t.awaitLocked(ctx, func() bool { return t.verified || t.blob != nil })
}

// stored waits until the transfer is over and says whether its bytes are now in the local store.
func (t *transfer) stored(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
	}

	t.mu.Lock()
	defer t.mu.Unlock()

	if t.err != nil {
		return fmt.Errorf("transfer of %s: %w", t.rec.Digest, t.err)
	}

	return nil
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

// readAt blocks until [off, off+len(p)) is available and verified enough to hand out, then reads it. Reads run
// outside the transfer's lock, so readers do not queue behind each other or behind the copy.
func (t *transfer) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= t.rec.Size {
		return 0, io.EOF
	}

	end := min(off+int64(len(p)), t.rec.Size)

	for {
		src, err := t.readable(ctx, end)
		if err != nil {
			return 0, err
		}

		n, err := src.ReadAt(p[:end-off], off)
		if errors.Is(err, cas.ErrWriterDone) {
			continue // committed meanwhile: the stored blob takes over
		}

		if err == nil && end < off+int64(len(p)) {
			err = io.EOF
		}

		return n, err
	}
}

// readable waits until bytes up to end may be handed out and says where to read them: the stored blob, or the
// writer while the copy is under way (everything but the last byte before verification).
func (t *transfer) readable(ctx context.Context, end int64) (io.ReaderAt, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	var src io.ReaderAt

	err := t.awaitLocked(ctx, func() bool {
		switch {
		case t.blob != nil:
			src = t.blob
		case !t.w.Done() && (t.verified || t.w.Written() >= end && end < t.rec.Size):
			src = t.w
		}

		return src != nil
	})

	return src, err
}

// sendable waits until bytes from off on may be handed out of the temp file and returns where they end: what is
// final in the file, short of the last byte until the whole copy is verified. It returns 0 when the writer is done
// unverified (it failed, or a short race with the end of the copy): the caller goes on through readAt.
func (t *transfer) sendable(ctx context.Context, off int64) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()

	var end int64

	err := t.awaitLocked(ctx, func() bool {
		switch {
		case t.verified:
			end = t.rec.Size // final: the handle reads it even once it is stored
		case t.blob != nil || t.w.Done():
			end = 0
		default:
			end = min(t.w.Flushed(), t.rec.Size-1)

			return end > off
		}

		return true
	})

	return end, err
}

// awaitLocked waits (t.mu held) until ready, which runs under t.mu, says yes, the transfer fails or ctx ends.
func (t *transfer) awaitLocked(ctx context.Context, ready func() bool) error {
	for {
		switch {
		case t.err != nil:
			return fmt.Errorf("transfer of %s: %w", t.rec.Digest, t.err)
		case ready():
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}

		t.waiting++
		t.changed.Wait()
		t.waiting--
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
			t.blob.Close() // read-only handle
		}
	}
}

// transferAsset is a frontends.Asset reading a transfer in progress.
type transferAsset struct {
	t     *transfer
	ctx   context.Context //nolint:containedctx // the request's: a reader stops waiting when its client is gone
	stop  func() bool
	off   int64
	eof   bool
	whole bool // answered whole whatever Range asks (see Service.wholeOnly)
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
func (a *transferAsset) WholeOnly() bool        { return a.whole }

// Verified waits until the whole copy has arrived and matched its digest: a part of it is sent only then (only
// the last byte of a whole download waits, and a part need not include it).
func (a *transferAsset) Verified(ctx context.Context) error { return a.t.verifiedOrDone(ctx) }

func (a *transferAsset) Close() error {
	if !a.eof {
		a.eof = true
		a.stop()
		a.t.closeReader()
	}

	return nil
}

// StreamTo sends the rest of the asset as it arrives. The bytes go from the local copy's file straight to the
// socket (sendfile) when w allows it, in as large steps as have arrived; the last byte waits for verification as
// with Read.
func (a *transferAsset) StreamTo(w io.Writer) (int64, error) {
	var sent int64

	f, err := a.t.w.OpenFile()
	if err == nil {
		defer f.Close()

		for a.off < a.t.rec.Size {
			end, err := a.t.sendable(a.ctx, a.off)
			if err != nil {
				return sent, err
			}

			if end == 0 {
				break // stored meanwhile: the rest comes from the blob
			}

			n, err := sendRange(w, f, a.off, end-a.off)
			a.off += n
			sent += n

			if err != nil {
				return sent, err
			}
		}
	}

	n, err := io.Copy(w, a)
	sent += n

	return sent, err
}

// sendRange sends n bytes of f from off: with sendfile where w is a socket, then zeros for the part beyond the end
// of the file (zero blocks the writer skipped at the end of what has arrived).
func sendRange(w io.Writer, f *os.File, off, n int64) (int64, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}

	sent, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
	if err != nil || sent == n {
		return sent, err
	}

	zeros, err := io.CopyN(w, zeroReader{}, n-sent)

	return sent + zeros, err
}

// zeroReader reads zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)

	return len(p), nil
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
