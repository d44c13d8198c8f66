package hosttools

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Install makes dir hold one symlink per adapter, named after the tool and pointing to this executable. Links are
// replaced atomically (a build running meanwhile sees the old or the new one), and other symlinks in dir, left by
// adapters that no longer exist, are removed: dir belongs to hosttools. Put dir first on PATH with PrependPath.
func Install(dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install adapters: locate own executable: %w", err)
	}

	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install adapters: %w", err)
	}

	for _, name := range Adapters() {
		if err := link(dir, name, exe); err != nil {
			return fmt.Errorf("install adapter %s: %w", name, err)
		}
	}

	return removeStale(dir)
}

func link(dir, name, target string) error {
	p := filepath.Join(dir, name)
	if cur, err := os.Readlink(p); err == nil && cur == target {
		return nil
	}

	tmp := filepath.Join(dir, "."+name+".tmp-"+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)

	if err := os.Symlink(target, tmp); err != nil {
		return err
	}

	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)

		return err
	}

	return nil
}

func removeStale(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("install adapters: %w", err)
	}

	names := Adapters()

	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 || slices.Contains(names, e.Name()) {
			continue
		}

		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("install adapters: remove stale %s: %w", e.Name(), err)
		}
	}

	return nil
}

// PrependPath puts dir first on this process's PATH, which the imager's tools inherit (it execs them with the
// process environment). It also appends /usr/local/sbin, /usr/sbin and /sbin when missing: the imager runs depmod
// and mkfs.* from there, and a non-root PATH lacks them. Call it once at startup, before builds run: it changes the
// environment of the whole process.
func PrependPath(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("prepend %s to PATH: %w", dir, err)
	}

	return os.Setenv("PATH", withAdapterDir(os.Getenv("PATH"), abs))
}

// withAdapterDir returns pathList with dir first (once) and sbinDirs present.
func withAdapterDir(pathList, dir string) string {
	entries := []string{dir}

	for _, e := range filepath.SplitList(pathList) {
		if e != dir && e != "" {
			entries = append(entries, e)
		}
	}

	for _, s := range sbinDirs {
		if !slices.Contains(entries, s) {
			entries = append(entries, s)
		}
	}

	return strings.Join(entries, string(os.PathListSeparator))
}
