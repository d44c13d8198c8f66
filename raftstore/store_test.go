package raftstore

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"
)

func TestSingleNodeWritesAndReads(t *testing.T) {
	s := openLeader(t, t.TempDir())
	ctx := testCtx(t)

	_, port, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	require.NotEqual(t, "0", port, "Addr must report the bound port")

	// The watch may first carry false: IsLeader (openLeader waited for it) can turn true before raft's leadership
	// notification reaches the store's watcher.
	watch, stop := s.WatchLeadership()
	defer stop()
	leads := false
	for deadline := time.After(5 * time.Second); !leads; {
		select {
		case leads = <-watch:
		case <-deadline:
			require.Fail(t, "a bootstrapped single node leads")
		}
	}

	// Schematics.
	id, yaml := schematic(1)
	require.NoError(t, s.PutSchematic(ctx, id, yaml))
	got, found, err := s.Schematic(id)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, yaml, got)
	_, found, err = s.Schematic(hexOf("absent"))
	require.NoError(t, err)
	require.False(t, found)

	// Catalog: versions sort by semver, not by name.
	for _, v := range []string{"v1.10.0", "v1.9.1", "v1.13.0", "v1.13.0-beta.1"} {
		require.NoError(t, s.PutCatalog(ctx, testRelease(v, "a")))
	}
	versions, err := s.Versions()
	require.NoError(t, err)
	require.Equal(t, []string{"v1.9.1", "v1.10.0", "v1.13.0-beta.1", "v1.13.0"}, versions)
	rel, found, err := s.Catalog("v1.10.0")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, testRelease("v1.10.0", "a"), rel)
	require.NoError(t, s.RemoveVersion(ctx, "v1.9.1"))
	require.NoError(t, s.RemoveVersion(ctx, "v1.9.1"), "removing an absent version is a no-op")
	_, found, err = s.Catalog("v1.9.1")
	require.NoError(t, err)
	require.False(t, found)

	// Catalog meta.
	_, found, err = s.CatalogMeta()
	require.NoError(t, err)
	require.False(t, found)
	meta := CatalogMeta{Broken: []string{"v1.11.2"}, LastSync: time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)}
	require.NoError(t, s.PutCatalogMeta(ctx, meta))
	gotMeta, found, err := s.CatalogMeta()
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, meta, gotMeta)

	// Assets, by recipe key and by any digest they name.
	rec := testAsset("recipe-1", "iso bytes", "n1")
	stored, err := s.PutAsset(ctx, rec)
	require.NoError(t, err)
	require.Equal(t, rec, stored)
	gotRec, found, err := s.Asset(rec.Key)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, rec, gotRec)
	digests := []string{rec.Digest}
	for _, b := range rec.Blobs {
		digests = append(digests, b.Digest)
	}
	for _, d := range digests {
		byDigest, found, err := s.AssetByDigest(d)
		require.NoError(t, err)
		require.True(t, found, d)
		require.Equal(t, rec, byDigest)
	}
	_, found, err = s.AssetByDigest(digestOf("unknown"))
	require.NoError(t, err)
	require.False(t, found)

	// The same records by kind, as stored: what a member behind the log reads from the leader.
	raw, found, err := s.Record(RecordAsset, rec.Key)
	require.NoError(t, err)
	require.True(t, found)
	var decoded AssetRecord
	require.NoError(t, json.Unmarshal(raw, &decoded))
	require.Equal(t, rec, decoded)
	_, found, err = s.Record(RecordAsset, hexOf("no such recipe"))
	require.NoError(t, err)
	require.False(t, found)
	_, _, err = s.Record("secrets", "x")
	require.ErrorIs(t, err, ErrRecordKind)

	// Settings, including an empty value, which must still read as present.
	require.NoError(t, s.PutSetting(ctx, "ring/partitions", []byte("271")))
	require.NoError(t, s.PutSetting(ctx, "ring/partitions", []byte("272")))
	require.NoError(t, s.PutSetting(ctx, "empty", nil))
	val, found, err := s.Setting("ring/partitions")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "272", string(val))
	val, found, err = s.Setting("empty")
	require.NoError(t, err)
	require.True(t, found)
	require.Empty(t, val)
	byPrefix, err := s.Settings("ring/")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"ring/partitions": []byte("272")}, byPrefix)
	byPrefix, err = s.Settings("nothing/")
	require.NoError(t, err)
	require.Empty(t, byPrefix)
	_, found, err = s.Setting("absent")
	require.NoError(t, err)
	require.False(t, found)
	existed, err := DeleteSetting(ctx, s, "empty")
	require.NoError(t, err)
	require.True(t, existed)
	_, found, err = s.Setting("empty")
	require.NoError(t, err)
	require.False(t, found, "a deleted setting is gone")
	existed, err = DeleteSetting(ctx, s, "empty")
	require.NoError(t, err)
	require.False(t, existed, "deleting an absent setting changes nothing")

	// Status.
	servers, err := s.Servers()
	require.NoError(t, err)
	require.Equal(t, []Server{{ID: "n1", Addr: s.Addr(), Suffrage: "Voter"}}, servers)
	leaderID, leaderAddr := s.Leader()
	require.Equal(t, "n1", leaderID)
	require.Equal(t, s.Addr(), leaderAddr)
	require.NoError(t, s.Barrier(ctx))
	require.NoError(t, s.VerifyLeader(ctx))
	require.Positive(t, s.AppliedIndex())
	require.Equal(t, "Leader", s.Stats()["state"])
	require.Empty(t, s.Stats()["fsm_halted"])
}

func TestWriteOnceAndFirstWins(t *testing.T) {
	s := openLeader(t, t.TempDir())
	ctx := testCtx(t)

	t.Run("schematic is write-once", func(t *testing.T) {
		id, yaml := schematic(7)
		require.NoError(t, s.PutSchematic(ctx, id, yaml))
		require.NoError(t, s.PutSchematic(ctx, id, yaml), "repeating a put is a no-op")
		err := s.PutSchematic(ctx, id, []byte("other: bytes\n"))
		require.ErrorIs(t, err, ErrConflict)
		got, _, err := s.Schematic(id)
		require.NoError(t, err)
		require.Equal(t, yaml, got, "the first bytes stay")
	})

	t.Run("first asset record wins", func(t *testing.T) {
		first := testAsset("recipe-race", "bytes built on n1", "n1")
		second := testAsset("recipe-race", "different bytes built on n2", "n2")
		stored, err := s.PutAsset(ctx, first)
		require.NoError(t, err)
		require.Equal(t, first, stored)

		res, err := s.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutAsset, Asset: &second})
		require.NoError(t, err)
		require.True(t, res.Conflict, "the loser is told its bytes lost")
		require.False(t, res.Changed)
		require.Equal(t, first, *res.Asset)

		stored, err = s.PutAsset(ctx, second)
		require.NoError(t, err)
		require.Equal(t, first, stored)
		_, found, err := s.AssetByDigest(second.Digest)
		require.NoError(t, err)
		require.False(t, found, "the loser's digest is not indexed")
	})

	t.Run("same bytes from another builder is no conflict", func(t *testing.T) {
		first := testAsset("recipe-same", "identical bytes", "n1")
		again := testAsset("recipe-same", "identical bytes", "n2")
		_, err := s.PutAsset(ctx, first)
		require.NoError(t, err)
		res, err := s.ApplyCommand(ctx, Command{V: CommandVersion, Op: OpPutAsset, Asset: &again})
		require.NoError(t, err)
		require.False(t, res.Conflict)
		require.Equal(t, "n1", res.Asset.Builder)
	})

	t.Run("init setting keeps the first value", func(t *testing.T) {
		v, err := s.InitSetting(ctx, "cosign/key", []byte("key-A"))
		require.NoError(t, err)
		require.Equal(t, "key-A", string(v))
		v, err = s.InitSetting(ctx, "cosign/key", []byte("key-B"))
		require.NoError(t, err)
		require.Equal(t, "key-A", string(v))
		got, _, err := s.Setting("cosign/key")
		require.NoError(t, err)
		require.Equal(t, "key-A", string(got))
	})

	t.Run("patch setting merges fields and removes nulls", func(t *testing.T) {
		v, err := PatchSetting(ctx, s, "cluster/settings", []byte(`{"replicas":3,"minVersion":"1.9.0"}`))
		require.NoError(t, err)
		require.JSONEq(t, `{"replicas":3,"minVersion":"1.9.0"}`, string(v))
		v, err = PatchSetting(ctx, s, "cluster/settings", []byte(`{"minVersion":null,"brokenVersions":["v1.9.1"]}`))
		require.NoError(t, err)
		require.JSONEq(t, `{"replicas":3,"brokenVersions":["v1.9.1"]}`, string(v))
		got, _, err := s.Setting("cluster/settings")
		require.NoError(t, err)
		require.JSONEq(t, string(v), string(got))

		_, err = PatchSetting(ctx, s, "cluster/settings", []byte(`["not an object"]`))
		require.ErrorIs(t, err, ErrInvalidCommand)
		require.NoError(t, s.PutSetting(ctx, "raw", []byte{0, 1}))
		_, err = PatchSetting(ctx, s, "raw", []byte(`{"a":1}`))
		require.ErrorIs(t, err, ErrRejected, "a value that is no JSON object is never overwritten by a patch")
	})
}

// writeAll writes one entry of every kind plus n schematics.
func writeAll(t *testing.T, s *Store, n int, marker string) {
	t.Helper()
	ctx := testCtx(t)
	for i := range n {
		id, yaml := schematic(i)
		require.NoError(t, s.PutSchematic(ctx, id, yaml))
	}
	require.NoError(t, s.PutCatalog(ctx, testRelease("v1.13.0", marker)))
	require.NoError(t, s.PutCatalogMeta(ctx, CatalogMeta{Broken: []string{"v1.0.0-" + marker}}))
	_, err := s.PutAsset(ctx, testAsset("recipe-"+marker, "content-"+marker, "n1"))
	require.NoError(t, err)
	require.NoError(t, s.PutSetting(ctx, "setting-"+marker, []byte(marker)))
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	s, err := Open(cfg)
	require.NoError(t, err)
	waitLeader(t, s)
	writeAll(t, s, 5, "a")
	before := dump(t, s.fsm, false)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, _, err = s.Schematic(hexOf("x"))
	require.ErrorIs(t, err, ErrClosed)

	// Bootstrap is asked for again and must be a no-op; state is readable before any election.
	s = openStore(t, cfg)
	require.Equal(t, before, dump(t, s.fsm, false))
	waitLeader(t, s)
	require.NoError(t, s.Barrier(testCtx(t)))
	require.Equal(t, before[string(bucketSchematics)], dump(t, s.fsm, false)[string(bucketSchematics)])
	writeAll(t, s, 6, "b")
	_, found, err := s.Setting("setting-a")
	require.NoError(t, err)
	require.True(t, found)
}

func TestReplayDoesNotRegress(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	s, err := Open(cfg)
	require.NoError(t, err)
	waitLeader(t, s)
	ctx := testCtx(t)
	v1, v2 := testRelease("v1.13.0", "first"), testRelease("v1.13.0", "second")
	require.NoError(t, s.PutCatalog(ctx, v1))
	require.NoError(t, s.PutCatalog(ctx, v2))
	require.NoError(t, s.Close())

	s = openStore(t, cfg)
	got, _, err := s.Catalog("v1.13.0")
	require.NoError(t, err)
	require.Equal(t, v2, got)
	waitLeader(t, s)
	require.NoError(t, s.Barrier(ctx)) // replay (if any) has run
	got, _, err = s.Catalog("v1.13.0")
	require.NoError(t, err)
	require.Equal(t, v2, got)
}

func TestSnapshotAndRestore(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	s, err := Open(cfg)
	require.NoError(t, err)
	waitLeader(t, s)

	writeAll(t, s, 20, "a")
	require.NoError(t, s.Snapshot())
	atSnapshot := dump(t, s.fsm, false)
	writeAll(t, s, 25, "b")
	final := dump(t, s.fsm, true)
	require.NoError(t, s.Close())

	t.Run("snapshot restores into a fresh state machine", func(t *testing.T) {
		snaps, err := raftSnapshots(cfg.RaftDir)
		require.NoError(t, err)
		list, err := snaps.List()
		require.NoError(t, err)
		require.NotEmpty(t, list)
		_, rc, err := snaps.Open(list[0].ID)
		require.NoError(t, err)
		fresh, err := openFSM(filepath.Join(t.TempDir(), "state.db"), testLogger(t))
		require.NoError(t, err)
		defer fresh.close()
		require.NoError(t, fresh.Restore(rc))
		require.Equal(t, atSnapshot, dump(t, fresh, false))
		require.Greater(t, s.fsm.applied.Load(), fresh.applied.Load())
	})

	t.Run("the log was truncated behind the snapshot", func(t *testing.T) {
		logs, err := raftboltdb.NewBoltStore(filepath.Join(cfg.RaftDir, "raft.db"))
		require.NoError(t, err)
		first, err := logs.FirstIndex()
		require.NoError(t, err)
		require.NoError(t, logs.Close())
		require.Greater(t, first, uint64(10))
	})

	t.Run("restart after truncation has everything", func(t *testing.T) {
		s := openStore(t, cfg)
		require.Equal(t, final, dump(t, s.fsm, true))
		require.NoError(t, s.Close())
	})

	t.Run("lost state file is rebuilt from snapshot and log", func(t *testing.T) {
		require.NoError(t, os.Remove(cfg.StatePath))
		s := openStore(t, cfg)
		waitLeader(t, s)
		require.NoError(t, s.Barrier(testCtx(t)))
		require.Equal(t, final, dump(t, s.fsm, true))
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	base := testConfig(t, "n1", dir)
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }},
		{"no raft dir", func(c *Config) { c.RaftDir = "" }},
		{"no state path", func(c *Config) { c.StatePath = "" }},
		{"no bind address", func(c *Config) { c.BindAddr = "" }},
		{"unadvertisable bind", func(c *Config) { c.BindAddr = "0.0.0.0:0" }},
		{"bootstrap without self", func(c *Config) {
			c.Bootstrap = true
			c.BootstrapServers = []Server{{ID: "other", Addr: "127.0.0.1:1", Suffrage: "Voter"}}
		}},
		{"bad timings", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.modify(&cfg)
			s, err := Open(cfg)
			require.Error(t, err)
			require.Nil(t, s)
		})
	}

	t.Run("advertise address takes the bound port", func(t *testing.T) {
		cfg := base
		cfg.BindAddr = "0.0.0.0:0"
		cfg.AdvertiseAddr = "127.0.0.1"
		s := openStore(t, cfg)
		host, port, err := net.SplitHostPort(s.Addr())
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
		require.NotEqual(t, "0", port)
	})

	t.Run("second store on the same files fails instead of hanging", func(t *testing.T) {
		cfg := testConfig(t, "n1", t.TempDir())
		openStore(t, cfg)
		_, err := Open(cfg)
		require.Error(t, err)
	})
}

func TestBadCommands(t *testing.T) {
	id, yaml := schematic(1)
	rec := testAsset("k", "c", "n1")
	badRec := rec
	badRec.Digest = "md5:abc"
	tests := []struct {
		name string
		data string
	}{
		{"not json", "\x00\xffgarbage"},
		{"empty", ""},
		{"json array", "[]"},
		{"future version", `{"v":2,"op":"PutSetting","key":"a"}`},
		{"no version", `{"op":"PutSetting","key":"a"}`},
		{"unknown op", `{"v":1,"op":"DropTables"}`},
		{"schematic id not hex", `{"v":1,"op":"PutSchematic","id":"xyz","yaml":"YQ=="}`},
		{"schematic id upper case", `{"v":1,"op":"PutSchematic","id":"` + hexUpper(id) + `","yaml":"YQ=="}`},
		{"empty schematic", `{"v":1,"op":"PutSchematic","id":"` + id + `"}`},
		{"catalog without release", `{"v":1,"op":"PutCatalog"}`},
		{"catalog version not semver", `{"v":1,"op":"PutCatalog","release":{"version":"latest"}}`},
		{"catalog version without v", `{"v":1,"op":"RemoveVersion","version":"1.13.0"}`},
		{"meta missing", `{"v":1,"op":"PutCatalogMeta"}`},
		{"asset missing", `{"v":1,"op":"PutAsset"}`},
		{"setting without key", `{"v":1,"op":"PutSetting"}`},
		{"wrong payload type", `{"v":1,"op":"PutSetting","key":5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCommand([]byte(tt.data))
			require.ErrorIs(t, err, ErrInvalidCommand)
		})
	}
	_, err := EncodeCommand(Command{V: CommandVersion, Op: OpPutAsset, Asset: &badRec})
	require.ErrorIs(t, err, ErrInvalidCommand)
	_, err = EncodeCommand(Command{V: CommandVersion, Op: OpPutSchematic, ID: id, YAML: make([]byte, MaxCommandSize)})
	require.ErrorIs(t, err, ErrInvalidCommand)

	t.Run("round trip", func(t *testing.T) {
		rel := testRelease("v1.13.0", "x")
		for _, c := range []Command{
			{V: 1, Op: OpPutSchematic, ID: id, YAML: yaml},
			{V: 1, Op: OpPutCatalog, Release: &rel},
			{V: 1, Op: OpRemoveVersion, Version: "v1.2.3"},
			{V: 1, Op: OpPutCatalogMeta, Meta: &CatalogMeta{Broken: []string{"v1.0.0"}}},
			{V: 1, Op: OpPutAsset, Asset: &rec},
			{V: 1, Op: OpPutSetting, Key: "k", Value: []byte{0, 1, 2}},
			{V: 1, Op: OpInitSetting, Key: "k", Value: []byte("v")},
		} {
			data, err := EncodeCommand(c)
			require.NoError(t, err)
			got, err := DecodeCommand(data)
			require.NoError(t, err)
			require.Equal(t, c, got)
		}
	})

	t.Run("through raft: refused, logged, and the node carries on", func(t *testing.T) {
		s := openLeader(t, t.TempDir())
		ctx := testCtx(t)
		_, err := s.ApplyCommand(ctx, Command{V: 1, Op: "Nope"})
		require.ErrorIs(t, err, ErrInvalidCommand)

		before := s.AppliedIndex()
		f := s.raft.Apply([]byte("garbage that bypassed validation"), time.Second)
		require.NoError(t, f.Error())
		res, ok := f.Response().(Result)
		require.True(t, ok)
		require.Error(t, res.Err())
		require.ErrorIs(t, res.Err(), ErrRejected)
		require.Greater(t, s.AppliedIndex(), before, "a refused entry is still applied (as a no-op)")
		require.NoError(t, s.PutSchematic(ctx, id, yaml))
		require.Empty(t, s.Stats()["fsm_halted"])
	})
}

func hexUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestWritesAfterCloseFail(t *testing.T) {
	s, err := Open(func() Config { c := testConfig(t, "n1", t.TempDir()); c.Bootstrap = true; return c }())
	require.NoError(t, err)
	waitLeader(t, s)
	watch, _ := s.WatchLeadership()
	require.NoError(t, s.Close())
	for v := range watch { // drains to the final false, then closes
		if !v {
			break
		}
	}
	_, open := <-watch
	require.False(t, open)
	err = s.PutSetting(testCtx(t), "k", []byte("v"))
	require.True(t, errors.Is(err, ErrClosed), "got %v", err)
}
