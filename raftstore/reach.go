package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// A follower that stops answering (killed, rebooting, cut off) makes hashicorp/raft's leader back off its
// replication exponentially, to about 10 s between tries, and the back-off only resets after a success: a member
// that comes back waits anywhere from nothing to ten seconds for the log, depending on where the back-off stood.
// raft offers no way to reset it, but every try goes through the transport, so the transport decides: a call to an
// unreachable follower is held, rather than failed, until a TCP connect to the follower's Raft port succeeds (tried
// at once, then every probeInterval), and then sent. raft sees one slow call instead of a string of failures, never backs off,
// and reaches a returning member within a probe interval. raft's own error line for every failed heartbeat (one
// every half second) gives way to one line when a member goes, one a minute while it stays away and one when it
// answers again.

const (
	probeInterval = 250 * time.Millisecond
	probeTimeout  = time.Second
	// stillDownEvery paces the "still unreachable" lines.
	stillDownEvery = time.Minute
	// resendsPerCall bounds how often one call is sent again after a probe connected: a member that accepts
	// connections but fails every call is not unreachable, and raft's back-off is the right answer to it.
	resendsPerCall = 3
)

// errNotHeld ends a held call that raft no longer needs (this node stopped leading, the term moved on, the
// member left the configuration or is now at another address) or that the transport's close cut.
var errNotHeld = errors.New("call to an unreachable member abandoned")

// reachTransport is raft's network transport with calls to unreachable followers held until they answer.
type reachTransport struct {
	*raft.NetworkTransport
	hold bool // false: pass every call through, failures and all (Config.RaftBackoff)
	log  *slog.Logger
	// wanted reports whether raft, leading in term (any term when 0), still replicates to member id at target;
	// nil (before raft starts) means yes.
	wanted  atomic.Pointer[func(term uint64, id raft.ServerID, target raft.ServerAddress) bool]
	closing chan struct{}
	closed  sync.Once

	mu    sync.Mutex
	peers map[raft.ServerID]*reach
}

// reach is what the transport knows of one member's reachability.
type reach struct {
	downSince time.Time     // zero while the last call answered
	probed    chan struct{} // while down: closed once a probe connects
	probing   bool
	said      bool      // a line said it went (a call that failed once, its port answering, is not worth one)
	reported  time.Time // the last line said about it while down
	lastErr   error     // why the last call failed
}

func newReachTransport(hold bool, inner *raft.NetworkTransport, log *slog.Logger) *reachTransport {
	return &reachTransport{NetworkTransport: inner, hold: hold, log: log, closing: make(chan struct{}),
		peers: map[raft.ServerID]*reach{}}
}

// follow makes held calls and probes end once r no longer needs them.
func (t *reachTransport) follow(r *raft.Raft) {
	wanted := func(term uint64, id raft.ServerID, target raft.ServerAddress) bool {
		if r.State() != raft.Leader || term != 0 && r.CurrentTerm() != term {
			return false
		}
		f := r.GetConfiguration()
		if f.Error() != nil {
			return true
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == id {
				return s.Address == target
			}
		}
		return false
	}
	t.wanted.Store(&wanted)
}

// isWanted asks follow's test; see wanted.
func (t *reachTransport) isWanted(term uint64, id raft.ServerID, target raft.ServerAddress) bool {
	wanted := t.wanted.Load()
	return wanted == nil || (*wanted)(term, id, target)
}

// AppendEntries sends replication and heartbeats, holding them while the member is unreachable. Sending the same
// request again is safe: a follower applies an entry it already has as a no-op.
func (t *reachTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse,
) error {
	if !t.hold {
		return t.NetworkTransport.AppendEntries(id, target, args, resp)
	}
	for sent := 0; ; sent++ {
		if err := t.await(id, target, args.Term); err != nil {
			return err
		}
		err := t.NetworkTransport.AppendEntries(id, target, args, resp)
		if err == nil {
			t.answered(id)
			return nil
		}
		t.failed(id, target, err)
		if sent == resendsPerCall {
			return err
		}
	}
}

// InstallSnapshot waits for an unreachable member like AppendEntries, but sends once: its data cannot be read
// twice.
func (t *reachTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress,
	args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader,
) error {
	if !t.hold {
		return t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	}
	if err := t.await(id, target, args.Term); err != nil {
		return err
	}
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err == nil {
		t.answered(id)
	} else {
		t.failed(id, target, err)
	}
	return err
}

// Close ends held calls (raft's shutdown waits for them) and closes the transport.
func (t *reachTransport) Close() error {
	t.release()
	return t.NetworkTransport.Close()
}

// release ends every held call; the store calls it before shutting raft down.
func (t *reachTransport) release() { t.closed.Do(func() { close(t.closing) }) }

// await returns at once while member id answers; while it is unreachable it returns once a probe connects, or
// with errNotHeld once raft no longer needs a call of this term.
func (t *reachTransport) await(id raft.ServerID, target raft.ServerAddress, term uint64) error {
	t.mu.Lock()
	p := t.peers[id]
	if p == nil || p.downSince.IsZero() || !p.probing {
		t.mu.Unlock()
		return nil
	}
	probed := p.probed
	t.mu.Unlock()

	check := time.NewTicker(probeInterval)
	defer check.Stop()
	for {
		select {
		case <-probed:
			return nil
		case <-t.closing:
			return fmt.Errorf("%w: the transport closed", errNotHeld)
		case <-check.C:
			if !t.isWanted(term, id, target) {
				return fmt.Errorf("%w: no longer replicating to %s at %s in term %d", errNotHeld, id, target, term)
			}
		}
	}
}

// answered records that member id answered a call.
func (t *reachTransport) answered(id raft.ServerID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil || p.downSince.IsZero() {
		return
	}
	if p.said {
		t.log.Info("raft: member answers again; sending it the log", "member", id,
			"down_for", time.Since(p.downSince).Round(time.Millisecond))
	}
	p.downSince, p.said = time.Time{}, false
}

// failed records a failed call to member id and, unless one runs, starts probing it.
func (t *reachTransport) failed(id raft.ServerID, target raft.ServerAddress, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil {
		p = &reach{}
		t.peers[id] = p
	}
	if p.downSince.IsZero() {
		p.downSince = time.Now()
	}
	p.lastErr = err
	if !p.probing {
		p.probing, p.probed = true, make(chan struct{})
		go t.probe(id, target, p)
	}
}

// probe dials member id's Raft port until it connects, then releases the held calls. It stops, releasing them too
// (they find out for themselves why), when raft no longer replicates to the member at target (it left, moved to
// another address, or this node stopped leading) or the transport closes.
func (t *reachTransport) probe(id raft.ServerID, target raft.ServerAddress, p *reach) {
	dialer := net.Dialer{Timeout: probeTimeout}
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first { // the first probe goes at once: most failed calls are a connection that broke, not a member gone
			select {
			case <-t.closing:
				return
			case <-tick.C:
			}
		}
		if !t.isWanted(0, id, target) {
			t.mu.Lock()
			p.probing = false
			close(p.probed)
			t.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		conn, err := dialer.DialContext(ctx, "tcp", string(target))
		cancel()
		t.mu.Lock()
		if err == nil {
			conn.Close() // a probe: the connection carried nothing
			p.probing = false
			close(p.probed)
			t.mu.Unlock()
			return
		}
		switch {
		case !p.said:
			p.said, p.reported = true, time.Now()
			t.log.Warn("raft: member unreachable; the log goes to it as soon as it answers again", "member", id,
				"addr", target, "error", p.lastErr)
		case time.Since(p.reported) >= stillDownEvery:
			p.reported = time.Now()
			t.log.Warn("raft: member still unreachable", "member", id, "addr", target,
				"down_for", time.Since(p.downSince).Round(time.Second), "error", err)
		}
		t.mu.Unlock()
	}
}
