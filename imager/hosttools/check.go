package hosttools

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// Tool is one thing the imager needs from the host: a command, or a directory of files (GRUB's platform modules).
type Tool struct {
	Name        string         // command name the imager runs, or a label for a directory
	Package     string         // Debian 12 package providing it
	Required    bool           // a build kind fails without it
	UsedFor     string         // which output kinds need it
	VersionArgs []string       // how to ask its version
	VersionRE   *regexp.Regexp // first submatch is the version; nil means the first dotted number
	Dir         string         // when set, the directory that must exist instead of a command
	File        bool           // a library the adapters load, found by name (Check knows where), not a command
	Repro       bool           // builds work without it, but some outputs then differ from build to build
}

// Tools is what the Talos v1.13 imager runs on the host (see docs/host-tools.md), kept as data so doctor and tests
// share one list.
var Tools = []Tool{
	{Name: "mksquashfs", Package: "squashfs-tools (≥ 4.6: trixie's, by make deps)", Required: true, UsedFor: "extensions", VersionArgs: []string{"-version"}},
	{Name: "unsquashfs", Package: "squashfs-tools", Required: true, UsedFor: "kernel-module extensions", VersionArgs: []string{"-version"}},
	{Name: "depmod", Package: "kmod", Required: true, UsedFor: "kernel-module extensions", VersionArgs: []string{"--version"}, VersionRE: regexp.MustCompile(`version (\d+)`)},
	{Name: "cpio", Package: "cpio", Required: true, UsedFor: "extensions", VersionArgs: []string{"--version"}},
	{Name: "zstd", Package: "zstd", Required: true, UsedFor: "extensions, .zst outputs", VersionArgs: []string{"--version"}},
	{Name: "xz", Package: "xz-utils", Required: true, UsedFor: "extensions (Talos < 1.8), .xz outputs", VersionArgs: []string{"--version"}},
	{Name: "pigz", Package: "pigz", Required: true, UsedFor: ".gz and .tar.gz outputs", VersionArgs: []string{"--version"}},
	{Name: "tar", Package: "tar", Required: true, UsedFor: ".tar.gz outputs, ova", VersionArgs: []string{"--version"}},
	{Name: "mkfs.vfat", Package: "dosfstools", Required: true, UsedFor: "iso, disk images", VersionArgs: []string{"--help"}, VersionRE: regexp.MustCompile(`mkfs\.fat (\d+\.\d+[0-9.]*)`)},
	{Name: "mcopy", Package: "mtools", Required: true, UsedFor: "iso, disk images", VersionArgs: []string{"--version"}},
	{Name: "mformat", Package: "mtools", Required: true, UsedFor: "iso (grub-mkrescue)", VersionArgs: []string{"--version"}},
	{Name: "grub-mkrescue", Package: "grub-common", Required: true, UsedFor: "iso (BIOS)", VersionArgs: []string{"--version"}},
	{Name: "grub-mkimage", Package: "grub-common", Required: true, UsedFor: "disk images (GRUB)", VersionArgs: []string{"--version"}},
	{Name: "grub i386-pc", Package: "grub-pc-bin", Required: true, UsedFor: "iso, disk images (BIOS)", Dir: "/usr/lib/grub/i386-pc"},
	{Name: "grub x86_64-efi", Package: "grub-efi-amd64-bin", Required: true, UsedFor: "amd64 disk images (GRUB)", Dir: "/usr/lib/grub/x86_64-efi"},
	{Name: "grub arm64-efi", Package: "grub-efi-arm64-bin", UsedFor: "arm64 disk images (GRUB)", Dir: "/usr/lib/grub/arm64-efi"},
	{Name: "xorriso", Package: "xorriso", Required: true, UsedFor: "iso (grub-mkrescue)", VersionArgs: []string{"-version"}},
	{Name: "xorrisofs", Package: "xorriso", Required: true, UsedFor: "iso", VersionArgs: []string{"-version"}},
	{Name: "mkfs.xfs", Package: "xfsprogs", Required: true, UsedFor: "disk images", VersionArgs: []string{"-V"}, VersionRE: xfsVersionRE},
	{Name: "qemu-img", Package: "qemu-utils", Required: true, UsedFor: "qcow2, vhd, ova", VersionArgs: []string{"--version"}},
	{Name: "vmdk-convert", Package: "qemu-utils (open-vmdk is not in Debian 12)", Required: true, UsedFor: "ova", VersionArgs: []string{"--version"}},
	{Name: "libfaketime", Package: FaketimePackage, UsedFor: "reproducible disk images (mkfs.xfs at SOURCE_DATE_EPOCH)", File: true, Repro: true},
	{Name: "busybox", Package: "busybox-static", UsedFor: "synthetic release initramfs", VersionArgs: []string{"--help"}},
}

// Status is how a tool will be used.
type Status string

// The statuses Check reports.
const (
	StatusOK      Status = "ok"      // used as is
	StatusAdapted Status = "adapted" // an adapter translates its arguments or picks another binary (Why says how)
	StatusMissing Status = "missing" // not found (Package says what to install)
)

// ToolStatus is Check's finding for one Tool.
type ToolStatus struct {
	Tool
	Status  Status
	Path    string // what will actually run (for vmdk-convert via qemu-img: qemu-img)
	Version string // of the program at Path
	Why     string // for adapted: the translation; for missing: what to install
	// Degraded: the tool runs, but what it makes lacks something a proper one gives (an older mksquashfs drops the
	// extensions' SELinux labels), so this host's builds differ from the other members'.
	Degraded bool
}

// Report is the state of every Tool.
type Report struct {
	Tools []ToolStatus
}

// OK is false when a required tool is missing.
func (r Report) OK() bool {
	return len(r.MissingRequired()) == 0
}

// MissingRequired lists the required tools that are missing.
func (r Report) MissingRequired() []ToolStatus {
	var missing []ToolStatus

	for _, t := range r.Tools {
		if t.Required && t.Status == StatusMissing {
			missing = append(missing, t)
		}
	}

	return missing
}

// MissingForReproducibility lists the missing tools without which builds still work but some outputs differ
// between builds (and so between nodes): worth one warning at startup.
func (r Report) MissingForReproducibility() []ToolStatus {
	var missing []ToolStatus

	for _, t := range r.Tools {
		if t.Repro && t.Status == StatusMissing {
			missing = append(missing, t)
		}
	}

	return missing
}

// Degraded lists the tools that run but make less than a proper one would (ToolStatus.Degraded): worth a warning
// at every start, since nothing else tells an operator why this host's builds differ.
func (r Report) Degraded() []ToolStatus {
	var degraded []ToolStatus

	for _, t := range r.Tools {
		if t.Degraded {
			degraded = append(degraded, t)
		}
	}

	return degraded
}

// Check finds every Tool as the adapters would (PATH, then /usr/sbin and /sbin, never this executable's adapter
// links), asks each its version and says whether it is used as is, adapted, or missing. It runs each tool once
// with a version flag and does not change anything.
func Check(ctx context.Context) Report {
	h, err := newHost()
	if err != nil {
		// Without our own identity adapter links cannot be told apart; report everything as unknown-missing.
		report := Report{}
		for _, t := range Tools {
			report.Tools = append(report.Tools, ToolStatus{Tool: t, Status: StatusMissing, Why: err.Error()})
		}

		return report
	}

	report := Report{Tools: make([]ToolStatus, 0, len(Tools))}
	for _, t := range Tools {
		report.Tools = append(report.Tools, checkTool(ctx, h, t))
	}

	return report
}

func checkTool(ctx context.Context, h *host, t Tool) ToolStatus {
	s := ToolStatus{Tool: t}

	switch {
	case t.Dir != "":
		checkDir(&s)
	case t.Name == "libfaketime":
		checkFaketime(&s)
	case t.Name == "mksquashfs":
		checkMksquashfs(ctx, h, &s)
	case t.Name == "vmdk-convert":
		checkVMDK(ctx, h, &s)
	case t.Name == "xorrisofs":
		checkXorrisofs(ctx, h, &s)
	default:
		locate(ctx, h, &s, t.Name, t.VersionArgs, t.VersionRE)
	}

	if s.Status != StatusMissing {
		adaptedWhy(&s)
	}

	return s
}

func checkFaketime(s *ToolStatus) {
	lib := findFaketime()
	if lib == "" {
		s.Status, s.Why = StatusMissing, fmt.Sprintf("not found: install %s, or disk images differ between builds "+
			"(mkfs.xfs stamps the clock)", s.Package)

		return
	}

	s.Status, s.Path = StatusOK, lib
}

func checkDir(s *ToolStatus) {
	if st, err := os.Stat(s.Dir); err != nil || !st.IsDir() {
		s.Status, s.Why = StatusMissing, fmt.Sprintf("%s missing: install %s", s.Dir, s.Package)

		return
	}

	s.Status, s.Path = StatusOK, s.Dir
}

// locate fills Path and Version from the first usable name on the search path, or marks s missing.
func locate(ctx context.Context, h *host, s *ToolStatus, name string, args []string, re *regexp.Regexp) bool {
	p, err := h.lookPath(name)
	if err != nil {
		s.Status, s.Why = StatusMissing, fmt.Sprintf("%s not found: install %s", name, s.Package)

		return false
	}

	s.Status, s.Path, s.Version = StatusOK, p, toolVersion(ctx, p, args, re)

	return true
}

func toolVersion(ctx context.Context, path string, args []string, re *regexp.Regexp) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	out, err := versionOutput(ctx, path, args...)
	if err != nil {
		return ""
	}

	return extractVersion(out, re)
}

// adaptedWhy marks the tools whose adapter changes arguments on this host.
func adaptedWhy(s *ToolStatus) {
	switch s.Name {
	case "mkfs.xfs":
		// Only xfsprogs < 6.5 needs "-p file=" rewritten ("-c options=F" is dropped on any host lacking F); the clock
		// is stopped on any host that has libfaketime.
		var why []string
		if !atLeast(s.Version, 6, 5) {
			why = append(why, fmt.Sprintf("xfsprogs %s < 6.5: '-p file=X' -> '-p X'; '-c options=F' dropped when "+
				"F is missing", orNone(s.Version)))
		}

		// Without libfaketime nothing changes here; its own row says what that costs.
		if lib := findFaketime(); lib != "" {
			why = append(why, "clock stopped at SOURCE_DATE_EPOCH by "+lib+" (inode times)")
		}

		if len(why) > 0 {
			s.Status, s.Why = StatusAdapted, strings.Join(why, "; ")
		}
	case "tar":
		s.Status = StatusAdapted
		s.Why = "with SOURCE_DATE_EPOCH set, archives are created with it as every mtime, owner 0:0 (TAR_OPTIONS)"
	case "qemu-img":
		s.Status = StatusAdapted
		s.Why = "with SOURCE_DATE_EPOCH set, vpc and vmdk outputs get a fixed timestamp and derived ids instead of " +
			"the clock and random ones"
	case "cpio":
		// Adapted on every host: GNU cpio has no option to record a fixed mtime.
		s.Status = StatusAdapted
		s.Why = "with SOURCE_DATE_EPOCH set, archived files' mtimes are set to it first (--reproducible keeps them)"
	case "mkfs.vfat":
		// Adapted on every host: the FAT type is chosen by size, not by tool version (mtools 4.0.32 is the reason).
		s.Status = StatusAdapted
		s.Why = "'-F 32' dropped for images < 64 MiB (FAT12/16): mtools 4.0.32 cannot read a small FAT32"
	}
}

func checkMksquashfs(ctx context.Context, h *host, s *ToolStatus) {
	choice, err := chooseMksquashfs(ctx, h)
	if err != nil {
		s.Status, s.Why = StatusMissing, fmt.Sprintf("%v: install %s", err, s.Package)

		return
	}

	s.Path, s.Version, s.Status = choice.path, choice.version, StatusOK
	if choice.why != "" {
		s.Status, s.Why = StatusAdapted, choice.why
	}

	s.Degraded = choice.translate
}

func checkVMDK(ctx context.Context, h *host, s *ToolStatus) {
	const cid = "with SOURCE_DATE_EPOCH set, the random VMDK CID is replaced by a derived one"

	if locate(ctx, h, s, "vmdk-convert", s.VersionArgs, s.VersionRE) {
		s.Status, s.Why = StatusAdapted, cid

		return
	}

	if !locate(ctx, h, s, "qemu-img", []string{"--version"}, nil) {
		s.Why = "neither vmdk-convert nor qemu-img found: install qemu-utils"

		return
	}

	s.Status = StatusAdapted
	s.Why = "vmdk-convert SRC DST -> qemu-img convert -f raw -O vmdk -o subformat=streamOptimized SRC DST; " + cid
}

func checkXorrisofs(ctx context.Context, h *host, s *ToolStatus) {
	if locate(ctx, h, s, "xorrisofs", s.VersionArgs, s.VersionRE) {
		return
	}

	if !locate(ctx, h, s, "xorriso", s.VersionArgs, s.VersionRE) {
		s.Why = "neither xorrisofs nor xorriso found: install xorriso"

		return
	}

	s.Status, s.Why = StatusAdapted, "xorrisofs -> xorriso -as mkisofs"
}

// WriteTable prints the report as an aligned table: tool, status, version, path, and why for adapted or missing
// tools.
func (r Report) WriteTable(w io.Writer) error {
	var buf bytes.Buffer

	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tSTATUS\tVERSION\tPATH\tWHY")

	for _, s := range r.Tools {
		status := string(s.Status)
		if s.Status == StatusMissing && !s.Required {
			status += " (optional)"
		}

		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, status, dash(s.Version), dash(s.Path), s.Why)
	}

	if err := tw.Flush(); err != nil {
		return fmt.Errorf("format host tools report: %w", err)
	}

	// Rows without a WHY end in padding: trim it.
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if _, err := io.WriteString(w, strings.TrimRight(line, " ")+"\n"); err != nil {
			return fmt.Errorf("write host tools report: %w", err)
		}
	}

	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}
