package raftstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/internal/digest"
)

// testLogWriter sends log lines to t.Log until the test's cleanups have run, so late raft goroutines cannot log into
// a finished test.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	w := &testLogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testConfig is a node in dir with timings short enough for loopback tests and automatic snapshots out of the way.
func testConfig(t testing.TB, id, dir string) Config {
	return Config{
		NodeID:             id,
		RaftDir:            filepath.Join(dir, "raft"),
		StatePath:          filepath.Join(dir, "state.db"),
		BindAddr:           "127.0.0.1:0",
		Logger:             testLogger(t),
		HeartbeatTimeout:   150 * time.Millisecond,
		ElectionTimeout:    150 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  1 << 20,
		SnapshotInterval:   time.Hour,
		TrailingLogs:       2,
		ApplyTimeout:       5 * time.Second,
	}
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// openLeader opens a bootstrapping single node and waits until it leads.
func openLeader(t testing.TB, dir string) *Store {
	t.Helper()
	cfg := testConfig(t, "n1", dir)
	cfg.Bootstrap = true
	s := openStore(t, cfg)
	waitLeader(t, s)
	return s
}

func waitLeader(t testing.TB, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, s.WaitForLeader(ctx))
	require.Eventually(t, s.IsLeader, 5*time.Second, 5*time.Millisecond)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// schematic returns a YAML document and its ID (sha256 of the bytes, as the schematic model computes it).
func schematic(i int) (string, []byte) {
	y := fmt.Appendf(nil, "customization:\n    extraKernelArgs:\n        - test=%d\n", i)
	sum := sha256.Sum256(y)
	return hex.EncodeToString(sum[:]), y
}

func hexOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func digestOf(s string) string { return digest.Of([]byte(s)) }

func testRelease(version, marker string) release.Version {
	img := func(repo string) release.Image {
		return release.Image{Repository: repo, Index: digestOf(repo + version + marker),
			Arch: map[string]string{"amd64": digestOf(repo + "amd64" + version), "arm64": digestOf(repo + "arm64")}}
	}
	return release.Version{
		Version:       version,
		Imager:        img("siderolabs/imager"),
		InstallerBase: img("siderolabs/installer-base"),
		Extensions: []release.Extension{{Name: "siderolabs/gvisor", Ref: "ghcr.io/siderolabs/gvisor:" + marker,
			Digest: digestOf("gvisor" + marker), Author: "Sidero Labs", Description: "gVisor"}},
		Overlays: []release.Overlay{{Name: "rpi_generic", Image: "siderolabs/sbc-raspberrypi",
			Ref: "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0", Digest: digestOf("rpi" + marker)}},
	}
}

func testAsset(key, content, builder string) AssetRecord {
	return AssetRecord{
		Key: hexOf(key), Digest: digestOf(content), Size: int64(len(content)), MediaType: "application/x-iso9660-image",
		Filename: "metal-amd64.iso", Builder: builder, Created: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		Blobs: []Blob{
			{Digest: digestOf(content + "-manifest"), Size: 300, MediaType: "application/vnd.oci.image.manifest.v1+json"},
			{Digest: digestOf(content + "-layer"), Size: 4096},
		},
	}
}

func raftSnapshots(raftDir string) (*raft.FileSnapshotStore, error) {
	return raft.NewFileSnapshotStoreWithLogger(raftDir, snapshotsRetained, hclog.NewNullLogger())
}

// dump copies every bucket of a state file (or, with skipMeta, every data bucket) for whole-state comparisons.
func dump(t testing.TB, f *fsm, skipMeta bool) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	require.NoError(t, f.view(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if skipMeta && string(name) == string(bucketMeta) {
				return nil
			}
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
		})
	}))
	return out
}
