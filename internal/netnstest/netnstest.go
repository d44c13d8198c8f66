// Package netnstest helps tests that build networks out of Linux network namespaces (root only).
package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread in the named network namespace (/var/run/netns/<name>); sockets fn opens stay there.
// The thread is never returned to the pool: it ends with fn.
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)

	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine instead of serving others

		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err

			return
		}
		defer f.Close()

		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)

			return
		}

		errc <- fn()
	}()

	return <-errc
}

// End is one end of a veth pair: its namespace, interface name and address (CIDR form).
type End struct{ Netns, Interface, Addr string }

// Pair creates the namespaces of a and b joined by a veth pair, addressed and up (and lo up in both), and removes
// them when the test ends. It skips the test where that is impossible: not root, no iproute2, no namespaces.
func Pair(t testing.TB, a, b End) {
	t.Helper()

	if os.Geteuid() != 0 {
		t.Skip("creates network namespaces: needs root")
	}

	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("`ip` (iproute2) not found: apt-get install iproute2")
	}

	for _, ns := range []string{a.Netns, b.Netns} {
		if out, err := exec.CommandContext(context.Background(), "ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("network namespaces unavailable: ip netns add: %v: %s", err, out)
		}

		t.Cleanup(func() {
			if out, err := exec.CommandContext(context.Background(), "ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}

	for _, args := range [][]string{
		{"-n", a.Netns, "link", "add", a.Interface, "type", "veth", "peer", "name", b.Interface, "netns", b.Netns},
		{"-n", a.Netns, "addr", "add", a.Addr, "dev", a.Interface},
		{"-n", b.Netns, "addr", "add", b.Addr, "dev", b.Interface},
		{"-n", a.Netns, "link", "set", a.Interface, "up"},
		{"-n", b.Netns, "link", "set", b.Interface, "up"},
		{"-n", a.Netns, "link", "set", "lo", "up"},
		{"-n", b.Netns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.CommandContext(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}
