// Package connlimit bounds what the clients of a listener can hold: how many connections are open at once, and how
// long one may stall a write by not reading. Its guarantee: past Max, a new connection waits in the kernel's backlog
// until one closes (it is not refused, and nothing already open is cut); a client that reads nothing for Stall while
// the server writes to it is disconnected, freeing its slot. The connections keep sendfile: a download of a file is
// handed to the kernel in chunks, each under its own deadline.
package connlimit

import (
	"io"
	"net"
	"sync"
	"time"
)

// Options are a listener's bounds; a zero field is no bound.
type Options struct {
	Max   int           // connections open at once
	Stall time.Duration // how long a write may wait for a client that reads nothing
}

// chunk is how much of a file one sendfile call may send under one write deadline: at the slowest client worth
// serving (1 Mbit/s) it takes well under a minute.
const chunk = 4 << 20

// Listen wraps ln with opts' bounds.
func Listen(ln net.Listener, opts Options) net.Listener {
	l := &listener{Listener: ln, stall: opts.Stall}
	if opts.Max > 0 {
		l.slots = make(chan struct{}, opts.Max)
	}

	return l
}

type listener struct {
	net.Listener

	slots chan struct{} // one per open connection, when bounded
	stall time.Duration
}

func (l *listener) Accept() (net.Conn, error) {
	if l.slots != nil {
		l.slots <- struct{}{} // waits while Max connections are open
	}

	c, err := l.Listener.Accept()
	if err != nil {
		if l.slots != nil {
			<-l.slots
		}

		return nil, err
	}

	return &conn{Conn: c, l: l}, nil
}

// conn is one accepted connection: its writes carry the stall deadline, and its Close frees its slot.
type conn struct {
	net.Conn

	l         *listener
	closeOnce sync.Once
}

func (c *conn) Write(p []byte) (int, error) {
	c.deadline()

	return c.Conn.Write(p)
}

// ReadFrom keeps the kernel's sendfile and splice (net.TCPConn implements it for files and sockets), a chunk at a
// time so that each chunk has its own stall deadline.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{c}, r)
	}

	if c.l.stall <= 0 {
		return rf.ReadFrom(r)
	}

	var total int64

	for {
		c.deadline()

		n, err := rf.ReadFrom(io.LimitReader(r, chunk))
		total += n

		if err != nil || n < chunk {
			return total, err
		}
	}
}

func (c *conn) deadline() {
	if c.l.stall > 0 {
		c.SetWriteDeadline(time.Now().Add(c.l.stall)) //nolint:errcheck // a closed conn fails its write anyway
	}
}

func (c *conn) Close() error {
	err := c.Conn.Close()

	c.closeOnce.Do(func() {
		if c.l.slots != nil {
			<-c.l.slots
		}
	})

	return err
}

// writerOnly hides ReadFrom, so that io.Copy does not call back into conn.ReadFrom.
type writerOnly struct{ io.Writer }
