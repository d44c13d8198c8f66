package cas

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// A hasher computes a blob's sha256 on a goroutine of its own, so that hashing (the largest cost per byte of a copy
// from a peer) overlaps with receiving and writing the bytes. Bytes are copied into a few reused buffers; a writer
// that gets more than hashQueue buffers ahead waits for the hash to catch up.
type hasher struct {
	mu     sync.Mutex // serialises write and finish
	h      hash.Hash
	queue  chan []byte
	free   chan []byte
	bufs   int
	done   chan struct{}
	closed bool
}

const (
	hashBufSize = 256 << 10
	hashQueue   = 4
)

func newHasher() *hasher {
	h := &hasher{
		h:     sha256.New(),
		queue: make(chan []byte, hashQueue),
		free:  make(chan []byte, hashQueue),
		done:  make(chan struct{}),
	}
	go h.run()
	return h
}

func (h *hasher) run() {
	defer close(h.done)
	for b := range h.queue {
		h.h.Write(b)
		h.free <- b
	}
}

// write queues p for hashing; after finish it does nothing (the blob was aborted meanwhile).
func (h *hasher) write(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for len(p) > 0 {
		buf := h.buffer(len(p))
		n := copy(buf[:cap(buf)], p)
		h.queue <- buf[:n]
		p = p[n:]
	}
}

// buffer returns a free buffer, allocating up to hashQueue of them (no bigger than needed for small blobs).
func (h *hasher) buffer(want int) []byte {
	select {
	case b := <-h.free:
		return b
	default:
	}
	if h.bufs < hashQueue {
		h.bufs++
		return make([]byte, min(max(want, blockSize), hashBufSize))
	}
	return <-h.free
}

// finish waits until everything queued is hashed and stops the goroutine. It may be called more than once.
func (h *hasher) finish() hash.Hash {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.queue)
	}
	<-h.done
	return h.h
}
