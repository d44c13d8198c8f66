package node_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// latencies collects per-request durations and reports p50/p99 next to Go's ns/op.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}

	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSchematicCreate measures POST /schematics of new schematics on a one-node cluster: each creation is a
// Raft commit (fsync of the log) plus the FSM write.
func BenchmarkSchematicCreate(b *testing.B) {
	n := startReady(b, testConfig(b, b.TempDir(), upstream(b)))
	client := &http.Client{}
	lat := make(latencies, 0, b.N)

	b.ResetTimer()

	for i := range b.N {
		body := fmt.Sprintf(`{"customization":{"extraKernelArgs":["bench=%d"]}}`, i)
		start := time.Now()

		resp, err := client.Post(n.base+"/schematics", "application/yaml", strings.NewReader(body))
		require.NoError(b, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(b, err)
		resp.Body.Close()

		lat = append(lat, time.Since(start))

		require.Equal(b, http.StatusCreated, resp.StatusCode)
	}

	b.StopTimer()
	lat.report(b)
}

// BenchmarkSchematicGet measures GET /schematics/{id}: a local bbolt read, no Raft round trip.
func BenchmarkSchematicGet(b *testing.B) {
	n := startReady(b, testConfig(b, b.TempDir(), upstream(b)))
	resp := n.do(b, "POST", "/schematics", `{"customization":{"extraKernelArgs":["bench"]}}`, nil)
	require.Equal(b, http.StatusCreated, resp.StatusCode)
	url := n.base + "/schematics/" + resp.Body[len(`{"id":"`):len(`{"id":"`)+64]
	client := &http.Client{}
	lat := make(latencies, 0, b.N)

	b.ResetTimer()

	for range b.N {
		start := time.Now()

		r, err := client.Get(url)
		require.NoError(b, err)
		_, err = io.Copy(io.Discard, r.Body)
		require.NoError(b, err)
		r.Body.Close()

		lat = append(lat, time.Since(start))

		require.Equal(b, http.StatusOK, r.StatusCode)
	}

	b.StopTimer()
	lat.report(b)
}
