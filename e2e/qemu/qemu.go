// Package qemu runs a QEMU guest until the synthetic Talos init reports on the serial console, and chooses the
// accelerator: the runner the boot suite (e2e/boot) and the network-boot lab (e2e/netns) share. It starts nothing
// by itself; a guest that never reports is killed at its timeout.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// QEMUBinary is the emulator the runner starts.
const QEMUBinary = "qemu-system-x86_64"

// Firmware files of Debian's ovmf package (4 MiB flash layout).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Guest describes one QEMU run. The zero Firmware boots SeaBIOS; Network nil means no network card at all.
type Guest struct {
	Accel    string        // "kvm" or "tcg"
	Firmware *UEFI         // nil: SeaBIOS
	Network  []string      // e.g. -netdev … -device …; nil adds -nic none
	Media    []string      // what to boot: -cdrom …, -drive …, -kernel …
	Timeout  time.Duration // the whole run, firmware included
	// Launcher runs QEMU in its own place and execs it (e.g. ip netns exec <ns>), so the process is QEMU's.
	Launcher []string
	// StopOn are console lines, besides the built-in ones, that end the run early (Result.Stop says which).
	StopOn []string
}

// UEFI is an OVMF firmware with its own writable copy of the variable store (OVMF writes boot entries into it, and
// guests must not share one).
type UEFI struct {
	Code, Vars string
}

// NewUEFI copies OVMFVars into dir and returns the firmware using that copy.
func NewUEFI(dir string) (*UEFI, error) {
	vars, err := os.ReadFile(OVMFVars)
	if err != nil {
		return nil, fmt.Errorf("read OVMF variable store: %w", err)
	}

	f, err := os.CreateTemp(dir, "ovmf-vars-*.fd")
	if err != nil {
		return nil, fmt.Errorf("copy OVMF variable store: %w", err)
	}

	if _, err = f.Write(vars); err == nil {
		err = f.Close()
	} else {
		f.Close() // the write error is the one to report
	}

	if err != nil {
		return nil, fmt.Errorf("copy OVMF variable store: %w", err)
	}

	return &UEFI{Code: OVMFCode, Vars: f.Name()}, nil
}

func (u *UEFI) args() []string {
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + u.Code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + u.Vars,
	}
}

// Args is the full QEMU command line (without the binary).
func (g Guest) Args() []string {
	// -nographic puts the serial port on stdio, where Boot reads it; -no-reboot turns a guest reset (a failed
	// boot, a kernel panic with panic=N) into an exit instead of a loop.
	args := []string{"-accel", g.Accel, "-m", "1024", "-nographic", "-no-reboot"}
	if g.Firmware != nil {
		args = append(args, g.Firmware.args()...)
	}

	if g.Network == nil {
		args = append(args, "-nic", "none")
	} else {
		args = append(args, g.Network...)
	}

	return append(args, g.Media...)
}

// Result is what a run left behind.
type Result struct {
	Console string        // everything QEMU wrote: the serial console and QEMU's own messages
	Elapsed time.Duration // from start to the poweroff marker or QEMU's exit
	Stop    string        // the stop line that ended the run, if one did
	// KernelAt is when the console first showed KernelMarker (zero if it never did).
	KernelAt time.Time
}

// KernelMarker starts the kernel's first console line: with console=ttyS0 the kernel replays its log from this
// line when the serial console registers, so it is the first sign on the console that the kernel runs.
const KernelMarker = "Linux version "

// Report parses the synthetic init's report out of the console.
func (r Result) Report() (synthetic.BootReport, bool) { return synthetic.ParseBootLog(r.Console) }

// stopLines end a run early: the guest has nothing more to say. The first is success, the others are failures that
// would otherwise sit until the timeout (a paused KVM guest, SeaBIOS retrying every minute, a panicked kernel).
var stopLines = []string{
	synthetic.PoweroffMarker,
	"KVM internal error",
	"No bootable device",
	"Kernel panic - not syncing",
}

// poweroffGrace is how long QEMU may take to exit by itself after the guest said it powers off.
const poweroffGrace = 3 * time.Second

// Boot runs the guest until the synthetic init reports its poweroff, QEMU exits, a stop line shows a dead end, or
// the timeout passes (QEMU is then killed). It fails unless the complete report (boot marker through poweroff
// marker) was printed; the console is returned either way, for the failure message.
func Boot(ctx context.Context, g Guest) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()

	con := newConsole(g.StopOn...)
	argv := append(append([]string{}, g.Launcher...), QEMUBinary)
	argv = append(argv, g.Args()...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = con
	cmd.Stderr = con
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start %s: %w", QEMUBinary, err)
	}

	exited := make(chan error, 1)

	go func() { exited <- cmd.Wait() }()

	var waitErr error

	select {
	case waitErr = <-exited:
	case <-con.stopped:
		select {
		case waitErr = <-exited:
		case <-time.After(poweroffGrace):
			cmd.Process.Kill() //nolint:errcheck // it may just have exited; Wait tells
			waitErr = <-exited
		}
	}

	res := Result{Console: con.String(), Elapsed: time.Since(start), Stop: con.reason(), KernelAt: con.kernelAt()}

	report, found := res.Report()

	switch {
	case found && report.PoweredOff:
		return res, nil
	case con.reason() != "" && con.reason() != synthetic.PoweroffMarker:
		return res, fmt.Errorf("guest stopped after %s: console says %q", res.Elapsed.Round(time.Second), con.reason())
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("no poweroff marker within %s (boot marker seen: %t); QEMU killed", g.Timeout, found)
	default:
		return res, fmt.Errorf("QEMU exited after %s before the poweroff marker (boot marker seen: %t): %w",
			res.Elapsed.Round(time.Second), found, waitErr)
	}
}

// console collects QEMU's output, notes when the kernel's first line appears and closes stopped at the first stop
// line.
type console struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	lines   []string // stop lines
	longest int      // of lines and KernelMarker: the overlap kept for lines split across writes
	scanned int      // bytes already searched (minus that overlap)
	stop    string
	kernel  time.Time
	stopped chan struct{}
}

func newConsole(extra ...string) *console {
	c := &console{lines: append(append([]string{}, stopLines...), extra...), stopped: make(chan struct{})}

	c.longest = len(KernelMarker)
	for _, l := range c.lines {
		c.longest = max(c.longest, len(l))
	}

	return c
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.buf.Write(p)

	from := max(0, c.scanned-c.longest)
	fresh := c.buf.Bytes()[from:]

	if c.kernel.IsZero() && bytes.Contains(fresh, []byte(KernelMarker)) {
		c.kernel = time.Now()
	}

	if c.stop == "" {
		for _, line := range c.lines {
			if bytes.Contains(fresh, []byte(line)) {
				c.stop = line
				close(c.stopped)

				break
			}
		}
	}

	c.scanned = c.buf.Len()

	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.buf.String()
}

func (c *console) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.stop
}

func (c *console) kernelAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.kernel
}

// escapes matches terminal control sequences firmware and boot loaders draw menus with.
var escapes = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-_c])`)

// Readable returns the last limit bytes of a console transcript without terminal escapes and control characters, for
// test failure messages.
func Readable(console string, limit int) string {
	s := escapes.ReplaceAllString(console, "")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}

		return -1
	}, s)

	if len(s) > limit {
		s = "[… " + strconv.Itoa(len(s)-limit) + " bytes before this cut …]" + s[len(s)-limit:]
	}

	return s
}
