package keys

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/raftstore"
)

// TestKeyRingUnreadableKeys: stored secure-boot (or cosign) keys that do not parse (an incompatible version wrote them)
// make the leader's key duty fail with an error saying so, every round, instead of generating a 4096-bit key each round
// that can never win (the stored keys do) and reporting a write conflict.
func TestKeyRingUnreadableKeys(t *testing.T) {
	dir := t.TempDir()
	store, err := raftstore.Open(raftstore.Config{NodeID: "n1", RaftDir: filepath.Join(dir, "raft"),
		StatePath: filepath.Join(dir, "state.db"), BindAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })

	require.Eventually(t, store.IsLeader, 10*time.Second, 10*time.Millisecond)

	ctx := context.Background()
	_, err = store.InitSetting(ctx, secureBootSetting, []byte(`{"format": "from the future"`))
	require.NoError(t, err)

	k, err := NewSecureBoot(store, Files{}, 1024, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	for range 2 {
		require.ErrorIs(t, k.Ensure(ctx), ErrUnreadable)
	}

	require.Nil(t, k.Current())
	require.Empty(t, k.Fingerprint())

	// The cosign key is made and kept the same way.
	_, err = store.InitSetting(ctx, cosignSetting, []byte(`not json`))
	require.NoError(t, err)

	c, err := NewCosign(store, "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	for range 2 {
		require.ErrorIs(t, c.Ensure(ctx), ErrUnreadable)
	}

	key, signer := c.Current()
	require.Nil(t, key)
	require.Nil(t, signer)
}
