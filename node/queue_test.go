package node_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildQueueBounded: with one build slot and room for one waiting build, a third build asked for at the same
// time is refused at once with 503 and Retry-After, not queued without bound; asked again later, it is built.
func TestBuildQueueBounded(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), realUpstream(t))
	cfg.BuildConcurrency, cfg.BuildQueue = 1, 1
	n := startReady(t, cfg)

	var paths []string

	for i := range 3 {
		id := n.createSchematic(t, fmt.Sprintf(`customization: {extraKernelArgs: [queue=%d]}`, i))
		paths = append(paths, "/image/"+id+"/v1.13.0/metal-amd64.iso")
	}

	answers := make([]response, len(paths))

	var wg sync.WaitGroup

	for i, p := range paths {
		wg.Go(func() { answers[i] = n.do(t, "GET", p, "", nil) })
	}

	wg.Wait()

	var refused []response

	for _, a := range answers {
		switch a.StatusCode {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			refused = append(refused, a)
		default:
			t.Errorf("unexpected answer %d: %s", a.StatusCode, a.Body)
		}
	}

	require.Len(t, refused, 1, "one slot and one place in the queue: the third build is refused")
	assert.Equal(t, "30", refused[0].Header.Get("Retry-After"))

	for _, p := range paths {
		assert.Equal(t, http.StatusOK, n.do(t, "GET", p, "", nil).StatusCode, "asked again, %s is served", p)
	}
}
