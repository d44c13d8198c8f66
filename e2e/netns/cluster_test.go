//go:build netns

package netns

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

const (
	httpPort     = 8080
	upstreamPort = 5000
	// dead-member-grace is longer than the test: the cut-off node stays a Raft voter, so healing needs no rejoin.
	deadMemberGrace = "10m"
	clusterSecret   = "netns-suite-secret"
)

// requireRealParts skips unless `make deps` fetched the real parts of the synthetic release (the stand-ins make the
// imager fail on the kernel and initramfs).
func requireRealParts(t testing.TB) string {
	t.Helper()

	parts, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(t, err)

	if !parts.Real() {
		t.Skipf("netns suite skipped: the synthetic release parts in %s are stand-ins (missing %v): run `make deps`",
			parts.Dir(), parts.Missing())
	}

	return parts.Dir()
}

// startIn runs the edgefactory binary with args in namespace i until the test ends (or the test kills the process
// it returns); its logs are shown (the last lines) if the test fails.
func startIn(t testing.TB, lab *Lab, i int, label string, args ...string) *os.Process {
	t.Helper()

	p, _ := startLoggedIn(t, lab, i, label, args...)

	return p
}

// startLoggedIn is startIn that also returns the process's logs, for the test to read.
func startLoggedIn(t testing.TB, lab *Lab, i int, label string, args ...string) (*os.Process, *e2e.SyncBuffer) {
	t.Helper()

	logs := &e2e.SyncBuffer{}
	cmd := lab.Command(i, e2e.Binary(t), args...)
	runUntilEnd(t, cmd, label, logs, 15*time.Second, 150)

	return cmd.Process, logs
}

// runUntilEnd starts cmd with its output into out, and stops it (SIGTERM, then SIGKILL after grace) when the test
// ends or the returned stop is called; when the test failed, the output's last lines are logged.
func runUntilEnd(t testing.TB, cmd *exec.Cmd, label string, out interface {
	io.Writer
	String() string
}, grace time.Duration, lines int,
) (stop func()) {
	t.Helper()

	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start(), "start %s", label)

	done := make(chan struct{})

	go func() {
		cmd.Wait() //nolint:errcheck // the exit status after SIGTERM is not the point
		close(done)
	}()

	stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have died already

		select {
		case <-done:
		case <-time.After(grace):
			cmd.Process.Kill() //nolint:errcheck // stuck in shutdown
			<-done
		}
	})

	t.Cleanup(func() {
		stop()

		if t.Failed() {
			t.Logf("---- %s output (last %d lines) ----\n%s", label, lines, tail(out.String(), lines))
		}
	})

	return stop
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}

	return strings.Join(lines, "\n")
}

// cluster is three nodes started on a lab, as the test reaches them (through their management links).
type cluster struct {
	lab   *Lab
	urls  map[int]string      // node index → http://<mgmt IP>:8080
	procs map[int]*os.Process // node index → its process
	logs  map[int]*e2e.SyncBuffer
	args  map[int][]string // node index → the arguments it was started with (restart starts it again with them)
}

// startCluster runs the synthetic upstream in the bridge namespace and one node per node namespace (with extraArgs
// added to each node's flags), and waits until every node answers /readyz.
func startCluster(t testing.TB, lab *Lab, partsDir string, extraArgs ...string) *cluster {
	t.Helper()

	return startClusterOf(t, lab, partsDir, lab.n, false, extraArgs...)
}

// startClusterOf is startCluster with members nodes, secure as startNodesOf says.
func startClusterOf(t testing.TB, lab *Lab, partsDir string, members int, secure bool, extraArgs ...string) *cluster {
	t.Helper()

	startIn(t, lab, 0, "upstream", "synthetic", "serve",
		"--listen", fmt.Sprintf("0.0.0.0:%d", upstreamPort), "--parts", partsDir)
	waitOK(t, fmt.Sprintf("http://%s:%d/v2/", MgmtIP(0), upstreamPort), 60*time.Second, "synthetic upstream")

	upstream := []string{"--upstream-registry", fmt.Sprintf("%s:%d", bridgeIP, upstreamPort), "--upstream-insecure"}
	c := startNodesOf(t, lab, members, secure, append(upstream, extraArgs...)...)

	for i := 1; i <= members; i++ {
		waitOK(t, c.urls[i]+"/readyz", 60*time.Second, NodeNS(i))
	}

	return c
}

// startNodes runs one node per node namespace, with args added to each node's flags, and waits until every node
// answers /healthz. Every node trusts the synthetic release's signing key.
func startNodes(t testing.TB, lab *Lab, args ...string) *cluster {
	t.Helper()

	return startNodesOf(t, lab, lab.n, false, args...)
}

// clusterPort is the members' mutual-TLS cluster port in a secure cluster.
const clusterPort = 7950

// startNodesOf is startNodes for the first members namespaces; secure forms a secure cluster (mutual TLS on the
// cluster port): node 1's data directory made by `edgefactory init`, the others joining with its token.
func startNodesOf(t testing.TB, lab *Lab, members int, secure bool, args ...string) *cluster {
	t.Helper()

	root := e2e.RepoRoot(t)
	if os.Getenv("EDGEFACTORY_MKSQUASHFS") == "" {
		t.Setenv("EDGEFACTORY_MKSQUASHFS", filepath.Join(root, "build/hosttools/squashfs-tools/usr/bin/mksquashfs"))
	}

	c := &cluster{lab: lab, urls: map[int]string{}, procs: map[int]*os.Process{}, logs: map[int]*e2e.SyncBuffer{},
		args: map[int][]string{}}

	keyFile := filepath.Join(t.TempDir(), "release.pub")
	require.NoError(t, os.WriteFile(keyFile, synthetic.PublicKeyPEM(), 0o644))

	token := ""
	firstData := t.TempDir()

	if secure {
		out, err := exec.CommandContext(t.Context(), e2e.Binary(t), "init", "--data", firstData).CombinedOutput()
		require.NoError(t, err, "%s", out)

		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		token = lines[len(lines)-1]
	}

	for i := 1; i <= members; i++ {
		port, peerPort := 7946, ""
		if secure {
			port, peerPort = clusterPort, NodeIP(i)+fmt.Sprintf(":%d", clusterPort)
		}

		var seeds []string

		for j := 1; j <= members; j++ {
			if j != i {
				seeds = append(seeds, fmt.Sprintf("%s:%d", NodeIP(j), port))
			}
		}

		data := t.TempDir()
		if i == 1 {
			data = firstData
		}

		flags := []string{"serve",
			"--node-name", NodeNS(i),
			"--listen", fmt.Sprintf("0.0.0.0:%d", httpPort),
			"--external-url", fmt.Sprintf("http://%s:%d", NodeIP(i), httpPort),
			"--gossip-listen", NodeIP(i) + ":7946",
			"--join", strings.Join(seeds, ","),
			"--bootstrap-expect", fmt.Sprint(members),
			"--data", data,
			"--dead-member-grace", deadMemberGrace,
			"--input-public-key", keyFile,
			"--log-level", "info"}

		switch {
		case secure && i > 1:
			flags = append(flags, "--cluster-listen", peerPort, "--join-token", token)
		case secure:
			flags = append(flags, "--cluster-listen", peerPort)
		default:
			flags = append(flags, "--raft-listen", NodeIP(i)+":7947", "--cluster-secret", clusterSecret)
		}

		c.args[i] = append(flags, args...)
		c.procs[i], c.logs[i] = startLoggedIn(t, lab, i, NodeNS(i), c.args[i]...)
		c.urls[i] = fmt.Sprintf("http://%s:%d", MgmtIP(i), httpPort)
	}

	for i := 1; i <= members; i++ {
		waitOK(t, c.urls[i]+"/healthz", 60*time.Second, NodeNS(i))
	}

	return c
}

// restart starts node i again, on its data directory and with its arguments, after the test killed it; the new
// process's logs replace the old one's.
func (c *cluster) restart(t testing.TB, i int) {
	t.Helper()

	c.procs[i], c.logs[i] = startLoggedIn(t, c.lab, i, NodeNS(i)+" (restarted)", c.args[i]...)
}

func waitOK(t testing.TB, url string, within time.Duration, what string) {
	t.Helper()

	require.Eventually(t, func() bool {
		resp, err := quick.Get(url)
		if err != nil {
			return false
		}

		resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	}, within, 100*time.Millisecond, "%s never answered 200 at %s", what, url)
}

// client allows for the ~8 s a write waits for a leader and for a first build.
var (
	client = &http.Client{Timeout: 90 * time.Second}
	quick  = &http.Client{Timeout: 3 * time.Second}
)

// response is one HTTP exchange and how long it took.
type response struct {
	status int
	body   []byte
	took   time.Duration
}

func (r response) String() string {
	return fmt.Sprintf("%d after %v: %s", r.status, r.took.Round(time.Millisecond), tail(string(r.body), 5))
}

func do(t testing.TB, method, url, body string) response {
	t.Helper()

	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)

	start := time.Now()
	resp, err := client.Do(req)
	require.NoError(t, err, "%s %s", method, url)

	defer resp.Body.Close()

	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "read %s %s", method, url)

	return response{status: resp.StatusCode, body: b, took: time.Since(start)}
}

func (c *cluster) get(t testing.TB, i int, path string) response {
	t.Helper()

	return do(t, http.MethodGet, c.urls[i]+path, "")
}

// createSchematic posts a schematic with kernel argument tag to node i and returns its ID.
func (c *cluster) createSchematic(t testing.TB, i int, tag string) string {
	t.Helper()

	r := c.postSchematic(t, i, tag)
	require.Equal(t, http.StatusCreated, r.status, "POST /schematics on %s: %s", NodeNS(i), r)

	var out struct {
		ID string `json:"id"`
	}

	require.NoError(t, json.Unmarshal(r.body, &out), "%s", r.body)
	require.Len(t, out.ID, 64)

	return out.ID
}

func (c *cluster) postSchematic(t testing.TB, i int, tag string) response {
	t.Helper()

	body := fmt.Sprintf("customization:\n  extraKernelArgs:\n    - netns.test=%s\n", tag)

	return do(t, http.MethodPost, c.urls[i]+"/schematics", body)
}

// status is the part of GET /cluster the tests read.
type status struct {
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Raft  string `json:"raft"`
	} `json:"members"`
	Ring struct {
		ID      string   `json:"id"`
		Members []string `json:"members"`
	} `json:"ring"`
	Cache struct {
		Blobs int `json:"blobs"`
	} `json:"cache"`
}

// alive lists the members this node sees alive.
func (s status) alive() []string {
	var names []string

	for _, m := range s.Members {
		if m.State == "alive" {
			names = append(names, m.Name)
		}
	}

	return names
}

// status reads node i's /cluster; ok is false when it does not answer.
func (c *cluster) status(i int) (status, bool) {
	var st status

	resp, err := quick.Get(c.urls[i] + "/cluster")
	if err != nil {
		return st, false
	}

	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}

	return st, true
}

// converged reports whether every node sees all n members alive, the same leader and the same ring; why says what
// is still missing.
func (c *cluster) converged() (ok bool, why string) {
	var leader, ring string

	for i := 1; i <= c.lab.n; i++ {
		st, ok := c.status(i)

		switch {
		case !ok:
			return false, NodeNS(i) + ": /cluster does not answer"
		case len(st.alive()) != c.lab.n:
			return false, fmt.Sprintf("%s sees alive %v", st.Node, st.alive())
		case st.Leader == "":
			return false, st.Node + " knows no leader"
		case len(st.Ring.Members) != c.lab.n:
			return false, fmt.Sprintf("%s's ring has %v", st.Node, st.Ring.Members)
		case i == 1:
			leader, ring = st.Leader, st.Ring.ID
		case st.Leader != leader || st.Ring.ID != ring:
			return false, fmt.Sprintf("%s: leader %s ring %s, %s: leader %s ring %s",
				NodeNS(1), leader, ring, st.Node, st.Leader, st.Ring.ID)
		}
	}

	return true, ""
}

// metric reads one counter from node i's /metrics, summed over its label sets (those containing each of labels,
// e.g. `result="answered"`, when given).
func (c *cluster) metric(t testing.TB, i int, name string, labels ...string) float64 {
	t.Helper()

	r := c.get(t, i, "/metrics")
	require.Equal(t, http.StatusOK, r.status)

	var sum float64

	for _, line := range strings.Split(string(r.body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}

		rest := strings.TrimPrefix(line, name)
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // a longer name with this prefix
		}

		if slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(rest, l) }) {
			continue
		}

		var v float64

		fields := strings.Fields(line)
		_, err := fmt.Sscan(fields[len(fields)-1], &v)
		require.NoError(t, err, "metric line %q", line)

		sum += v
	}

	return sum
}
