package imager

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBuildWorker: a build runs in a worker process at the builder's niceness, which the tools the imager runs
// inherit, and a build stopped by Close leaves no process behind.
func TestBuildWorker(t *testing.T) {
	f := getFixture(t)
	b, _ := f.newBuilder(t, func(c *Config) { c.Nice = 7 })
	r := f.plan(t, "metal-amd64.iso", "")

	done := make(chan error, 1)

	go func() {
		_, err := b.Build(context.Background(), r)
		done <- err
	}()

	// The ISO build runs grub-mkrescue, xorriso and xz for seconds: wait until the worker has a tool of its own.
	var seen []process

	require.Eventually(t, func() bool {
		seen = descendants(t, os.Getpid())

		return len(seen) >= 2
	}, time.Minute, 5*time.Millisecond, "no worker running a tool")

	for _, p := range seen {
		require.Equal(t, 7, p.nice, "niceness of %s (pid %d)", p.comm, p.pid)
	}

	// The worker's process group: the tools of a killed worker, orphaned, would still be in it.
	group := -1

	for _, p := range seen {
		if p.ppid == os.Getpid() {
			group = p.pgrp
		}
	}

	require.Equal(t, seen[0].pgrp, group, "one process group for the worker and its tools")

	require.NoError(t, b.Close())
	require.Error(t, <-done, "a build stopped by Close fails")
	require.Empty(t, descendants(t, os.Getpid()), "processes of the stopped build left")
	require.Empty(t, inGroup(t, group), "processes of the stopped build's group left")
	require.Empty(t, f.leftovers(t))
}

func TestWorkerOutcome(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, strconv.Itoa(len(s))+".json")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))

		return p
	}

	path, err := workerOutcome(write(`{"path":"/out/metal-amd64.iso"}`), nil)
	require.NoError(t, err)
	require.Equal(t, "/out/metal-amd64.iso", path)

	_, err = workerOutcome(write(`{"error":"mkfs.vfat: exit status 1"}`), nil)
	require.EqualError(t, err, "mkfs.vfat: exit status 1", "the build's own error, not the worker's exit status")

	_, err = workerOutcome(filepath.Join(dir, "missing.json"), nil)
	require.ErrorContains(t, err, "imager worker gave no result")

	_, err = workerOutcome(filepath.Join(dir, "missing.json"), context.Canceled)
	require.ErrorIs(t, err, context.Canceled)
}

type process struct {
	pid, ppid, pgrp, nice int
	comm                  string
}

// descendants lists the processes below pid (its children, theirs, ...).
func descendants(t *testing.T, pid int) []process {
	t.Helper()

	procs := processes(t)

	var out []process

	for _, p := range procs {
		for up := p.ppid; up > 1; up = procs[up].ppid {
			if up == pid {
				out = append(out, p)

				break
			}
		}
	}

	return out
}

// inGroup lists the processes of process group pgrp.
func inGroup(t *testing.T, pgrp int) []process {
	t.Helper()

	var out []process

	for _, p := range processes(t) {
		if p.pgrp == pgrp {
			out = append(out, p)
		}
	}

	return out
}

// processes reads every process from /proc, by pid.
func processes(t *testing.T) map[int]process {
	t.Helper()

	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)

	procs := map[int]process{}

	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}

		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}

		// pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
		// cstime priority nice ...: comm may hold spaces and parentheses, the fields after the last ')' do not.
		s := string(stat)
		end := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[end+1:])

		if len(fields) < 17 {
			continue
		}

		p := process{pid: id, comm: s[strings.IndexByte(s, '(')+1 : end]}
		p.ppid, _ = strconv.Atoi(fields[1])  // kernel-formatted
		p.pgrp, _ = strconv.Atoi(fields[2])  // kernel-formatted
		p.nice, _ = strconv.Atoi(fields[16]) // kernel-formatted
		procs[id] = p
	}

	return procs
}
