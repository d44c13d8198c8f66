// Package hosttools makes the host's command-line tools speak what the Talos v1.13 imager expects on Debian 12, and
// makes their outputs reproducible.
//
// The imager runs mkfs.xfs, mkfs.vfat, mksquashfs, cpio, qemu-img, tar and others found on PATH. Where Debian 12's
// version is too old, absent, or stamps the clock into its output, the edgefactory binary itself stands in: it is a
// multi-call binary, and when started under an adapter's name (through a link made by Install) it translates the
// arguments and execs the real tool. RunIfAdapter must therefore be the first call in main and in the TestMain of
// packages that build images.
//
// The translations (each adapter logs one line to stderr naming what it changed, nothing when it changed nothing):
//   - mkfs.xfs: "-c options=F" dropped when F does not exist; "-p file=X" → "-p X" when xfsprogs < 6.5; with
//     SOURCE_DATE_EPOCH set, run under libfaketime with the clock stopped at it (xfsprogs 6.1 stamps every inode
//     with the clock), or a warning that disk images will differ when libfaketime is missing.
//   - mkfs.vfat: "-F 32" dropped when the target is a file smaller than 64 MiB (mtools 4.0.32 cannot read it).
//   - mksquashfs: the system one if ≥ 4.6, else the one at $EDGEFACTORY_MKSQUASHFS or DefaultMksquashfsPath if it
//     runs and is ≥ 4.6, else the system 4.5 without "-xattrs-exclude" and pseudo-xattr "-p" definitions, plus
//     "-no-xattrs" (SELinux labels lost; logged as a warning).
//   - cpio: with SOURCE_DATE_EPOCH set, an archive's file list is read from stdin, each listed path's mtime set to
//     SOURCE_DATE_EPOCH, and the same list handed to the real cpio (its --reproducible keeps mtimes).
//   - qemu-img: with SOURCE_DATE_EPOCH set, "convert -O vpc|vmdk" runs as a child and the output's VHD footer
//     timestamp and unique id, or VMDK CID, are then replaced by values derived from SOURCE_DATE_EPOCH.
//   - tar: with SOURCE_DATE_EPOCH set, archives are created with it as every mtime and owner 0:0 (TAR_OPTIONS).
//   - vmdk-convert SRC DST: a real open-vmdk vmdk-convert if present, else
//     "qemu-img convert -f raw -O vmdk -o subformat=streamOptimized SRC DST"; the CID normalised as for qemu-img.
//   - xorrisofs: the real one if present, else "xorriso -as mkisofs".
//
// Guarantee: every tool the imager needs is either used as is, adapted with one of these translations, or
// reported missing by Check before any build starts; with SOURCE_DATE_EPOCH set and libfaketime installed, no
// adapted tool puts the clock or a random id into its output.
// An adapter never runs itself: it skips every PATH entry that is the running executable, and refuses to start
// when its own exec comes back to it.
package hosttools

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
)

// loopGuardEnv is set to the adapter's name just before it execs the real tool. Seeing its own name there at start
// means the "real" tool was another copy of this binary: stop instead of looping.
const loopGuardEnv = "EDGEFACTORY_HOSTTOOLS_EXEC"

// sbinDirs are searched after PATH: the imager's mkfs.* and depmod live there, and a non-root PATH omits them.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// plan is an adapter's decision: the program to exec, its arguments (argv[0] excluded) and what was changed.
type plan struct {
	path    string
	args    []string
	env     []string     // KEY=VALUE set for the tool, replacing inherited values
	stdin   []byte       // when not nil, what the tool reads on stdin instead of the adapter's (already read) stdin
	after   func() error // when set, the tool runs as a child and after runs once it has succeeded
	changes []string
	warn    bool // the change loses something: log at warning level
}

// adapter translates one tool's invocation.
type adapter struct {
	name string
	plan func(ctx context.Context, h *host, args []string) (plan, error)
}

// adapters are the tool names Install links to this executable.
var adapters = []adapter{
	{name: "cpio", plan: planCpio},
	{name: "mkfs.xfs", plan: planXFS},
	{name: "mkfs.vfat", plan: planVFAT},
	{name: "mksquashfs", plan: planMksquashfs},
	{name: "qemu-img", plan: planQemuImg},
	{name: "tar", plan: planTar},
	{name: "vmdk-convert", plan: planVMDK},
	{name: "xorrisofs", plan: planXorrisofs},
}

// Adapters returns the names of the tools this binary can stand in for.
func Adapters() []string {
	names := make([]string, len(adapters))
	for i, a := range adapters {
		names[i] = a.name
	}

	return names
}

func findAdapter(name string) (adapter, bool) {
	for _, a := range adapters {
		if a.name == name {
			return a, true
		}
	}

	return adapter{}, false
}

// RunIfAdapter runs the adapter named by filepath.Base(os.Args[0]) and never returns in that case: it execs the real
// tool, or exits with status 127 after printing why it could not. Under any other name it returns at once.
func RunIfAdapter() {
	name := filepath.Base(os.Args[0])

	a, ok := findAdapter(name)
	if !ok {
		return
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: dropTime}))

	err := run(context.Background(), a, os.Args[1:], logger)
	// run returns only on failure.
	logger.Error("edgefactory hosttools adapter failed", "tool", name, "err", err)
	os.Exit(127)
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}

	return a
}

func run(ctx context.Context, a adapter, args []string, logger *slog.Logger) error {
	if os.Getenv(loopGuardEnv) == a.name {
		return fmt.Errorf("adapter loop: %s was started again by its own adapter (a copy of edgefactory named %s on PATH?)",
			a.name, a.name)
	}

	h, err := newHost()
	if err != nil {
		return err
	}

	p, err := a.plan(ctx, h, args)
	if err != nil {
		return err
	}

	if len(p.changes) > 0 {
		level := slog.LevelInfo
		if p.warn {
			level = slog.LevelWarn
		}

		logger.Log(ctx, level, "edgefactory hosttools adapter", "tool", a.name, "exec", p.path,
			"changed", strings.Join(p.changes, "; "))
	}

	if p.stdin != nil {
		if err := replaceStdin(p.stdin); err != nil {
			return err
		}
	}

	env := execEnv(os.Environ(), a.name, p.env)
	if p.after != nil {
		return runThenExit(ctx, p, env)
	}

	argv := append([]string{filepath.Base(p.path)}, p.args...)
	if err := syscall.Exec(p.path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", p.path, err)
	}

	return nil
}

// runThenExit runs p's tool as a child with the adapter's stdio, then p.after, and exits with the tool's status;
// it returns only when the tool could not start or after failed. The child dies with the adapter: a build that
// kills the adapter on timeout leaves nothing running.
func runThenExit(ctx context.Context, p plan, env []string) error {
	cmd := exec.CommandContext(ctx, p.path, p.args...)
	cmd.Args[0] = filepath.Base(p.path)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	// Pdeathsig fires when the thread that started the child exits: keep this goroutine on its thread.
	runtime.LockOSThread()

	err := cmd.Run()

	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(max(exit.ExitCode(), 1)) // killed by a signal: -1
	}

	if err != nil {
		return fmt.Errorf("run %s: %w", p.path, err)
	}

	if err := p.after(); err != nil {
		return err
	}

	os.Exit(0)

	return nil
}

// execEnv is environ with the loop guard set to name and each KEY=VALUE of set replacing KEY's inherited value.
func execEnv(environ []string, name string, set []string) []string {
	env := append([]string{loopGuardEnv + "=" + name}, set...)
	replaced := func(kv string) bool {
		key, _, _ := strings.Cut(kv, "=")
		if key == loopGuardEnv {
			return true
		}

		for _, s := range set {
			if k, _, _ := strings.Cut(s, "="); k == key {
				return true
			}
		}

		return false
	}

	for _, kv := range environ {
		if !replaced(kv) {
			env = append(env, kv)
		}
	}

	return env
}

// host finds real tools: on PATH, then in sbinDirs, never the running executable.
type host struct {
	self     fs.FileInfo
	pathList string
}

func newHost() (*host, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate own executable: %w", err)
	}

	self, err := os.Stat(exe)
	if err != nil {
		return nil, fmt.Errorf("stat own executable: %w", err)
	}

	return &host{self: self, pathList: os.Getenv("PATH")}, nil
}

// errNotFound says a tool is on neither PATH nor the sbin directories.
var errNotFound = errors.New("not found on PATH or in /usr/sbin, /sbin")

// lookPath returns the first executable named name that is not this binary (so not one of its adapter links).
func (h *host) lookPath(name string) (string, error) {
	dirs := append(filepath.SplitList(h.pathList), sbinDirs...)

	for _, dir := range dirs {
		// Like exec.LookPath since Go 1.19, never run a tool found relative to the working directory.
		if !filepath.IsAbs(dir) {
			continue
		}

		p := filepath.Join(dir, name)
		if h.usable(p) {
			return p, nil
		}
	}

	return "", fmt.Errorf("%s: %w", name, errNotFound)
}

// usable reports whether p is an executable regular file other than this binary.
func (h *host) usable(p string) bool {
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return false
	}

	return !os.SameFile(st, h.self)
}

// xfsVersionRE matches "mkfs.xfs version 6.1.0".
var xfsVersionRE = regexp.MustCompile(`version (\d+\.\d+(?:\.\d+)?)`)

func planXFS(ctx context.Context, h *host, args []string) (plan, error) {
	tool, err := h.lookPath("mkfs.xfs")
	if err != nil {
		return plan{}, err
	}

	// xfsprogs 6.5 brought "-p file="; an unknown version is treated as old, the bare form being the historic one.
	oldProto := !atLeast(toolVersion(ctx, tool, []string{"-V"}, xfsVersionRE), 6, 5)

	out, changes := xfsArgs(args, func(p string) bool {
		_, err := os.Stat(p)

		return err == nil
	}, oldProto)

	p := plan{path: tool, args: out, changes: changes}

	// xfsprogs 6.1 (Debian 12) stamps every inode with the clock, whatever SOURCE_DATE_EPOCH says; the stopped clock
	// is harmless to versions that would honour it.
	if err := underFaketime(&p, "mkfs.xfs stamps inode times with the clock"); err != nil {
		return plan{}, err
	}

	return p, nil
}

func planVFAT(_ context.Context, h *host, args []string) (plan, error) {
	tool, err := h.lookPath("mkfs.vfat")
	if err != nil {
		return plan{}, err
	}

	out, changes := vfatArgs(args, regularFileSize)

	return plan{path: tool, args: out, changes: changes}, nil
}

func regularFileSize(p string) (int64, bool) {
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return 0, false
	}

	return st.Size(), true
}

// planVMDK prefers a real open-vmdk vmdk-convert and falls back to qemu-img.
func planVMDK(_ context.Context, h *host, args []string) (plan, error) {
	if tool, err := h.lookPath("vmdk-convert"); err == nil {
		p := plan{path: tool, args: args}
		if len(args) == 2 {
			return p, normalizeOutput(&p, "vmdk", args[1])
		}

		return p, nil
	}

	qemuImg, err := h.lookPath("qemu-img")
	if err != nil {
		return plan{}, fmt.Errorf("vmdk-convert and qemu-img (qemu-utils) missing: %w", err)
	}

	out, err := vmdkArgs(args)
	if err != nil {
		return plan{}, err
	}

	p := plan{path: qemuImg, args: out, changes: []string{"vmdk-convert SRC DST -> qemu-img " + strings.Join(out, " ")}}

	return p, normalizeAfter(&p, out)
}

// planXorrisofs uses a real xorrisofs unchanged, else xorriso's mkisofs personality.
func planXorrisofs(_ context.Context, h *host, args []string) (plan, error) {
	if tool, err := h.lookPath("xorrisofs"); err == nil {
		return plan{path: tool, args: args}, nil
	}

	xorriso, err := h.lookPath("xorriso")
	if err != nil {
		return plan{}, fmt.Errorf("xorrisofs and xorriso (package xorriso) missing: %w", err)
	}

	return plan{path: xorriso, args: xorrisofsArgs(args), changes: []string{"xorrisofs -> xorriso -as mkisofs"}}, nil
}

// versionOutput runs a tool's version query and returns its combined output (some print it on stderr, some exit
// non-zero after printing it, so the exit status is not judged when there is output).
func versionOutput(ctx context.Context, path string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if len(out) == 0 && err != nil {
		return "", fmt.Errorf("run %s %s: %w", path, strings.Join(args, " "), err)
	}

	return string(out), nil
}
