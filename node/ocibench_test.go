package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
)

// installerPaths lists what a client pulls of an installer image, in pull order: the index by tag, then each
// image's manifest, config and layers by digest. The blobs are returned too (digest → repository path).
func installerPaths(b *testing.B, r *running, repo string) (paths []string, blobs []string) {
	b.Helper()

	index := r.do(b, "GET", repo+"/manifests/v1.13.0", "", nil)
	require.Equal(b, http.StatusOK, index.StatusCode, index.Body)

	var im v1.IndexManifest
	require.NoError(b, json.Unmarshal([]byte(index.Body), &im))

	paths = append(paths, repo+"/manifests/v1.13.0")
	blobs = append(blobs, index.Header.Get("Docker-Content-Digest"))

	for _, desc := range im.Manifests {
		paths = append(paths, repo+"/manifests/"+desc.Digest.String())
		blobs = append(blobs, desc.Digest.String())

		manifest := r.do(b, "GET", repo+"/manifests/"+desc.Digest.String(), "", nil)
		require.Equal(b, http.StatusOK, manifest.StatusCode, manifest.Body)

		var m v1.Manifest
		require.NoError(b, json.Unmarshal([]byte(manifest.Body), &m))

		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			paths = append(paths, repo+"/blobs/"+d.Digest.String())
			blobs = append(blobs, d.Digest.String())
		}
	}

	return paths, blobs
}

// pullAll GETs every path from base, reading each body to the end, and returns the time and bytes it took.
func pullAll(b *testing.B, client *http.Client, base string, paths []string) (time.Duration, int64) {
	b.Helper()

	start := time.Now()

	var total int64

	for _, p := range paths {
		resp, err := client.Get(base + p)
		require.NoError(b, err)

		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.NoError(b, err)
		require.Equal(b, http.StatusOK, resp.StatusCode, p)

		total += n
	}

	return time.Since(start), total
}

// BenchmarkInstallerPullNonOwner compares a pull of a built installer image (index, both images' manifests,
// configs and layers) from the node that assembled it with the same pull from another member, over loopback, in
// a 3-node cluster. "warm": the other member has its own copies from an earlier pull (target: ≤ 1.2× the owner).
// "fetch-through": its copies are dropped before each pull, so every blob streams from the owner through it.
func BenchmarkInstallerPullNonOwner(b *testing.B) {
	c := startCluster(b, realUpstream(b), 3)
	owner := c.live()[0]
	id := owner.createSchematic(b, `customization: {extraKernelArgs: [oci-bench]}`)
	paths, blobs := installerPaths(b, owner.running, "/v2/"+installerRepoForTest+"/"+id)
	other := c.other(b, owner.name)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}

	for _, d := range blobs {
		require.True(b, owner.HasBlob(d), "the owner holds %s", d)
	}

	first, _ := pullAll(b, client, other.base, paths)
	b.Logf("first pull through %s (copies kept): %s", other.name, first.Round(time.Microsecond))

	for _, mode := range []string{"warm", "fetch-through"} {
		b.Run(mode, func(b *testing.B) {
			var ownerTime, otherTime time.Duration

			var (
				size int64
				i    int
			)

			for b.Loop() {
				if mode == "fetch-through" {
					b.StopTimer()

					for _, d := range blobs {
						require.NoError(b, other.DropBlob(d))
					}

					b.StartTimer()
				}

				// Alternate who goes first: the second pull of a round finds the page cache warmer.
				first, second, firstTime, secondTime := owner, other, &ownerTime, &otherTime
				if i%2 == 1 {
					first, second, firstTime, secondTime = other, owner, &otherTime, &ownerTime
				}

				i++

				d, n := pullAll(b, client, first.base, paths)
				*firstTime += d
				size = n

				d, _ = pullAll(b, client, second.base, paths)
				*secondTime += d
			}

			b.ReportMetric(float64(ownerTime.Microseconds())/float64(b.N)/1000, "owner-ms/pull")
			b.ReportMetric(float64(otherTime.Microseconds())/float64(b.N)/1000, "nonowner-ms/pull")
			b.ReportMetric(float64(otherTime)/float64(ownerTime), "nonowner/owner")
			b.ReportMetric(float64(size)/(1<<20), "MiB/pull")
		})
	}
}

// BenchmarkManifestLatency measures warm manifest requests of a built installer image on one node: by tag (the
// version is resolved, the index and its signature looked up), by digest, and HEAD by tag. Target: p50 < 1 ms.
func BenchmarkManifestLatency(b *testing.B) {
	n := startReady(b, testConfig(b, b.TempDir(), realUpstream(b)))
	id := n.createSchematic(b, `customization: {extraKernelArgs: [oci-latency]}`)
	repo := "/v2/" + installerRepoForTest + "/" + id
	built := n.do(b, "GET", repo+"/manifests/v1.13.0", "", nil)
	require.Equal(b, http.StatusOK, built.StatusCode, built.Body)

	client := &http.Client{}

	for _, tc := range []struct{ name, method, path string }{
		{"tag", "GET", repo + "/manifests/v1.13.0"},
		{"digest", "GET", repo + "/manifests/" + built.Header.Get("Docker-Content-Digest")},
		{"head-tag", "HEAD", repo + "/manifests/v1.13.0"},
		{"latest", "GET", repo + "/manifests/latest"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req, err := http.NewRequest(tc.method, n.base+tc.path, nil)
			require.NoError(b, err)
			req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")

			var lat latencies

			for b.Loop() {
				start := time.Now()

				resp, err := client.Do(req)
				require.NoError(b, err)
				_, err = io.Copy(io.Discard, resp.Body)
				require.NoError(b, err)
				resp.Body.Close()

				lat = append(lat, time.Since(start))

				require.Equal(b, http.StatusOK, resp.StatusCode)
			}

			lat.report(b)
		})
	}
}
