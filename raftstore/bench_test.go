package raftstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkPutSchematic measures one writer committing on a single node: each op is a Raft log append (fsync of
// raft.db) plus one FSM transaction (fsync of state.db).
func BenchmarkPutSchematic(b *testing.B) {
	s := openLeader(b, b.TempDir())
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		id, yaml := schematic(i)
		if err := s.PutSchematic(ctx, id, yaml); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

// BenchmarkPutSchematicParallel shows what batching buys when many writers commit at once: raft groups log appends
// and the FSM applies each batch in one transaction.
func BenchmarkPutSchematicParallel(b *testing.B) {
	s := openLeader(b, b.TempDir())
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id, yaml := schematic(int(n.Add(1)))
			if err := s.PutSchematic(ctx, id, yaml); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

// BenchmarkReadSchematic measures a local read: one bbolt view transaction and a copy.
func BenchmarkReadSchematic(b *testing.B) {
	s := openLeader(b, b.TempDir())
	ctx := context.Background()
	const n = 1000
	ids := make([]string, n)
	for i := range n {
		id, yaml := schematic(i)
		ids[i] = id
		require.NoError(b, s.PutSchematic(ctx, id, yaml))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, found, err := s.Schematic(ids[i%n]); err != nil || !found {
				b.Errorf("read %s: found=%v err=%v", ids[i%n], found, err)
				return
			}
			i++
		}
	})
}
