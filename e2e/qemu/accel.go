package qemu

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// AccelEnv forces the accelerator ("kvm" or "tcg") instead of probing.
const AccelEnv = "EDGEFACTORY_QEMU_ACCEL"

// kvmProbeTimeout bounds the trial KVM boot: a working KVM boots the busybox initramfs in a second or two, a
// broken one (nested KVM that hangs in early boot) never does.
const kvmProbeTimeout = 20 * time.Second

// Accel is the accelerator the suite boots with, and why it was chosen.
type Accel struct {
	Name string // "kvm" or "tcg"
	Why  string
}

// BootTimeoutEnv overrides the per-boot timeout (a Go duration, e.g. "5m" on a very slow machine).
const BootTimeoutEnv = "EDGEFACTORY_BOOT_TIMEOUT"

// BootTimeout is a generous bound for one boot (firmware, boot loader, kernel, init) with this accelerator, unless
// BootTimeoutEnv says otherwise: TCG boots take 10-50 s on 2 busy cores.
func (a Accel) BootTimeout() (time.Duration, error) {
	if v := os.Getenv(BootTimeoutEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("$%s=%q: want a positive duration such as 3m", BootTimeoutEnv, v)
		}

		return d, nil
	}

	if a.Name == "kvm" {
		return 60 * time.Second, nil
	}

	return 180 * time.Second, nil
}

// AccelFromEnv returns the accelerator forced by AccelEnv, if it is set.
func AccelFromEnv() (Accel, bool, error) {
	switch v := strings.TrimSpace(os.Getenv(AccelEnv)); v {
	case "":
		return Accel{}, false, nil
	case "kvm", "tcg":
		return Accel{Name: v, Why: "$" + AccelEnv + "=" + v}, true, nil
	default:
		return Accel{}, false, fmt.Errorf("$%s=%q: want kvm or tcg", AccelEnv, v)
	}
}

// ProbeAccel chooses KVM only when it really runs these guests: /dev/kvm can exist and still fail them (nested
// KVM here hangs or reports "emulation failure"), so it boots kernel and initramfs (which must print the synthetic
// init's report) under KVM once, and falls back to TCG otherwise.
func ProbeAccel(ctx context.Context, kernel, initramfs string) Accel {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return Accel{Name: "tcg", Why: fmt.Sprintf("no usable /dev/kvm (%v)", err)}
	}

	f.Close() // only checked that it opens

	res, err := Boot(ctx, Guest{
		Accel:   "kvm",
		Media:   []string{"-kernel", kernel, "-initrd", initramfs, "-append", "console=ttyS0"},
		Timeout: kvmProbeTimeout,
	})
	if err != nil {
		return Accel{Name: "tcg", Why: "/dev/kvm exists but a trial KVM boot failed: " + err.Error()}
	}

	return Accel{Name: "kvm", Why: "a trial KVM boot printed the report in " + res.Elapsed.Round(time.Millisecond).String()}
}
