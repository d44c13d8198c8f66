//go:build netns

package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/schematic"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// The linearizability check records every schematic and cluster-settings operation that clients make through all
// three members (invocation and completion times, input and output) while members are killed, restarted and cut
// off, and asks porcupine (as etcd's robustness tests do) whether some order of the operations, each taking effect
// at one instant between its invocation and its completion, explains every answer. It fails on an acknowledged
// write that is later missing and on a read older than a write that had completed before the read began.
const (
	// linearOps is how many operations the check covers at least in `make test`; EDGEFACTORY_SOAK_OPS (make soak)
	// asks for more, and the faults repeat until the clients have made them.
	linearOps  = 1000
	soakOpsEnv = "EDGEFACTORY_SOAK_OPS"
	// staleReadsEnv is the node's test-only switch (node/node.go) that skips the leader check of reads.
	staleReadsEnv = "EDGEFACTORY_TEST_STALE_READS"
	// linearClients is how many clients run at once; each picks a member at random for every operation.
	linearClients = 6
	// apiToken lets the clients change the cluster settings (PUT /cluster/settings needs credentials).
	apiToken = "linearizability-check-token"
	// budgetBase is the smallest cache budget written: a terabyte and up never makes a member evict anything, so
	// the setting can change hundreds of times a minute without side effects, each write with a value of its own.
	budgetBase  = 1 << 40
	settingsKey = "settings"
	present     = "present"
)

// TestNetnsLinearizable runs the workload twice, on a fresh cluster each time: once as the members are built,
// where porcupine must find the history linearizable, and once with reads that skip the leader check
// (EDGEFACTORY_TEST_STALE_READS=1), where it must find it is not: a check that cannot fail proves nothing.
func TestNetnsLinearizable(t *testing.T) {
	RequireLab(t)

	ops := linearOps
	if s := os.Getenv(soakOpsEnv); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "%s=%q", soakOpsEnv, s)

		ops = max(n, linearOps)
	}

	ok := t.Run("linearizable", func(t *testing.T) {
		w := runLinearWorkload(t, ops, allFaults)

		res, info := w.check(t)
		require.GreaterOrEqual(t, w.completed(), linearOps, "too few operations checked for the check to mean much")
		if res != porcupine.Ok {
			t.Logf("visualisation of the history: %s", w.visualise(t, info))
		}

		require.Equal(t, porcupine.Ok, res, "the history of schematics and settings is not linearizable")
	})
	if !ok || os.Getenv(soakOpsEnv) != "" {
		return // the broken run shows the check can fail; a soak has shown it already in make test
	}

	t.Run("stale reads are caught", func(t *testing.T) {
		t.Setenv(staleReadsEnv, "1") // inherited by the members the workload starts

		// A follower cut off from its quorum still answers reads from its replica under the switch, while the
		// majority moves on: the history then holds reads older than completed writes.
		w := runLinearWorkload(t, 300, []fault{cutFollower})

		res, info := w.check(t)
		t.Logf("visualisation of the history: %s", w.visualise(t, info))
		require.Equal(t, porcupine.Illegal, res,
			"with reads that skip the leader check, porcupine must find a stale read; it found none")
	})
}

// runLinearWorkload starts a cluster, records one settings write (the register's first value), runs the clients
// while faults happen one after another (all of them at least once, and again until the clients have made ops
// operations), stops the clients and returns the history.
func runLinearWorkload(t *testing.T, ops int, faults []fault) *linearWorkload {
	lab := NewLab(t, 3)

	tokens := filepath.Join(t.TempDir(), "api-tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("linear:"+apiToken+"\n"), 0o600))

	c := startCluster(t, lab, synthetic.DefaultPartsDir(), "--api-token-file", tokens)
	waitConverged(t, c, 90*time.Second)

	w := &linearWorkload{c: c, start: time.Now(), http: &http.Client{Timeout: 15 * time.Second}}
	w.first(t)

	ctx, stop := context.WithCancel(t.Context())

	var clients sync.WaitGroup

	for i := range linearClients {
		r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
		clients.Go(func() { w.client(ctx, r) })
	}

	began := time.Now()

	for round := 0; round == 0 || w.completed() < ops; round++ {
		for _, f := range faults {
			t.Logf("%d operations so far", w.completed())
			f(t, c)
			// Calm between faults: the clients work on a whole cluster for a while.
			time.Sleep(2 * time.Second)
		}
	}

	stop()
	clients.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()

	t.Logf("%d operations recorded in %v (%d writes of unknown outcome; %d failed reads dropped) by %d clients",
		len(w.ops), time.Since(began).Round(time.Second), w.unknown, w.dropped, w.nextClient)

	return w
}

// A fault disturbs the cluster and undoes the disturbance, returning once the cluster has converged again.
type fault func(t *testing.T, c *cluster)

var allFaults = []fault{cutFollower, killLeader, cutLeader, killFollower}

// faultHold is how long a member stays cut off or dead: longer than an election and than a write's wait for a
// leader, so clients see refusals and a new leader, not just a hiccup.
const faultHold = 6 * time.Second

func cutFollower(t *testing.T, c *cluster)  { cut(t, c, follower(t, c), "a follower") }
func cutLeader(t *testing.T, c *cluster)    { cut(t, c, leader(t, c), "the leader") }
func killFollower(t *testing.T, c *cluster) { kill(t, c, follower(t, c), "a follower") }
func killLeader(t *testing.T, c *cluster)   { kill(t, c, leader(t, c), "the leader") }

func cut(t *testing.T, c *cluster, i int, role string) {
	t.Logf("fault: cutting %s, %s, off for %v", role, NodeNS(i), faultHold)
	c.lab.Cut(i)
	time.Sleep(faultHold)
	c.lab.Heal(i)
	waitConverged(t, c, 90*time.Second)
}

func kill(t *testing.T, c *cluster, i int, role string) {
	t.Logf("fault: killing %s, %s (SIGKILL), and restarting it after %v", role, NodeNS(i), faultHold)
	require.NoError(t, c.procs[i].Kill())
	time.Sleep(faultHold)
	c.restart(t, i)
	waitOK(t, c.urls[i]+"/readyz", 90*time.Second, NodeNS(i))
	waitConverged(t, c, 90*time.Second)
}

// leader is the member that leads: the cluster has converged between faults, but an election may follow a
// member's return (it may have timed out waiting for the others), so it waits for one.
func leader(t *testing.T, c *cluster) int {
	t.Helper()

	var name string

	ok := poll(30*time.Second, 100*time.Millisecond, func() bool {
		st, ok := c.status(1)
		name = st.Leader

		return ok && name != ""
	})
	require.True(t, ok, "%s names no leader", NodeNS(1))

	return nodeIndex(t, name)
}

func follower(t *testing.T, c *cluster) int { return leader(t, c)%c.lab.n + 1 }

// linearInput is an operation on one register: the cluster settings' cacheBudget, or one schematic (by ID).
type linearInput struct {
	Write bool
	Key   string // settingsKey or a schematic ID
	Value string // written: the budget, or present for a schematic
}

// linearOutput is what an operation returned.
type linearOutput struct {
	Value string // read: the budget, present, or "" (a schematic not found)
	// Unknown marks a write that failed or timed out: it may have taken effect or not (porcupine's convention: it
	// completes at the end of the history, or where settleUnknown says).
	Unknown bool
}

// linearModel is a register per key: a write sets it, a read returns it. Keys are checked apart (porcupine's
// partitions), so the check grows with the operations per key, not with the history.
var linearModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string

		for _, op := range history {
			k := op.Input.(linearInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}

			byKey[k] = append(byKey[k], op)
		}

		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}

		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(linearInput), output.(linearOutput)
		if in.Write {
			return true, in.Value
		}

		return out.Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, _ := input.(linearInput) // the visualisation may describe nothing
		out, _ := output.(linearOutput)

		key := in.Key
		if key != settingsKey {
			key = "schematic " + key[:min(12, len(key))]
		}

		switch {
		case in.Write && out.Unknown:
			return fmt.Sprintf("write %s = %s (outcome unknown)", key, in.Value)
		case in.Write:
			return fmt.Sprintf("write %s = %s", key, in.Value)
		case out.Value == "":
			return fmt.Sprintf("read %s: not found", key)
		default:
			return fmt.Sprintf("read %s: %s", key, out.Value)
		}
	},
	DescribeState: func(state any) string {
		if s, _ := state.(string); s != "" {
			return s
		}

		return "(none)"
	},
}

// linearWorkload is the clients' shared state and the history they record.
type linearWorkload struct {
	c     *cluster
	start time.Time // operation times are nanoseconds since start (monotonic)
	http  *http.Client

	budgets    atomic.Int64 // each settings write has a value of its own, or reads could not tell writes apart
	schematics atomic.Int64

	mu         sync.Mutex
	ops        []porcupine.Operation
	unknown    int // writes of unknown outcome
	dropped    int // reads that failed: they observed nothing
	nextClient int
	recent     []string // schematic IDs written lately (reads pick among them)
	tags       map[string]string
}

// first writes the budget every later read starts from, through node 1, and records it.
func (w *linearWorkload) first(t *testing.T) {
	client := w.newClient()

	ok := poll(30*time.Second, 500*time.Millisecond, func() bool {
		return !w.putSettings(t.Context(), client, 1) // recorded either way; an unknown outcome is retried
	})
	require.True(t, ok, "the first settings write never succeeded")
}

func (w *linearWorkload) newClient() int {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.nextClient++

	return w.nextClient - 1
}

// client makes operations until ctx ends, each through a member picked at random.
func (w *linearWorkload) client(ctx context.Context, r *rand.Rand) {
	id := w.newClient()

	for ctx.Err() == nil {
		node := 1 + r.IntN(w.c.lab.n)

		var unknown bool

		switch p := r.IntN(100); {
		case p < 25:
			unknown = w.putSettings(ctx, id, node)
		case p < 55:
			w.getSettings(ctx, id, node)
		case p < 70:
			unknown = w.createSchematic(ctx, id, node, r)
		default:
			w.readSchematic(ctx, id, node, r)
		}

		if unknown {
			// The operation stays pending until the end of the history: the client goes on as a new one, as a
			// real client that gave up on a request would.
			id = w.newClient()
		}
	}
}

// record adds an operation that returned, or one of unknown outcome (end ignored).
func (w *linearWorkload) record(client int, in linearInput, out linearOutput, call, end time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()

	if out.Unknown {
		w.unknown++ // its completion is settled by check (settleUnknown)
	}

	w.ops = append(w.ops, porcupine.Operation{ClientId: client, Input: in, Output: out,
		Call: call.Sub(w.start).Nanoseconds(), Return: end.Sub(w.start).Nanoseconds()})
}

func (w *linearWorkload) drop() {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.dropped++
}

// completed is how many operations the history holds so far.
func (w *linearWorkload) completed() int {
	w.mu.Lock()
	defer w.mu.Unlock()

	return len(w.ops)
}

// putSettings writes a new cache budget through node; it reports whether the outcome is unknown.
func (w *linearWorkload) putSettings(ctx context.Context, client, node int) bool {
	v := strconv.FormatInt(budgetBase+w.budgets.Add(1), 10)
	in := linearInput{Write: true, Key: settingsKey, Value: v}

	return w.write(ctx, client, node, in, http.MethodPut, "/cluster/settings", `{"cacheBudget":`+v+`}`,
		http.StatusOK)
}

func (w *linearWorkload) getSettings(ctx context.Context, client, node int) {
	call := time.Now()
	status, body, err := w.do(ctx, node, http.MethodGet, "/cluster/settings", "")
	end := time.Now()

	var doc struct {
		CacheBudget int64 `json:"cacheBudget"`
	}

	if err != nil || status != http.StatusOK || json.Unmarshal(body, &doc) != nil {
		w.drop()

		return
	}

	w.record(client, linearInput{Key: settingsKey}, linearOutput{Value: strconv.FormatInt(doc.CacheBudget, 10)},
		call, end)
}

// createSchematic creates a new schematic through node, or now and then one created before (creating is
// idempotent: the ID is the content's); it reports whether the outcome is unknown.
func (w *linearWorkload) createSchematic(ctx context.Context, client, node int, r *rand.Rand) bool {
	id, tag := w.pickSchematic(r, 10)
	if id == "" || r.IntN(4) > 0 {
		tag = fmt.Sprintf("linear-%d", w.schematics.Add(1))
		_, _, sum, err := schematic.Normalize([]byte(schematicYAML(tag)))
		if err != nil {
			panic(err) // the YAML is this test's own
		}

		id = sum

		w.mu.Lock()
		w.recent = append(w.recent, id)
		if w.tags == nil {
			w.tags = map[string]string{}
		}
		w.tags[id] = tag
		w.mu.Unlock()
	}

	in := linearInput{Write: true, Key: id, Value: present}

	return w.write(ctx, client, node, in, http.MethodPost, "/schematics", schematicYAML(tag), http.StatusCreated)
}

// readSchematic reads one of the schematics created (or being created) lately through node.
func (w *linearWorkload) readSchematic(ctx context.Context, client, node int, r *rand.Rand) {
	id, tag := w.pickSchematic(r, 20)
	if id == "" {
		return
	}

	call := time.Now()
	status, body, err := w.do(ctx, node, http.MethodGet, "/schematics/"+id, "")
	end := time.Now()

	var out linearOutput

	switch {
	case err != nil:
		w.drop()

		return
	case status == http.StatusNotFound:
	case status == http.StatusOK && strings.Contains(string(body), "netns.test="+tag):
		out.Value = present
	case status == http.StatusOK:
		out.Value = "other content: " + string(body) // a value no write made: porcupine reports it
	default:
		w.drop()

		return
	}

	w.record(client, linearInput{Key: id}, out, call, end)
}

// pickSchematic returns one of the last n schematic IDs the clients wrote (or are writing), and its tag.
func (w *linearWorkload) pickSchematic(r *rand.Rand, n int) (id, tag string) {
	w.mu.Lock()
	defer w.mu.Unlock()

	if len(w.recent) == 0 {
		return "", ""
	}

	last := w.recent[max(0, len(w.recent)-n):]
	id = last[r.IntN(len(last))]

	return id, w.tags[id]
}

func schematicYAML(tag string) string {
	return fmt.Sprintf("customization:\n  extraKernelArgs:\n    - netns.test=%s\n", tag)
}

// write sends a write and records it: done when the member answered want, of unknown outcome when it answered
// anything else or nothing. A write whose connection was refused never reached a member and is not recorded. It
// reports whether the outcome is unknown.
func (w *linearWorkload) write(ctx context.Context, client, node int, in linearInput, method, path, body string,
	want int,
) bool {
	call := time.Now()
	status, _, err := w.do(ctx, node, method, path, body)
	end := time.Now()

	if errors.Is(err, syscall.ECONNREFUSED) {
		return false // the member is down: nothing was sent
	}

	unknown := err != nil || status != want
	w.record(client, in, linearOutput{Unknown: unknown}, call, end)

	return unknown
}

func (w *linearWorkload) do(ctx context.Context, node int, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.c.urls[node]+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}

	req.Header.Set("Authorization", "Bearer "+apiToken)

	resp, err := w.http.Do(req)
	if err != nil {
		return 0, nil, err
	}

	defer resp.Body.Close()

	b, err := io.ReadAll(resp.Body)

	return resp.StatusCode, b, err
}

// check runs porcupine over the history (each key apart) and logs its verdict.
func (w *linearWorkload) check(t *testing.T) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()

	recorded := len(w.ops)
	w.ops = settleUnknown(w.ops)

	keys := map[string]bool{}
	for _, op := range w.ops {
		keys[op.Input.(linearInput).Key] = true
	}

	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linearModel, w.ops, 3*time.Minute)

	if res == porcupine.Illegal {
		t.Logf("registers whose history is not linearizable: %s", illegalKeys(w.ops))
	}

	t.Logf("porcupine: %s over %d operations (%d writes of unknown outcome nobody saw left out) on %d registers "+
		"(the settings and %d schematics) in %v", res, len(w.ops), recorded-len(w.ops), len(keys), len(keys)-1,
		time.Since(start).Round(time.Millisecond))

	return res, info
}

// illegalKeys names the registers whose own history porcupine rejects (the verdict over the whole history does not
// say which).
func illegalKeys(ops []porcupine.Operation) string {
	byKey := linearModel.Partition(ops)

	var names []string

	for _, part := range byKey {
		if !porcupine.CheckOperations(linearModel, part) {
			key := part[0].Input.(linearInput).Key
			if key != settingsKey {
				key = "schematic " + key[:12]
			}

			names = append(names, fmt.Sprintf("%s (%d operations)", key, len(part)))
		}
	}

	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}

	return strings.Join(names, ", ")
}

// settleUnknown gives each write of unknown outcome the latest completion the history allows, as etcd's robustness
// tests do, so the checker does not have to try every pending write at every step (which grows exponentially):
//
//   - a write whose value no read returned after its invocation is dropped: placed last, where porcupine may always
//     place it, it changes nothing a read saw, so the history is linearizable with it exactly when it is without;
//   - otherwise it completes when the first read to return its value did: it took effect before that read (the
//     settings' values are unique; a schematic, once present, stays so, and one more "present" changes nothing).
func settleUnknown(ops []porcupine.Operation) []porcupine.Operation {
	var out []porcupine.Operation

	for _, op := range ops {
		if !op.Output.(linearOutput).Unknown {
			out = append(out, op)

			continue
		}

		in, seen := op.Input.(linearInput), int64(-1)

		for _, r := range ops {
			rin := r.Input.(linearInput)
			if rin.Write || rin.Key != in.Key || r.Output.(linearOutput).Value != in.Value || r.Return < op.Call {
				continue
			}

			if seen < 0 || r.Return < seen {
				seen = r.Return
			}
		}

		if seen >= 0 {
			op.Return = seen
			out = append(out, op)
		}
	}

	return out
}

// visualise writes porcupine's page of the history (each key's operations on a time line, the longest
// linearizable prefix, and where it breaks) to a file that outlives the test, and returns its path.
func (w *linearWorkload) visualise(t *testing.T, info porcupine.LinearizationInfo) string {
	dir, err := os.MkdirTemp("", "edgefactory-linearizability-")
	require.NoError(t, err)

	path := filepath.Join(dir, "history.html")
	require.NoError(t, porcupine.VisualizePath(linearModel, info, path))

	return path
}
