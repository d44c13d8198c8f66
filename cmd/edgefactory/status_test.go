package main

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestPrintStatus: the status command shows the builds in flight with stage and elapsed time, each member's ring
// share, last contact, build profile and role, why a member does not build, and the recent errors.
func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := node.ClusterStatus{
		Node: "node1", URL: "http://n1", Leader: "node1",
		Members: []node.MemberStatus{
			{Name: "node1", State: "alive", Raft: "voter", RingShare: 0.5, URL: "http://n1", Profile: "0123456789abcdef",
				Arch: "amd64", Role: "build", MayBuild: true},
			{Name: "node2", State: "alive", Raft: "voter", RingShare: 0.5, URL: "http://n2",
				LastContact: now.Add(-2 * time.Second), Profile: "0123456789abcdef", Arch: "amd64", Role: "cache",
				WhyNot: "role cache: never builds"},
		},
		BuildProfile: node.BuildProfileStatus{ID: "0123456789abcdef", Arch: "amd64", Builder: "builder/1",
			Builders: []string{"node1"}},
		Builds: node.BuildsStatus{Running: 1, InFlight: []node.BuildStatus{{
			Key: "0123456789abcdef0123", Schematic: "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
			Version: "v1.13.0", Path: "metal-amd64.iso", Stage: "building", ElapsedSeconds: 3.2, Member: "node1",
		}}},
		Cache:        node.CacheStatus{Hits: 3, Requests: 4, HitRate: 0.75},
		Catalog:      []string{"v1.13.0"},
		CatalogSync:  node.CatalogSyncStatus{LastSync: now.Add(-time.Minute)},
		RecentErrors: []node.ErrorStatus{{Time: now.Add(-5 * time.Second), What: "build kernel-amd64", Error: errors.New("UKI stub").Error()}},
	}

	var out bytes.Buffer
	require.NoError(t, printStatus(&out, st, now))

	text := out.String()
	for _, want := range []string{
		"3 of 4 requests answered from it (75%)",
		"last read whole 1m0s ago",
		"node2", "50.0%", "2s", "0123456789abcdef amd64",
		"build profile 0123456789abcdef (the profile most live members share), amd64 builder/1; builders: node1",
		"members that do not build:\n  node2: role cache: never builds",
		"builds in flight:", "metal-amd64.iso", "building", "3.2s", "376567988ad3",
		"recent errors (1, newest first):", "5s ago  build kernel-amd64: UKI stub",
	} {
		assert.Contains(t, text, want)
	}
}
