package raftstore

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
)

func newTestFSM(t *testing.T) *fsm {
	t.Helper()
	f, err := openFSM(filepath.Join(t.TempDir(), "state.db"), testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { f.close() })
	return f
}

func cmdLog(t *testing.T, index uint64, c Command) *raft.Log {
	t.Helper()
	data, err := EncodeCommand(c)
	require.NoError(t, err)
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func putCatalog(v release.Version) Command {
	return Command{V: CommandVersion, Op: OpPutCatalog, Release: &v}
}

func catalogOf(t *testing.T, f *fsm, version string) release.Version {
	t.Helper()
	s := &Store{fsm: f}
	v, found, err := s.Catalog(version)
	require.NoError(t, err)
	require.True(t, found)
	return v
}

func TestFSMReplaySkipsAppliedEntries(t *testing.T) {
	f := newTestFSM(t)
	first, second := testRelease("v1.13.0", "first"), testRelease("v1.13.0", "second")
	l1, l2 := cmdLog(t, 1, putCatalog(first)), cmdLog(t, 2, putCatalog(second))

	res := f.ApplyBatch([]*raft.Log{l1, l2})
	require.True(t, res[0].(Result).Changed)
	require.True(t, res[1].(Result).Changed)
	require.Equal(t, uint64(2), f.applied.Load())

	// Replaying the older entry, alone or in a batch, must not bring "first" back.
	f.Apply(l1)
	require.Equal(t, second, catalogOf(t, f, "v1.13.0"))
	third := testRelease("v1.13.0", "third")
	res = f.ApplyBatch([]*raft.Log{l1, l2, cmdLog(t, 3, putCatalog(third))})
	require.False(t, res[0].(Result).Changed)
	require.False(t, res[1].(Result).Changed)
	require.True(t, res[2].(Result).Changed)
	require.Equal(t, third, catalogOf(t, f, "v1.13.0"))
	require.Equal(t, uint64(3), f.applied.Load())

	// The index survives reopening the file.
	require.NoError(t, f.close())
	g, err := openFSM(f.path, testLogger(t))
	require.NoError(t, err)
	defer g.close()
	require.Equal(t, uint64(3), g.applied.Load())
	g.Apply(l1)
	require.Equal(t, third, catalogOf(t, g, "v1.13.0"))
}

func TestFSMNonCommandEntriesAdvanceIndex(t *testing.T) {
	f := newTestFSM(t)
	res := f.ApplyBatch([]*raft.Log{{Index: 4, Type: raft.LogConfiguration}, {Index: 5, Type: raft.LogCommand,
		Data: []byte("junk")}})
	require.Empty(t, res[0].(Result).Error)
	require.NotEmpty(t, res[1].(Result).Error, "junk is refused, not fatal")
	require.Equal(t, uint64(5), f.applied.Load())
	require.NoError(t, f.failure())
}

func TestFSMHaltsWhenStorageFails(t *testing.T) {
	f := newTestFSM(t)
	f.Apply(cmdLog(t, 1, putCatalog(testRelease("v1.13.0", "a"))))
	require.NoError(t, f.db.Close()) // the file vanishes from under the FSM

	res := f.Apply(cmdLog(t, 2, putCatalog(testRelease("v1.13.0", "b")))).(Result)
	require.NotEmpty(t, res.Error)
	require.Error(t, f.failure())
	require.Equal(t, uint64(1), f.applied.Load(), "the failed entry is not counted as applied")
	_, err := f.Snapshot()
	require.Error(t, err, "a halted FSM must not be snapshotted, so the log is kept for replay")
	res = f.Apply(cmdLog(t, 3, putCatalog(testRelease("v1.13.0", "c")))).(Result)
	require.NotEmpty(t, res.Error, "later entries are refused too")
}

// memSink is a raft.SnapshotSink in memory, for driving Persist directly.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Close() error  { m.closed = true; return nil }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }

func TestFSMSnapshotIsConsistentWhileApplying(t *testing.T) {
	f := newTestFSM(t)
	for i := range 10 {
		id, yaml := schematic(i)
		f.Apply(cmdLog(t, uint64(i+1), Command{V: CommandVersion, Op: OpPutSchematic, ID: id, YAML: yaml}))
	}
	want := dump(t, f, false)
	snap, err := f.Snapshot()
	require.NoError(t, err)
	// Writes after Snapshot() must not leak into the snapshot being persisted.
	for i := 10; i < 20; i++ {
		id, yaml := schematic(i)
		f.Apply(cmdLog(t, uint64(i+1), Command{V: CommandVersion, Op: OpPutSchematic, ID: id, YAML: yaml}))
	}
	sink := &memSink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release() // raft always calls Release; a second release must be harmless
	require.True(t, sink.closed)

	g := newTestFSM(t)
	require.NoError(t, g.Restore(io.NopCloser(&sink.Buffer)))
	require.Equal(t, want, dump(t, g, false))
	require.Equal(t, uint64(10), g.applied.Load())

	// A snapshot that is not a state file is refused and leaves the state alone.
	require.Error(t, g.Restore(io.NopCloser(bytes.NewReader([]byte("not bbolt")))))
	require.Equal(t, want, dump(t, g, false))
}

func TestFSMRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	leftovers := []string{path + snapshotTempInfix + "1", path + restoreTempInfix + "2"}
	keep := filepath.Join(dir, "state.db.other")
	for _, p := range append(leftovers, keep) {
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	}
	f, err := openFSM(path, testLogger(t))
	require.NoError(t, err)
	defer f.close()
	for _, p := range leftovers {
		require.NoFileExists(t, p)
	}
	require.FileExists(t, keep)
}
