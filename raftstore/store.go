// Package raftstore owns the Raft node and the replicated state machine of an Edge Factory cluster, and nothing
// else: schematics, the release catalog and its meta record, the asset index and cluster settings.
//
// Guarantee: state changes only through committed Raft log entries. A write returns after its entry has committed
// and been applied to this leader's state machine; on a follower it fails with a *NotLeaderError naming the leader,
// so the caller can forward the Command. Reads are local: they see what this node has applied, which may trail the
// leader by the replication delay (WaitApplied closes that gap when a caller knows the index it needs; the leader's
// ReadIndex is the index that covers every acknowledged write).
//
// The state machine lives in its own bbolt file. Every change stores the log index it came from in the same
// transaction, and entries at or below that index are skipped on replay, so restarts never move state backwards.
// Every command is idempotent (write-once schematics, first-wins asset records, whole-value replacements), so a
// caller that lost track of a write's outcome may simply retry it.
//
// On disk: RaftDir/raft.db is the Raft log and stable store (raft-boltdb/v2), RaftDir/snapshots/ holds the two
// newest snapshots (each a copy of the state file), and StatePath is the state file with the buckets schematics,
// catalog, catalog_meta, assets, asset_digests, settings and meta (applied index, schema version).
package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Config configures one node's Raft member and state machine. Zero tunables take LAN defaults.
type Config struct {
	NodeID    string // stable Raft server ID (the node name)
	RaftDir   string // Raft log and stable store (raft.db) and snapshots/
	StatePath string // the FSM's own bbolt file, e.g. <data>/state.db
	// BindAddr is the Raft TCP listen address; port 0 picks a free port (Store.Addr reports it).
	BindAddr string
	// AdvertiseAddr is the address peers dial, when it differs from the bound one (e.g. binding 0.0.0.0). A missing
	// or zero port means the bound port.
	AdvertiseAddr string
	// Stream, when set, carries Raft instead of a listener of its own (the members' mutual-TLS cluster port, which
	// Raft shares with the peer API); BindAddr and AdvertiseAddr are then unused, and Stream.Addr is advertised.
	Stream raft.StreamLayer
	// Bootstrap forms a new cluster if this node has no Raft state yet; ignored once state exists. The initial
	// voters are BootstrapServers, or this node alone when that is empty.
	Bootstrap        bool
	BootstrapServers []Server

	Logger *slog.Logger // default slog.Default()
	// RaftLogLevel is the least severe hashicorp/raft message passed to Logger (default warn: raft narrates every
	// election and compaction at info; the store logs leadership changes itself).
	RaftLogLevel slog.Leveler

	HeartbeatTimeout   time.Duration // default 1s
	ElectionTimeout    time.Duration // default 1s
	LeaderLeaseTimeout time.Duration // default 500ms
	CommitTimeout      time.Duration // default 50ms
	SnapshotThreshold  uint64        // log entries between snapshots; default 1024
	TrailingLogs       uint64        // entries kept after a snapshot for lagging followers; default 1024
	SnapshotInterval   time.Duration // how often the threshold is checked; default 60s
	ApplyTimeout       time.Duration // upper bound for a write or membership change; default 10s
	// RaftBackoff leaves calls to unreachable followers to raft's own exponential back-off instead of holding them
	// until the follower answers (reach.go): only for showing what the hold changes.
	RaftBackoff bool
}

const (
	snapshotsRetained = 2
	transportPool     = 3
	transportTimeout  = 10 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.NodeID == "":
		return c, errors.New("raftstore: NodeID is required")
	case c.RaftDir == "":
		return c, errors.New("raftstore: RaftDir is required")
	case c.StatePath == "":
		return c, errors.New("raftstore: StatePath is required")
	case c.BindAddr == "" && c.Stream == nil:
		return c, errors.New("raftstore: BindAddr is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	// Followers learn that an entry committed from the leader's next AppendEntries, sent at the latest after
	// CommitTimeout when nothing else is appended (see PublishCommit for writes a follower waits on). A short
	// timeout costs empty RPCs all the time: 5 ms kept an idle leader at 15% of a core.
	def(&c.CommitTimeout, 50*time.Millisecond)
	def(&c.SnapshotInterval, 60*time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 1024
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogLevel == nil {
		c.RaftLogLevel = slog.LevelWarn
	}
	return c, nil
}

// Store is one node's Raft member and its state machine.
type Store struct {
	cfg   Config
	log   *slog.Logger
	fsm   *fsm
	logs  *raftboltdb.BoltStore
	trans *reachTransport
	snaps raft.SnapshotStore
	raft  *raft.Raft
	addr  string

	lead   leadership
	read   readBarrier
	opened time.Time
	done   chan struct{}
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open starts this node's Raft member on the state found in cfg's directories (creating them when new) and, when
// cfg.Bootstrap is set and there is no Raft state yet, forms a cluster.
func Open(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.RaftDir, filepath.Dir(cfg.StatePath)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("raftstore: %w", err)
		}
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "raftstore", "node", cfg.NodeID),
		done: make(chan struct{}), opened: time.Now()}
	s.lead.subs = map[chan bool]struct{}{}
	s.read.barrier = make(chan struct{}, 1)
	if err := s.open(); err != nil {
		s.Close()
		return nil, fmt.Errorf("raftstore: open %s: %w", cfg.NodeID, err)
	}
	s.wg.Add(1)
	go s.watchLeadership()
	return s, nil
}

func (s *Store) open() error {
	cfg := s.cfg
	hlog := newHclogAdapter(cfg.Logger.With("node", cfg.NodeID), cfg.RaftLogLevel.Level())
	var err error
	if s.fsm, err = openFSM(cfg.StatePath, s.log); err != nil {
		return err
	}
	logPath := filepath.Join(cfg.RaftDir, "raft.db")
	s.logs, err = raftboltdb.New(raftboltdb.Options{Path: logPath, BoltOptions: &bbolt.Options{Timeout: boltTimeout}})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", logPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.RaftDir, snapshotsRetained, hlog.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	s.snaps = snaps
	restore, err := s.stateBehindSnapshot(snaps)
	if err != nil {
		return err
	}
	stream := cfg.Stream
	if stream == nil {
		if stream, err = listenRaft(cfg.BindAddr, cfg.AdvertiseAddr); err != nil {
			return err
		}
	}
	s.addr = stream.Addr().String()
	s.trans = newReachTransport(!cfg.RaftBackoff, raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: transportPool, Timeout: transportTimeout, Logger: hlog.Named("transport"),
		// No pipelined replication: when a follower rejects an entry while the leader steps down (a leadership
		// transfer does exactly that), raft's pipeline can deadlock and Shutdown then hangs forever
		// (hashicorp/raft#612). Synchronous replication costs nothing at this project's write rate.
		MaxRPCsInFlight: 1,
	}), s.log)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	// The state file survives restarts on its own; restoring the snapshot into it at every start would only rewind
	// it for the log to replay forward again. It is restored only when it is behind the snapshot (lost or replaced).
	rc.NoSnapshotRestoreOnStart = !restore
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.logs, snaps, s.trans); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.trans.follow(s.raft)
	if cfg.Bootstrap {
		return s.bootstrap()
	}
	return nil
}

// stateBehindSnapshot reports whether the state file lacks entries the newest snapshot has; the log before that
// snapshot may be gone, so only the snapshot can fill the gap. A state file at or past the snapshot is kept.
func (s *Store) stateBehindSnapshot(snaps raft.SnapshotStore) (bool, error) {
	list, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= s.fsm.applied.Load() {
		return false, nil
	}
	s.log.Info("state file is behind the newest snapshot; restoring it",
		"state_index", s.fsm.applied.Load(), "snapshot_index", list[0].Index)
	return true, nil
}

func (s *Store) bootstrap() error {
	servers := s.cfg.BootstrapServers
	if len(servers) == 0 {
		servers = []Server{{ID: s.cfg.NodeID, Addr: s.addr, Suffrage: raft.Voter.String()}}
	}
	err := s.BootstrapCluster(servers)
	if errors.Is(err, ErrCantBootstrap) {
		s.log.Debug("raft state exists; bootstrap skipped")
		return nil
	}
	return err
}

// Close shuts Raft down and closes the log and state files. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.trans != nil {
			s.trans.release() // held calls would keep raft's shutdown waiting
		}
		if s.fsm != nil {
			if p := s.fsm.paused.Swap(nil); p != nil { // so would a paused state machine
				close(*p)
			}
		}
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
			}
		}
		close(s.done)
		s.wg.Wait()
		s.lead.close()
		if s.trans != nil {
			if err := s.trans.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft transport: %w", err))
			}
		}
		if s.logs != nil {
			if err := s.logs.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft log: %w", err))
			}
		}
		if s.fsm != nil {
			errs = append(errs, s.fsm.close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// ID is this node's Raft server ID.
func (s *Store) ID() string { return s.cfg.NodeID }

// Addr is the Raft address peers dial to reach this node (the real port when BindAddr asked for port 0).
func (s *Store) Addr() string { return s.addr }
