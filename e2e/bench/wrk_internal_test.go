package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseWrk(t *testing.T) {
	const ok = `Running 5s test @ http://127.0.0.1:18090/pxe/x/metal-amd64
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   788.61us    1.41ms  31.16ms   91.53%
    Req/Sec    37.96k     4.21k   46.09k    71.00%
  Latency Distribution
     50%  344.00us
     75%  558.00us
     90%    1.73ms
     99%    3.13ms
  377711 requests in 5.00s, 250.98MB read
Requests/sec:  75680.89
Transfer/sec:     50.17MB
`

	tests := []struct {
		name    string
		out     string
		want    loadResult
		wantErr string
	}{
		{name: "ok", out: ok, want: loadResult{requests: 377711, elapsed: 5 * time.Second, p50: 0.344, p99: 3.13}},
		{name: "slow units", out: "  Latency Distribution\n     50%    1.50s\n     99%    2.00m\n  10 requests in 1.00m, 1MB read\n",
			want: loadResult{requests: 10, elapsed: time.Minute, p50: 1500, p99: 120000}},
		{name: "non-2xx", out: ok + "  Non-2xx or 3xx responses: 12\n", wantErr: "12 answers"},
		{name: "socket errors", out: ok + "  Socket errors: connect 0, read 3, write 0, timeout 0\n", wantErr: "socket errors"},
		{name: "no latency", out: "  100 requests in 5.00s, 1MB read\n", wantErr: "incomplete"},
		{name: "garbage", out: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: "no request total"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)

				return
			}

			require.NoError(t, err)
			require.Equal(t, tt.want.requests, got.requests)
			require.Equal(t, tt.want.elapsed, got.elapsed)
			require.InDelta(t, tt.want.p50, got.p50, 1e-9)
			require.InDelta(t, tt.want.p99, got.p99, 1e-9)
		})
	}
}
