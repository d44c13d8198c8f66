package raftstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// Bucket and key names of the FSM's bbolt file. The file is also the snapshot format, so renaming any of them is a
// schema change (bump stateSchema).
var (
	bucketMeta         = []byte("meta")          // applied_index, schema
	bucketSchematics   = []byte("schematics")    // schematic ID → canonical YAML
	bucketCatalog      = []byte("catalog")       // version → JSON release.Version
	bucketCatalogMeta  = []byte("catalog_meta")  // "current" → JSON CatalogMeta
	bucketAssets       = []byte("assets")        // recipe key → JSON AssetRecord
	bucketAssetDigests = []byte("asset_digests") // content/blob digest → first recipe key naming it
	bucketSettings     = []byte("settings")      // key → bytes

	allBuckets = [][]byte{bucketMeta, bucketSchematics, bucketCatalog, bucketCatalogMeta, bucketAssets,
		bucketAssetDigests, bucketSettings}

	keyApplied     = []byte("applied_index")
	keySchema      = []byte("schema")
	keyCatalogMeta = []byte("current")
)

const stateSchema = "1"

// boltTimeout bounds the wait for a bbolt file lock, so a second process on the same data dir fails instead of hanging.
const boltTimeout = 2 * time.Second

// ErrClosed is returned by reads and writes on a closed Store.
var ErrClosed = errors.New("raftstore closed")

// fsm is the replicated state machine: a bbolt file whose every change records the log index it came from in the
// same transaction. Raft calls ApplyBatch, Snapshot and Restore from one goroutine (Persist from another); reads
// come from any goroutine.
type fsm struct {
	path string
	log  *slog.Logger

	mu sync.RWMutex // write-locked only to swap db (Restore, close)
	db *bbolt.DB

	applied atomic.Uint64 // last log index whose effect is in db
	// catalogGen changes whenever the catalog may have changed, so readers can cache decoded catalogs.
	catalogGen atomic.Uint64
	// appliedCh is closed (and replaced) whenever applied moves, waking WaitApplied at once.
	appliedMu sync.Mutex
	appliedCh chan struct{}
	failed    atomic.Pointer[error] // set when a committed entry could not be stored
	// paused, while set, holds applies until it is closed (Store.PauseApply).
	paused atomic.Pointer[chan struct{}]
}

func openFSM(path string, log *slog.Logger) (*fsm, error) {
	removeTemps(path, log)
	db, applied, err := openStateDB(path)
	if err != nil {
		return nil, err
	}
	f := &fsm{path: path, log: log, db: db, appliedCh: make(chan struct{})}
	f.applied.Store(applied)
	return f, nil
}

// setApplied records the applied index and wakes everyone waiting for it to move.
func (f *fsm) setApplied(idx uint64) {
	f.applied.Store(idx)
	f.appliedMu.Lock()
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.appliedMu.Unlock()
}

// appliedChanged returns a channel closed the next time the applied index moves.
func (f *fsm) appliedChanged() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedCh
}

// openStateDB opens (creating if needed) a state file and returns its applied index.
func openStateDB(path string) (*bbolt.DB, uint64, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltTimeout})
	if err != nil {
		return nil, 0, fmt.Errorf("open state %s: %w", path, err)
	}
	// It holds what the Raft log holds (the cluster's private keys): only the node's user reads it, whatever mode a
	// copy or an older version left it with (bbolt's mode applies only to a file it creates).
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("restrict state %s: %w", path, err)
	}
	var applied uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) == nil {
			if err := meta.Put(keySchema, []byte(stateSchema)); err != nil {
				return err
			}
		}
		applied, err = readHeader(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("init state %s: %w", path, err)
	}
	return db, applied, nil
}

// readHeader checks the schema of a state file and returns its applied index.
func readHeader(tx *bbolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errors.New("not a raftstore state file: no meta bucket")
	}
	if s := string(meta.Get(keySchema)); s != stateSchema {
		return 0, fmt.Errorf("state schema %q, this build reads %q", s, stateSchema)
	}
	v := meta.Get(keyApplied)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt applied index (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (f *fsm) failure() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *fsm) fail(err error) {
	f.failed.Store(&err)
	f.log.Error("raft state machine halted: committed entries are no longer stored until restart", "err", err)
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one bbolt transaction (one fsync) per batch. Entries at or below the
// stored applied index are skipped, so replaying the log after a restart never moves state backwards. A storage
// failure halts the FSM: the applied index stays at the last stored entry and snapshots are refused, so the log is
// kept and a restart replays from there rather than silently missing an entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if p := f.paused.Load(); p != nil {
		<-*p
	}
	out := make([]any, len(logs))
	fill := func(msg string) {
		for i, l := range logs {
			out[i] = Result{Index: l.Index, Error: msg}
		}
	}
	if err := f.failure(); err != nil {
		fill(err.Error())
		return out
	}
	if len(logs) == 0 || logs[len(logs)-1].Index <= f.applied.Load() {
		fill("")
		return out
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		fill(ErrClosed.Error())
		return out
	}
	var (
		last           uint64
		catalogChanged bool
	)
	err := f.db.Update(func(tx *bbolt.Tx) error {
		applied, err := readHeader(tx)
		if err != nil {
			return err
		}
		last = applied
		for i, l := range logs {
			res := Result{Index: l.Index}
			if l.Index <= applied {
				out[i] = res
				continue
			}
			if l.Type == raft.LogCommand {
				if res, err = applyCommand(tx, l.Data); err != nil {
					return fmt.Errorf("apply log %d: %w", l.Index, err)
				}
				res.Index = l.Index
				catalogChanged = catalogChanged || touchesCatalog(l.Data)
			}
			out[i] = res
			last = l.Index
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], last)
		return tx.Bucket(bucketMeta).Put(keyApplied, buf[:])
	})
	if err != nil {
		f.fail(fmt.Errorf("store committed entries: %w", err))
		fill(err.Error())
		return out
	}
	f.setApplied(last)
	if catalogChanged {
		f.catalogGen.Add(1)
	}
	return out
}

// touchesCatalog reports whether an encoded command changes the catalog.
func touchesCatalog(data []byte) bool {
	var c struct{ Op Op }
	if json.Unmarshal(data, &c) != nil {
		return false
	}
	return c.Op == OpPutCatalog || c.Op == OpRemoveVersion || c.Op == OpPutCatalogMeta
}

// applyCommand applies one command inside tx. A refused command is a Result with Error (deterministic on every
// node); only storage failures are returned as error.
func applyCommand(tx *bbolt.Tx, data []byte) (Result, error) {
	c, err := DecodeCommand(data)
	if err != nil {
		return Result{Error: err.Error()}, nil
	}
	switch c.Op {
	case OpPutSchematic:
		return putOnce(tx.Bucket(bucketSchematics), []byte(c.ID), c.YAML)
	case OpPutCatalog:
		return putJSON(tx.Bucket(bucketCatalog), []byte(c.Release.Version), c.Release)
	case OpRemoveVersion:
		b := tx.Bucket(bucketCatalog)
		if b.Get([]byte(c.Version)) == nil {
			return Result{}, nil
		}
		return Result{Changed: true}, b.Delete([]byte(c.Version))
	case OpPutCatalogMeta:
		return putJSON(tx.Bucket(bucketCatalogMeta), keyCatalogMeta, c.Meta)
	case OpPutAsset:
		return putAsset(tx, *c.Asset)
	case OpPutSetting:
		b := tx.Bucket(bucketSettings)
		old, found := lookup(b, []byte(c.Key))
		if found && bytes.Equal(old, c.Value) {
			return Result{}, nil
		}
		return Result{Changed: true}, b.Put([]byte(c.Key), nonNil(c.Value))
	case OpInitSetting:
		b := tx.Bucket(bucketSettings)
		if old, found := lookup(b, []byte(c.Key)); found {
			return Result{Conflict: !bytes.Equal(old, c.Value), Value: bytes.Clone(old)}, nil
		}
		return Result{Changed: true, Value: c.Value}, b.Put([]byte(c.Key), nonNil(c.Value))
	case OpPatchSetting:
		return patchSetting(tx.Bucket(bucketSettings), []byte(c.Key), c.Value)
	case OpDeleteSetting:
		b := tx.Bucket(bucketSettings)
		if b.Get([]byte(c.Key)) == nil {
			return Result{}, nil
		}
		return Result{Changed: true}, b.Delete([]byte(c.Key))
	}
	return Result{Error: fmt.Sprintf("op %q validated but not applied", c.Op)}, nil
}

// patchSetting merges patch into the JSON object stored under key (none: an empty object). A stored value that is not
// a JSON object is refused, not overwritten.
func patchSetting(b *bbolt.Bucket, key, patch []byte) (Result, error) {
	old, found := lookup(b, key)
	if !found {
		old = []byte("{}")
	}
	if !isJSONObject(old) {
		return Result{Error: fmt.Sprintf("setting %s holds no JSON object to patch", key)}, nil
	}
	merged, err := jsonpatch.MergePatch(old, patch)
	if err != nil {
		return Result{Error: fmt.Sprintf("patch setting %s: %v", key, err)}, nil
	}
	if found && bytes.Equal(old, merged) {
		return Result{Value: merged}, nil
	}
	return Result{Changed: true, Value: merged}, b.Put(key, merged)
}

// putOnce stores value under key unless the key exists; an existing different value is reported as a conflict.
func putOnce(b *bbolt.Bucket, key, value []byte) (Result, error) {
	if old, found := lookup(b, key); found {
		return Result{Conflict: !bytes.Equal(old, value)}, nil
	}
	return Result{Changed: true}, b.Put(key, value)
}

func putJSON(b *bbolt.Bucket, key []byte, v any) (Result, error) {
	enc, err := json.Marshal(v)
	if err != nil {
		return Result{}, fmt.Errorf("encode %s: %w", key, err)
	}
	if old, found := lookup(b, key); found && bytes.Equal(old, enc) {
		return Result{}, nil
	}
	return Result{Changed: true}, b.Put(key, enc)
}

// putAsset stores the first committed record for a recipe key; later records are answered with the winner. Records
// that agree on digest and size describe the same bytes and are not a conflict.
func putAsset(tx *bbolt.Tx, rec AssetRecord) (Result, error) {
	b := tx.Bucket(bucketAssets)
	if old := b.Get([]byte(rec.Key)); old != nil {
		var stored AssetRecord
		if err := json.Unmarshal(old, &stored); err != nil {
			return Result{}, fmt.Errorf("decode asset %s: %w", rec.Key, err)
		}
		return Result{Asset: &stored, Conflict: stored.Digest != rec.Digest || stored.Size != rec.Size}, nil
	}
	enc, err := json.Marshal(rec)
	if err != nil {
		return Result{}, fmt.Errorf("encode asset %s: %w", rec.Key, err)
	}
	if err := b.Put([]byte(rec.Key), enc); err != nil {
		return Result{}, err
	}
	idx := tx.Bucket(bucketAssetDigests)
	digests := []string{rec.Digest}
	for _, b := range rec.Blobs {
		digests = append(digests, b.Digest)
	}
	for _, d := range digests {
		// A blob shared by several recipes (base layers) keeps its first recipe: any holder of it will do.
		if idx.Get([]byte(d)) == nil {
			if err := idx.Put([]byte(d), []byte(rec.Key)); err != nil {
				return Result{}, err
			}
		}
	}
	return Result{Changed: true, Asset: &rec}, nil
}

// lookup reports whether key is present by finding the key itself, so an empty value reads as present whatever
// slice bbolt hands back for it.
func lookup(b *bbolt.Bucket, key []byte) ([]byte, bool) {
	k, v := b.Cursor().Seek(key)
	if !bytes.Equal(k, key) {
		return nil, false
	}
	return v, true
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// view runs fn in a read transaction on the current state file.
func (f *fsm) view(fn func(tx *bbolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.View(fn)
}

func (f *fsm) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.db = nil
	if err != nil {
		return fmt.Errorf("close state %s: %w", f.path, err)
	}
	return nil
}
