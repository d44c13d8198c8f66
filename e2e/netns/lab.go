//go:build netns

// Package netns runs a three-node Edge Factory cluster in Linux network namespaces and partitions it for real: the
// nodes talk over a bridge, one node is cut off by taking its bridge port down, then healed. The tests check what a
// partition must and must not break (cached assets and known schematics keep being served; new writes are refused
// with a clear 503) and that the cluster re-merges and converges afterwards. They need root and iproute2 and skip,
// saying which is missing, elsewhere. Run them with `make test-netns`.
package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The lab's names are fixed so that a later run can remove what a crashed run left behind.
const (
	// bridgeNS holds the bridge the nodes share and the synthetic upstream registry (on bridgeIP).
	bridgeNS = "ef-br"
	bridge   = "ef-br0"
	bridgeIP = "10.77.0.254"
	// Node i lives in namespace ef-n<i> on 10.77.0.<i> (its eth0, plugged into bridge port port<i>).
	nodePrefix = "ef-n"
	// Every namespace also has a management link to the root namespace (where the test runs): root side ef-m<i>
	// with 10.78.<i>.1, namespace side "mgmt" with 10.78.<i>.2 (i = 0 for the bridge namespace). Cutting a node's
	// bridge port leaves it reachable to the test.
	mgmtPrefix = "ef-m"
	maxNodes   = 3
)

// Lab is the network: a bridge namespace and n node namespaces, each reachable from the test.
type Lab struct {
	t testing.TB
	n int
}

// NodeNS is the network namespace of node i (1-based).
func NodeNS(i int) string { return nodePrefix + strconv.Itoa(i) }

// NodeIP is node i's address on the bridge: what its peers use.
func NodeIP(i int) string { return fmt.Sprintf("10.77.0.%d", i) }

// MgmtIP is the address the test reaches namespace i at (0: the bridge namespace).
func MgmtIP(i int) string { return fmt.Sprintf("10.78.%d.2", i) }

// RequireLab skips the test when this machine cannot build the lab: not root, or no iproute2.
func RequireLab(t testing.TB) {
	t.Helper()

	if os.Geteuid() != 0 {
		t.Skip("netns suite skipped: it creates network namespaces and needs root (run `sudo make test-netns`)")
	}

	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns suite skipped: `ip` (iproute2) not found: apt-get install iproute2")
	}
}

// NewLab builds the network for n nodes (n ≤ 3) and removes it when the test ends. It skips the test when network
// namespaces cannot be created here (e.g. in an unprivileged container).
func NewLab(t testing.TB, n int) *Lab {
	t.Helper()
	require.LessOrEqual(t, n, maxNodes)

	RequireLab(t)

	lock(t)

	l := &Lab{t: t, n: n}
	l.teardown() // what a crashed run left behind

	if out, err := exec.CommandContext(t.Context(), "ip", "netns", "add", bridgeNS).CombinedOutput(); err != nil {
		t.Skipf("netns suite skipped: `ip netns add` fails here (%v: %s)", err, strings.TrimSpace(string(out)))
	}

	t.Cleanup(l.teardown)

	l.ip("-n", bridgeNS, "link", "set", "lo", "up")
	l.ip("-n", bridgeNS, "link", "add", bridge, "type", "bridge")
	l.ip("-n", bridgeNS, "addr", "add", bridgeIP+"/24", "dev", bridge)
	l.ip("-n", bridgeNS, "link", "set", bridge, "up")
	l.mgmt(0, bridgeNS)

	for i := 1; i <= n; i++ {
		ns, port := NodeNS(i), "port"+strconv.Itoa(i)

		l.ip("netns", "add", ns)
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", bridgeNS)
		l.ip("-n", bridgeNS, "link", "set", port, "master", bridge)
		l.ip("-n", bridgeNS, "link", "set", port, "up")
		l.ip("-n", ns, "addr", "add", NodeIP(i)+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.mgmt(i, ns)
	}

	return l
}

// lockFile serialises runs on one machine: the lab's names are fixed, and a run removes what it finds under them.
const lockFile = "/run/edgefactory-netns.lock"

// lock waits until no other run holds the lab, and holds it until the test ends (the kernel frees it if the test
// process dies).
func lock(t testing.TB) {
	t.Helper()

	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(t, err, "open the lab lock")

	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("another netns run holds %s: waiting for it", lockFile)
		require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX), "lock %s", lockFile)
	}

	t.Cleanup(func() { f.Close() }) // closing releases the lock; registered first, so it runs after the teardown
}

// mgmt links namespace ns (index i) to the root namespace.
func (l *Lab) mgmt(i int, ns string) {
	root := mgmtPrefix + strconv.Itoa(i)

	l.ip("link", "add", root, "type", "veth", "peer", "name", "mgmt", "netns", ns)
	l.ip("addr", "add", fmt.Sprintf("10.78.%d.1/24", i), "dev", root)
	l.ip("link", "set", root, "up")
	l.ip("-n", ns, "addr", "add", MgmtIP(i)+"/24", "dev", "mgmt")
	l.ip("-n", ns, "link", "set", "mgmt", "up")
}

// Cut isolates node i from its peers and the upstream: its bridge port goes down, so its eth0 loses carrier and
// packets either way are dropped (no error comes back, as with a pulled cable). The test still reaches it.
func (l *Lab) Cut(i int) { l.ip("-n", bridgeNS, "link", "set", "port"+strconv.Itoa(i), "down") }

// Heal undoes Cut.
func (l *Lab) Heal(i int) { l.ip("-n", bridgeNS, "link", "set", "port"+strconv.Itoa(i), "up") }

// Shape limits what node i sends, to its peers (eth0) and to the test's clients (mgmt), to rate (tc syntax, e.g.
// "1gbit"): a token bucket like a NIC's line rate, so transfers are bound by the link as on real hardware rather
// than by the CPU copying bytes over loopback.
func (l *Lab) Shape(i int, rate string) {
	for _, dev := range []string{"eth0", "mgmt"} {
		// A burst of 1 MiB: at least a few of the 64 KiB segments veth passes at once, and small next to a second.
		l.ip("netns", "exec", NodeNS(i), "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
			"rate", rate, "burst", "1mb", "latency", "50ms")
	}
}

// Command runs name in namespace ns (i: node index, 0: the bridge namespace).
func (l *Lab) Command(i int, name string, args ...string) *exec.Cmd {
	ns := bridgeNS
	if i > 0 {
		ns = NodeNS(i)
	}

	// The caller stops it with SIGTERM in a cleanup: t.Context() ends before cleanups run and would SIGKILL it.
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...) //nolint:noctx // see above
}

func (l *Lab) ip(args ...string) {
	l.t.Helper()

	out, err := exec.CommandContext(l.t.Context(), "ip", args...).CombinedOutput()
	require.NoError(l.t, err, "ip %s: %s", strings.Join(args, " "), out)
}

// teardown stops what still runs in the lab's namespaces and deletes them (their veth pairs go with them). It
// ignores what does not exist. It runs as a cleanup, after t.Context() has ended: its commands take no context.
func (l *Lab) teardown() {
	names := []string{bridgeNS}
	for i := 1; i <= maxNodes; i++ {
		names = append(names, NodeNS(i))
	}

	for _, ns := range names {
		killNamespace(ns)
		exec.Command("ip", "netns", "del", ns).Run() //nolint:errcheck,noctx // absent is fine; cleanup
	}

	for i := 0; i <= maxNodes; i++ {
		exec.Command("ip", "link", "del", mgmtPrefix+strconv.Itoa(i)).Run() //nolint:errcheck,noctx // absent is fine; cleanup
	}
}

// killNamespace ends the processes inside ns (left by a crashed run: this run's own are stopped before), by PID.
func killNamespace(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output() //nolint:noctx // part of teardown, a cleanup
	if err != nil {
		return
	}

	pids := strings.Fields(string(out))
	for _, p := range pids {
		if pid, err := strconv.Atoi(p); err == nil {
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // it may be gone already
		}
	}

	if len(pids) > 0 {
		time.Sleep(200 * time.Millisecond) // let the kernel release their sockets before the namespace goes
	}
}

// CountEgress makes node i count (nftables, in its namespace) every connection it opens to anything but its peers
// on the bridge and itself: what leaves the cluster. Egress reads the count; calling CountEgress again starts it
// from zero.
func (l *Lab) CountEgress(i int) {
	l.t.Helper()

	var peers []string
	for j := 1; j <= l.n; j++ {
		peers = append(peers, NodeIP(j))
	}

	ruleset := fmt.Sprintf(`table inet ef_egress {}
delete table inet ef_egress
table inet ef_egress {
	chain out {
		type filter hook output priority 0; policy accept;
		ct state new ip daddr != { 127.0.0.0/8, %s } counter
		ct state new ip6 daddr != ::1 counter
	}
}
`, strings.Join(peers, ", "))

	cmd := exec.CommandContext(l.t.Context(), "ip", "netns", "exec", NodeNS(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	require.NoError(l.t, err, "nft in %s: %s", NodeNS(i), out)
}

// Egress is how many connections node i opened to anything but its peers since CountEgress, with nftables' own
// listing of the rules (packets counted per rule) for the test's message.
func (l *Lab) Egress(i int) (int, string) {
	l.t.Helper()

	out, err := exec.CommandContext(l.t.Context(), "ip", "netns", "exec", NodeNS(i), "nft", "-j", "list", "table",
		"inet", "ef_egress").CombinedOutput()
	require.NoError(l.t, err, "nft list in %s: %s", NodeNS(i), out)

	var listing struct {
		Nftables []struct {
			Rule *struct {
				Expr []struct {
					Counter *struct {
						Packets int `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}

	require.NoError(l.t, json.Unmarshal(out, &listing), "nft's JSON: %s", out)

	total := 0

	for _, item := range listing.Nftables {
		if item.Rule == nil {
			continue
		}

		for _, e := range item.Rule.Expr {
			if e.Counter != nil {
				total += e.Counter.Packets
			}
		}
	}

	text, _ := exec.CommandContext(l.t.Context(), "ip", "netns", "exec", NodeNS(i), "nft", "list", "table", "inet",
		"ef_egress").CombinedOutput()

	return total, string(text)
}
