package raftstore

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
)

// FuzzCommand drives bodies of POST /_peer/apply (a command a follower forwards to the leader) through
// DecodeCommand and then the state machine. A refusal matches ErrInvalidCommand; an accepted command encodes to a
// fixed point (decode, encode, decode, encode gives the same bytes: followers and leader must read one command the
// same way); and nothing a valid command holds may halt the state machine. A halt is a cluster-wide outage: the
// entry is in the log, so every member replays it and halts too.
func FuzzCommand(f *testing.F) {
	for _, c := range seedCommands() {
		data, err := EncodeCommand(c)
		require.NoError(f, err)
		f.Add(data)
	}

	for _, seed := range []string{
		"", "{}", "null", `{"v":1}`, `{"v":2,"op":"PutSetting","key":"k"}`, `{"v":1,"op":"PutSetting","key":""}`,
		`{"v":1,"op":"PatchSetting","key":"k","value":"bnVsbA=="}`, `{"v":1,"op":"PutCatalog","release":{}}`,
		`{"v":1,"op":"RemoveVersion","version":"1.2.3"}`, `{"v":1,"op":"PutAsset","asset":{}}`,
	} {
		f.Add([]byte(seed))
	}

	sm, err := openFSM(filepath.Join(f.TempDir(), "state.db"), testLogger(f))
	require.NoError(f, err)
	f.Cleanup(func() { sm.close() })

	// An fsync per input would leave a few thousand inputs a minute; what is on disk after a crash is not the question.
	sm.db.NoSync = true

	var index uint64

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidCommand)
		} else {
			requireFixedPoint(t, c)
		}

		// The state machine decodes again itself: a refusal is an answer (Result.Error), never a halt.
		index++
		res, ok := sm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(Result)
		require.True(t, ok)
		require.NoError(t, sm.failure(), "command %q halted the state machine", data)
		// A command refused by the decoder is refused by the state machine too. One that decodes may still be
		// refused for the state it meets (a merge patch of a setting that holds no JSON object: the failing input
		// kept in testdata/fuzz/FuzzCommand/patch-of-a-setting-that-is-no-object, found in CI).
		if err != nil {
			require.NotEmpty(t, res.Error, "decode: %v, but the state machine applied it: %+v", err, res)
		}
	})
}

// requireFixedPoint checks that an accepted command re-encodes to bytes that decode to the same command.
func requireFixedPoint(t *testing.T, c Command) {
	t.Helper()

	first, err := EncodeCommand(c)
	if err != nil {
		// JSON escaping can grow a command past the limit it was read under; that is the only refusal allowed.
		require.ErrorIs(t, err, ErrInvalidCommand)
		require.Contains(t, err.Error(), "limit")

		return
	}

	again, err := DecodeCommand(first)
	require.NoError(t, err, "%s", first)

	second, err := EncodeCommand(again)
	require.NoError(t, err)
	require.JSONEq(t, string(first), string(second))
	require.Equal(t, string(first), string(second))
}

// seedCommands is one valid command of each op.
func seedCommands() []Command {
	id, yaml := schematic(1)
	rel := testRelease("v1.13.0", "a")
	asset := testAsset("k", "content", "node-a")

	return []Command{
		{V: CommandVersion, Op: OpPutSchematic, ID: id, YAML: yaml},
		{V: CommandVersion, Op: OpPutCatalog, Release: &rel},
		{V: CommandVersion, Op: OpRemoveVersion, Version: "v1.13.0"},
		{V: CommandVersion, Op: OpPutCatalogMeta, Meta: &CatalogMeta{Broken: []string{"v1.9.2"}}},
		{V: CommandVersion, Op: OpPutAsset, Asset: &asset},
		{V: CommandVersion, Op: OpPutSetting, Key: "replicas", Value: []byte("3")},
		{V: CommandVersion, Op: OpInitSetting, Key: "ca", Value: []byte(`{"cert":"x"}`)},
		{V: CommandVersion, Op: OpPatchSetting, Key: "ca", Value: []byte(`{"cert":null,"b":[1]}`)},
		{V: CommandVersion, Op: OpDeleteSetting, Key: "replicas"},
	}
}

// TestVersionOverKeyLimit is the case the state machine fuzzing raised: a PutCatalog whose version is valid semver
// but longer than a bbolt key may be. Committed, it halted the state machine ("key too large") on every member; it is
// now refused before it reaches the log, and the same bytes forwarded raw are refused by the state machine as an
// answer. testdata/fuzz/FuzzCommand holds the raw entry.
func TestVersionOverKeyLimit(t *testing.T) {
	rel := testRelease("v1.13.0-"+strings.Repeat("a", bbolt.MaxKeySize), "a")
	c := Command{V: CommandVersion, Op: OpPutCatalog, Release: &rel}

	_, err := EncodeCommand(c)
	require.ErrorIs(t, err, ErrInvalidCommand)
	require.ErrorContains(t, err, "limit 32768")

	data, err := json.Marshal(c) // what a member without the check would have forwarded
	require.NoError(t, err)

	sm := newTestFSM(t)
	res, ok := sm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(Result)
	require.True(t, ok)
	require.ErrorIs(t, res.Err(), ErrRejected)
	require.NoError(t, sm.failure())

	// The longest version bbolt takes still applies, as it did before the check.
	rel.Version = "v1.13.0-" + strings.Repeat("a", bbolt.MaxKeySize-len("v1.13.0-"))
	res, ok = sm.Apply(cmdLog(t, 2, c)).(Result)
	require.True(t, ok)
	require.True(t, res.Changed, "%+v", res)
	require.NoError(t, sm.failure())
}
