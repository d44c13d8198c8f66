package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefactory/edgefactory/frontends/netboot"
	"github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/node/internal/registry"
)

// The iPXE binaries of a member doing network boot without --ipxe-dir: <data>/ipxe, filled from the cluster once a
// bundle carrying them was imported (registry.IPXESetting names their blobs). Each file is read through the asset
// service, checked against the digest and size the setting names, and only then renamed into place: a file under
// its final name always has the bytes the cluster recorded.

// ipxePoll is how often a member waiting for the iPXE binaries reads the setting.
const ipxePoll = 5 * time.Second

// ipxeWaitLog is how often the wait is logged again.
const ipxeWaitLog = time.Minute

// ipxeWaitMessage is what a member waiting for the binaries says.
const ipxeWaitMessage = "network boot waits for the iPXE binaries: import a bundle made with " +
	"`edgefactory mirror --ipxe-dir`, or give --ipxe-dir"

// ipxeDir is the directory network boot and /ipxe/{name} serve: --ipxe-dir, else <data>/ipxe.
func (c *Config) ipxeDir() string {
	if c.IPXEDir != "" {
		return c.IPXEDir
	}

	return filepath.Join(c.DataDir, "ipxe")
}

// ipxeFromCluster reports whether this member's iPXE binaries come from the cluster.
func (c *Config) ipxeFromCluster() bool { return len(c.NetbootInterfaces) > 0 && c.IPXEDir == "" }

// ipxePresent reports whether <data>/ipxe holds every binary the cluster setting names, with its bytes.
func (n *Node) ipxePresent() bool {
	x, ok, err := n.registry.IPXE()
	if err != nil || !ok {
		return false
	}

	for _, name := range netboot.BinaryNames() {
		if !ipxeFileMatches(filepath.Join(n.cfg.ipxeDir(), name), x.Files[name]) {
			return false
		}
	}

	return true
}

// ipxeFileMatches reports whether the file at path has want's size and digest.
func ipxeFileMatches(path string, want registry.IPXEBinary) bool {
	st, err := os.Stat(path)
	if err != nil || st.Size() != want.Size {
		return false
	}

	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close() // read-only

	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}

	return digest.OfHash(h) == want.Digest
}

// awaitIPXE waits until the cluster names iPXE binaries and they are in <data>/ipxe, fetching them: it returns nil
// then, or ctx's error. A fetch that fails (bytes that do not match, no member reachable) is logged and tried again.
func (n *Node) awaitIPXE(ctx context.Context) error {
	poll := ipxePoll
	if n.cfg.tune != nil && n.cfg.tune.ipxePoll > 0 {
		poll = n.cfg.tune.ipxePoll
	}

	var logged time.Time

	for {
		err := n.fetchIPXE(ctx)
		if err == nil {
			return nil
		}

		if ctx.Err() != nil {
			return ctx.Err()
		}

		if time.Since(logged) >= ipxeWaitLog {
			logged = time.Now()

			if errors.Is(err, errNoIPXE) {
				n.log.Warn(ipxeWaitMessage, "dir", n.cfg.ipxeDir())
			} else {
				n.log.Warn("network boot waits for the iPXE binaries: fetching them from the cluster failed, "+
					"trying again", "error", err)
			}
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// errNoIPXE: the cluster has no iPXE binaries yet.
var errNoIPXE = errors.New("no bundle carrying the iPXE binaries was imported")

// fetchIPXE brings every binary the cluster setting names into <data>/ipxe (a file that already matches stays).
func (n *Node) fetchIPXE(ctx context.Context) error {
	x, ok, err := n.registry.IPXE()
	if err != nil {
		return err
	}

	if !ok {
		return errNoIPXE
	}

	dir := n.cfg.ipxeDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}

	for _, name := range netboot.BinaryNames() {
		want, ok := x.Files[name]
		if !ok {
			return fmt.Errorf("the cluster's iPXE binaries lack %s", name)
		}

		if ipxeFileMatches(filepath.Join(dir, name), want) {
			continue
		}

		if err := n.fetchIPXEFile(ctx, dir, name, want); err != nil {
			return err
		}
	}

	n.log.Info("iPXE binaries ready for network boot", "dir", dir, "source", x.Source)

	return nil
}

// fetchIPXEFile reads one binary's blob through the asset service into a temporary file and renames it into place
// only when its bytes hash to want.
func (n *Node) fetchIPXEFile(ctx context.Context, dir, name string, want registry.IPXEBinary) (err error) {
	a, err := n.assets.Blob(ctx, want.Digest)
	if err != nil {
		return fmt.Errorf("iPXE binary %s (%s): %w", name, want.Digest, err)
	}
	defer a.Close()

	f, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}

	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name()) // never kept
		}
	}()

	h := sha256.New()

	got, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(a.Content(), want.Size+1))
	if err != nil {
		return fmt.Errorf("iPXE binary %s (%s): %w", name, want.Digest, err)
	}

	if d := digest.OfHash(h); d != want.Digest || got != want.Size {
		return fmt.Errorf("iPXE binary %s from the cluster: %d bytes hashing to %s, want %d bytes of %s: not written",
			name, got, d, want.Size, want.Digest)
	}

	if err := f.Sync(); err != nil {
		return err
	}

	if err := f.Close(); err != nil {
		return err
	}

	if err := os.Chmod(f.Name(), 0o644); err != nil { //nolint:gosec // handed to any machine that boots: public
		return err
	}

	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}

	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close() // read-only

	return d.Sync()
}

// runNetbootWhenReady waits for the iPXE binaries, then makes and runs the network-boot server; errors go to errc
// as the server's own would (nothing is sent when ctx ends first).
func (n *Node) runNetbootWhenReady(ctx context.Context, errc chan<- error) {
	if err := n.awaitIPXE(ctx); err != nil {
		return // ctx ended
	}

	srv, err := n.newNetboot()
	if err != nil {
		errc <- err

		return
	}

	errc <- srv.Run(ctx)
}
