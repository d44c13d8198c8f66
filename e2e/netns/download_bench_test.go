//go:build netns

package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkNetnsFirstDownload is BenchmarkFirstDownloadNonOwner (package node) on links with a line rate: three
// nodes in their own namespaces, each sending at most EDGEFACTORY_BENCH_LINK (tc rate, default 1gbit) to its peers
// and to clients, as behind a NIC. On loopback the same comparison measures how fast two cores copy and hash bytes;
// here it measures what a client sees of the design: the first download through a node that holds nothing is
// streamed from the owner while the node copies and verifies it, so it should take about as long as a download
// from the owner itself (target ≥ 0.7×), and the second, from the node's own copy, the same as from the owner.
//
// Every iteration builds a fresh ISO (45 MB) through node 1; the node whose build counter moved is the owner.
// Nodes run with --replicas 1, so no holder gets a pushed copy and the third node holds nothing. Every download is
// hashed and checked against the digest the node announces.
//
// It runs twice: members on mutual TLS (mtls; the copy is encrypted) and on the cluster secret over plain HTTP
// (secret; the way before).
func BenchmarkNetnsFirstDownload(b *testing.B) {
	for _, kind := range []struct {
		name   string
		secure bool
	}{{"mtls", true}, {"secret", false}} {
		b.Run(kind.name, func(b *testing.B) { benchNetnsFirstDownload(b, kind.secure) })
	}
}

func benchNetnsFirstDownload(b *testing.B, secure bool) {
	parts := requireRealParts(b)
	rate := os.Getenv("EDGEFACTORY_BENCH_LINK")

	if rate == "" {
		rate = "1gbit"
	}

	lab := NewLab(b, 3)

	for i := 1; i <= 3; i++ {
		lab.Shape(i, rate)
	}

	c := startClusterOf(b, lab, parts, 3, secure, "--replicas", "1")
	b.Logf("each node sends at most %s", rate)

	var fromOwner, firstCopy, secondCopy linkThroughput

	round := 0

	for b.Loop() {
		b.StopTimer()

		round++
		id := c.createSchematic(b, 1, fmt.Sprintf("bench-download-%d", round))
		path := "/image/" + id + "/v1.13.0/metal-amd64.iso"
		owner, fresh := c.ownerAndFresh(b, path)
		fetches := c.metric(b, fresh, "edgefactory_peer_fetches_total")

		b.StartTimer()

		firstCopy.add(b, c.urls[fresh]+path)
		secondCopy.add(b, c.urls[fresh]+path)
		fromOwner.add(b, c.urls[owner]+path)

		b.StopTimer()
		require.Greater(b, c.metric(b, fresh, "edgefactory_peer_fetches_total"), fetches,
			"the first download through %s is a copy from a peer", NodeNS(fresh))
		b.StartTimer()
	}

	b.ReportMetric(fromOwner.mbps(), "owner-MB/s")
	b.ReportMetric(firstCopy.mbps(), "nonowner-first-MB/s")
	b.ReportMetric(secondCopy.mbps(), "nonowner-second-MB/s")
	b.ReportMetric(firstCopy.mbps()/fromOwner.mbps(), "first/owner")
	b.ReportMetric(secondCopy.mbps()/fromOwner.mbps(), "second/owner")
}

// ownerAndFresh builds the asset at path through node 1 and returns the node that built it (its build counter
// moved) and a node that holds nothing of it (neither the owner nor node 1, which kept a read-through copy unless it
// is the owner).
func (c *cluster) ownerAndFresh(b *testing.B, path string) (owner, fresh int) {
	b.Helper()

	before := map[int]float64{}
	for i := 1; i <= c.lab.n; i++ {
		before[i] = c.metric(b, i, "edgefactory_builds_total")
	}

	r := c.get(b, 1, path)
	require.Equal(b, http.StatusOK, r.status, "build %s: %s", path, r)

	for i := 1; i <= c.lab.n; i++ {
		if c.metric(b, i, "edgefactory_builds_total") > before[i] {
			require.Zero(b, owner, "%s and %s both built %s", NodeNS(owner), NodeNS(i), path)
			owner = i
		}
	}

	require.NotZero(b, owner, "no node built %s", path)

	for i := 2; i <= c.lab.n; i++ {
		if i != owner {
			return owner, i
		}
	}

	panic("unreachable with three nodes")
}

// linkThroughput adds up downloads, each hashed as it arrives and checked against X-Content-Sha256.
type linkThroughput struct {
	bytes int64
	took  time.Duration
}

func (tp *linkThroughput) add(b *testing.B, url string) {
	b.Helper()

	start := time.Now()

	resp, err := client.Get(url)
	require.NoError(b, err)

	defer resp.Body.Close()

	require.Equal(b, http.StatusOK, resp.StatusCode, url)

	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
	require.NoError(b, err, url)

	tp.took += time.Since(start)
	tp.bytes += n

	require.Equal(b, resp.ContentLength, n, url)
	require.Equal(b, resp.Header.Get("X-Content-Sha256"), hex.EncodeToString(h.Sum(nil)), url)
}

func (tp *linkThroughput) mbps() float64 { return float64(tp.bytes) / 1e6 / tp.took.Seconds() }
