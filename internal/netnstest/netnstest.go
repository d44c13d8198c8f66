// Package netnstest helps tests that build networks out of Linux network namespaces (root only).
package netnstest

import (
	"fmt"
	"os"
	"runtime"

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
