package raftstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// Snapshot implements raft.FSM. It copies the state file (a consistent bbolt read transaction, streamed with
// tx.WriteTo) to a temporary file beside it and lets Persist stream that into raft's sink. Holding the read
// transaction until Persist instead would stall Apply whenever bbolt must grow its memory map, and would block a
// Restore's close of the file, while raft's snapshot goroutine waits on raft's main goroutine, which may in turn
// wait on the FSM: a deadlock. The state is metadata, so the copy is short; it is disk, never memory.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.failure(); err != nil {
		return nil, fmt.Errorf("refusing snapshot of a halted state machine: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+snapshotTempInfix+"*")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	snap := &fsmSnapshot{file: tmp}
	err = f.view(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(tmp)
		return err
	})
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		snap.Release()
		return nil, fmt.Errorf("snapshot: copy state: %w", err)
	}
	return snap, nil
}

// Temporary files beside the state file; leftovers from a crash are removed at open.
const (
	snapshotTempInfix = ".snapshot-"
	restoreTempInfix  = ".restore-"
)

type fsmSnapshot struct {
	file *os.File
	once sync.Once
}

// Persist streams the copied state file into the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := io.Copy(sink, s.file); err != nil {
		_ = sink.Cancel() // the copy error is the one to report
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release removes the copy. Raft calls it after Persist, or instead of it when the snapshot is abandoned.
func (s *fsmSnapshot) Release() {
	s.once.Do(func() {
		s.file.Close()
		os.Remove(s.file.Name())
	})
}

// Restore implements raft.FSM: the snapshot (a bbolt file) is written beside the state file, fsynced, checked,
// and renamed over it, so a crash leaves either the old or the new state, never a mix.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(f.path)+restoreTempInfix+"*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after the rename
	_, err = io.Copy(tmp, rc)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: write %s: %w", tmpName, err)
	}
	if err := checkStateFile(tmpName); err != nil {
		return fmt.Errorf("restore: snapshot: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		if err := f.db.Close(); err != nil {
			return fmt.Errorf("restore: close state: %w", err)
		}
		f.db = nil
	}
	if err := os.Rename(tmpName, f.path); err != nil {
		err = fmt.Errorf("restore: swap state: %w", err)
		_ = f.reopenLocked(err) // a failed reopen halts the FSM with err as its cause; err is the one to report
		return err
	}
	if err := syncDir(dir); err != nil {
		f.log.Warn("restore: fsync state dir", "dir", dir, "err", err)
	}
	if err := f.reopenLocked(nil); err != nil {
		return err
	}
	f.failed.Store(nil) // the snapshot is a complete, consistent state
	f.log.Info("raft state restored from snapshot", "applied_index", f.applied.Load())
	return nil
}

// reopenLocked reopens the state file after a swap (or a failed swap). Failing to reopen halts the FSM.
func (f *fsm) reopenLocked(cause error) error {
	db, applied, err := openStateDB(f.path)
	if err != nil {
		f.fail(errors.Join(cause, err))
		return err
	}
	f.db = db
	f.setApplied(applied)
	f.catalogGen.Add(1)
	return nil
}

func checkStateFile(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		_, err := readHeader(tx)
		return err
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeTemps deletes snapshot copies and unfinished restores left by a crash.
func removeTemps(path string, log *slog.Logger) {
	entries, _ := os.ReadDir(filepath.Dir(path))
	base := filepath.Base(path)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, base+snapshotTempInfix) || strings.HasPrefix(name, base+restoreTempInfix) {
			full := filepath.Join(filepath.Dir(path), name)
			if err := os.Remove(full); err == nil {
				log.Info("removed leftover temporary state file", "path", full)
			}
		}
	}
}
