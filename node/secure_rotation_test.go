package node_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestSecureRotation: the cluster CA and the gossip key are rotated on a live three-member cluster under a stream of
// downloads (copied between members over the cluster port) and schematic writes: no request fails, no write is
// lost, every member ends with a certificate of the new CA, gossip still holds the cluster together, and a member
// joining after the rotation needs a token of the new CA.
func TestSecureRotation(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3)
	leader := c.steadyLeader(t)

	var paths []string

	for i := range 3 {
		id := leader.createSchematic(t, `customization: {extraKernelArgs: [rotation=`+string(rune('a'+i))+`]}`)
		paths = append(paths, "/image/"+id+"/v1.13.0/cmdline-metal-amd64", "/image/"+id+"/v1.13.0/kernel-amd64")
	}

	for _, p := range paths {
		require.True(t, fetchURL(http.DefaultClient, leader.base+p).complete(), p)
	}

	w := startWriters(c, 2)

	var (
		downloads, failed atomic.Int64
		stop              = make(chan struct{})
		wg                sync.WaitGroup
	)

	for g := range 2 {
		wg.Go(func() {
			client := &http.Client{Timeout: time.Minute}

			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}

				m := c.live()[i%3]
				if d := fetchURL(client, m.base+paths[i%len(paths)]); d.complete() {
					downloads.Add(1)
				} else {
					failed.Add(1)
					t.Logf("download %s from %s: %d %v", paths[i%len(paths)], m.name, d.status, d.err)
				}
			}
		})
	}

	via := c.other(t, leader.name)

	resp := via.do(t, "POST", "/cluster/rotate/ca", "", ops)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	var rotated struct{ CA string }
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &rotated))

	resp = leader.do(t, "POST", "/cluster/rotate/gossip-key", "", ops)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	time.Sleep(3 * time.Second) // load after the last step too
	close(stop)
	wg.Wait()

	acks, failures := w.stop()
	assert.Zero(t, failures, "no schematic write failed")
	assert.Zero(t, failed.Load(), "no download failed")
	assert.Positive(t, downloads.Load())
	require.NotEmpty(t, acks)
	t.Logf("rotations under load: %d writes, %d downloads", len(acks), downloads.Load())

	for _, a := range acks {
		for _, m := range c.live() {
			require.Equal(t, http.StatusOK, m.do(t, "GET", "/schematics/"+a.id, "", nil).StatusCode,
				"write %s is on %s", a.id, m.name)
		}
	}

	var certs []node.CertificateInfo
	require.NoError(t, json.Unmarshal([]byte(via.do(t, "GET", "/cluster/certificates", "", ops).Body), &certs))

	for _, m := range c.live() {
		assert.Condition(t, func() bool {
			for _, cert := range certs {
				if cert.Member == m.name && cert.CA == rotated.CA && !cert.Revoked {
					return true
				}
			}

			return false
		}, "%s has a certificate of the new CA", m.name)
	}

	checkFormed(t, c, 3)

	_, _, err := postJoin(t, c.ports[leader.index], c.token)
	require.Error(t, err, "the init token names the old CA: the seed's chain no longer matches it")
	assert.Contains(t, err.Error(), "join token names")

	resp = via.do(t, "POST", "/cluster/tokens", "", ops)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)

	var fresh node.TokenInfo
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &fresh))

	c.token = fresh.Token
	newcomer := c.join(t) // waits until every member sees it alive and in the ring
	assert.Len(t, c.status(t, newcomer).Ring.Members, 4)
}
