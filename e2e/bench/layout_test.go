package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// layout says which CPUs the servers under test and the load generator run on. A nil set means every CPU.
//
// On a small machine the layout decides what a latency benchmark measures. When the load generator shares the
// server's CPUs (the shared layout), a server thread that has work waits for the kernel to hand it a CPU the
// generator holds, and the tail latency is mostly that wait; load from other machines, as in production, takes no
// CPU from the server. The split layout models that: the servers get one half of the CPUs, the generator the other.
type layout struct {
	name         string
	server, load []int
}

// sharedLayout runs servers and load generator on every CPU.
var sharedLayout = layout{name: "shared"}

// splitLayout gives the servers the first half of the CPUs this process may run on and the load generator the
// rest. It returns a reason instead when the machine cannot split: fewer than two CPUs, or no taskset (util-linux).
func splitLayout() (layout, string) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return layout{}, "taskset not found (Debian package util-linux): no split layout"
	}

	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return layout{}, fmt.Sprintf("CPU affinity: %v: no split layout", err)
	}

	var cpus []int

	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}

	if len(cpus) < 2 {
		return layout{}, fmt.Sprintf("%d CPU: no split layout", len(cpus))
	}

	half := len(cpus) / 2

	return layout{name: "split", server: cpus[:half], load: cpus[half:]}, ""
}

// launcher is the command prefix that runs a process on cpus (none for every CPU).
func launcher(cpus []int) []string {
	if cpus == nil {
		return nil
	}

	list := make([]string, len(cpus))
	for i, c := range cpus {
		list[i] = strconv.Itoa(c)
	}

	return []string{"taskset", "-c", strings.Join(list, ",")}
}

// cpuCount is how many CPUs a set holds.
func cpuCount(cpus []int) int {
	if cpus == nil {
		return runtime.NumCPU()
	}

	return len(cpus)
}
