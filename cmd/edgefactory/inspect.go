package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/edgefactory/edgefactory/imager/inspect"
)

// newInspectCmd tells an operator what downloaded boot assets hold, read with imager/inspect: nothing is mounted,
// extracted or run. Every file is inspected; the command fails when one of them is not a sound asset.
func newInspectCmd() *cobra.Command {
	var asJSON bool

	cmd := &cobra.Command{
		Use:   "inspect FILE...",
		Short: "Check boot assets and show what they hold: kind, Talos version, schematic, command line, extensions",
		Long: `Check boot assets and show what they hold. The kind (ISO, UKI, kernel, initramfs, disk image, qcow2, VHD,
VMDK, OVA, installer tarball, possibly compressed with xz, zstd or gzip) comes from the content, not the file name.
Every structure read is checked: checksums, offsets, compression integrity, installer layer digests. Shown as they
apply: Talos version, schematic ID, kernel command line, system extensions, UKI sections and secure boot
signature, El Torito boot entries, partitions, sizes. The files are only read, never mounted or run.

Exits non-zero when a file is unknown or corrupt, saying which and why. --json prints a JSON array with one object
per file (an "error" member for those that failed).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.OutOrStdout(), cmd.ErrOrStderr(), args, asJSON)
		},
	}

	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of reports")

	return cmd
}

// inspectResult is one element of the --json output: the report, and the error when the file failed.
type inspectResult struct {
	inspect.Report
	Error string `json:"error,omitempty"`
}

func runInspect(stdout, stderr io.Writer, paths []string, asJSON bool) error {
	results := make([]inspectResult, 0, len(paths))

	var (
		failed  []error
		printed int
	)

	for _, p := range paths {
		rep, err := inspect.File(p)
		res := inspectResult{Report: rep}

		switch {
		case err != nil:
			failed = append(failed, err)
			res.Error = err.Error()

			if len(paths) > 1 { // a single failure is the command's error
				fmt.Fprintln(stderr, err)
			}
		case !asJSON:
			if printed > 0 {
				fmt.Fprintln(stdout)
			}

			writeReport(stdout, rep)
			printed++
		}

		results = append(results, res)
	}

	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")

		if err := enc.Encode(results); err != nil {
			return err
		}
	}

	switch {
	case len(failed) == 0:
		return nil
	case len(paths) == 1:
		return failed[0]
	default:
		return fmt.Errorf("%d of %d files failed inspection", len(failed), len(paths))
	}
}

var kindNames = map[inspect.Kind]string{
	inspect.KindISO:       "ISO image",
	inspect.KindUKI:       "UKI (unified kernel image)",
	inspect.KindKernel:    "Linux kernel",
	inspect.KindPE:        "EFI executable",
	inspect.KindInitramfs: "initramfs",
	inspect.KindDisk:      "raw disk image",
	inspect.KindQCOW2:     "qcow2 disk image",
	inspect.KindVHD:       "VHD disk image",
	inspect.KindVMDK:      "VMDK disk image",
	inspect.KindOVA:       "OVA (OVF package)",
	inspect.KindInstaller: "installer image tarball",
	inspect.KindTar:       "tar archive",
}

// writeReport prints a report as a few lines: what the file is, then what it boots, then its structure.
func writeReport(w io.Writer, r inspect.Report) {
	head := fmt.Sprintf("%s: %s, %s", r.Path, kindNames[r.Kind], size(r.Size))
	if r.Compression != "" {
		head += fmt.Sprintf(" %s-compressed (%s uncompressed, integrity checked)", r.Compression, size(r.UncompressedSize))
	}

	fmt.Fprintln(w, head)

	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-13s %s\n", label+":", fmt.Sprintf(format, args...))
	}

	switch {
	case r.TalosVersion != "" && r.SchematicID != "":
		line("talos", "%s, schematic %s", r.TalosVersion, r.SchematicID)
	case r.TalosVersion != "":
		line("talos", "%s", r.TalosVersion)
	case r.SchematicID != "":
		line("talos", "schematic %s", r.SchematicID)
	}

	if r.KernelVersion != "" {
		line("kernel", "%s", r.KernelVersion)
	}

	if r.Cmdline != "" {
		line("cmdline", "%s", r.Cmdline)
	}

	if r.Extensions != nil {
		line("extensions", "%s", extensionList(r.Extensions))
	}

	if r.ISO != nil {
		writeISO(line, r.ISO, r.Cmdline)
	}

	if r.Installer != nil {
		i := r.Installer
		line("image", "%s, %s, %d layers (digests verified)", strings.Join(i.Tags, " "), i.Platform, len(i.Layers))
	}

	if r.PE != nil {
		writePE(line, r.PE)
	}

	if r.Initramfs != nil {
		writeInitramfs(line, r.Initramfs)
	}

	if r.OVA != nil {
		line("ova", "descriptor %s, %d files, %d manifest digests verified", r.OVA.Descriptor, len(r.OVA.Entries), r.OVA.Verified)
	}

	if r.Tar != nil {
		writeTar(line, r.Tar)
	}

	if v := r.VirtualDisk; v != nil {
		desc := strings.TrimSpace(v.Format + " " + v.Subformat)
		if v.Path != "" {
			desc = v.Path + ": " + desc
		}

		desc += ", virtual size " + size(v.VirtualSize)

		if v.ClusterSize > 0 {
			unit := " clusters"
			if v.Format == "vmdk" {
				unit = " grains"
			}

			desc += ", " + size(v.ClusterSize) + unit
		}

		for _, kv := range [][2]string{{"compression ", v.Compression}, {"backing file ", v.BackingFile}, {"created by ", v.Creator}} {
			if kv[1] != "" {
				desc += ", " + kv[0] + kv[1]
			}
		}

		line("disk", "%s", desc)
	}

	if r.Disk != nil {
		writeDisk(line, r.Disk)
	}

	for _, n := range r.Notes {
		line("note", "%s", n)
	}
}

type lineFunc func(label, format string, args ...any)

func writeISO(line lineFunc, iso *inspect.ISOInfo, cmdline string) {
	var entries []string

	for _, e := range iso.BootEntries {
		entries = append(entries, e.Platform)
	}

	desc := "El Torito " + strings.Join(entries, ", ")
	if len(entries) == 0 {
		desc = "no El Torito boot catalogue"
	}

	if iso.HybridMBR {
		desc += "; hybrid MBR (boots as a disk too)"
	}

	if iso.SecureBootKeys {
		desc += "; secure boot keys to enrol"
	}

	line("boot", "%s; volume %s, %d files", desc, iso.VolumeID, iso.Files)

	if iso.BIOSCmdline != "" && iso.BIOSCmdline != cmdline {
		line("bios cmdline", "%s", iso.BIOSCmdline)
	}
}

func writePE(line lineFunc, pe *inspect.PEInfo) {
	label := "pe"
	if pe.UKI {
		label = "uki"
	}

	var desc []string
	if pe.Path != "" {
		where := pe.Path
		if pe.Layer > 0 {
			where += fmt.Sprintf(" (layer %d)", pe.Layer)
		}

		desc = append(desc, where)
	}

	desc = append(desc, pe.Machine)

	if pe.OS != "" {
		desc = append(desc, pe.OS)
	}

	if pe.Signed {
		desc = append(desc, fmt.Sprintf("signed (Authenticode, %d bytes)", pe.SignatureSize))
	} else {
		desc = append(desc, "not signed")
	}

	if len(pe.Profiles) > 0 {
		var ids []string

		for _, p := range pe.Profiles {
			id := p.ID
			if p.OwnCmdline {
				id += " (own cmdline)"
			}

			ids = append(ids, id)
		}

		desc = append(desc, "profiles "+strings.Join(ids, ", "))
	}

	line(label, "%s", strings.Join(desc, ", "))

	if !pe.UKI {
		// SBAT lines: component,generation,vendor,package,version,url. The first is SBAT's own.
		var components []string

		for _, l := range pe.SBAT {
			if f := strings.Split(l, ","); len(f) >= 5 && f[0] != "sbat" {
				components = append(components, f[0]+" "+f[4])
			}
		}

		if len(components) > 0 {
			line("sbat", "%s", strings.Join(components, ", "))
		}
	}

	names := make([]string, len(pe.Sections))
	for i, s := range pe.Sections {
		names[i] = s.Name
	}

	line("sections", "%s", strings.Join(names, " "))
}

func writeInitramfs(line lineFunc, ir *inspect.InitramfsInfo) {
	members := make([]string, len(ir.Members))

	for i, m := range ir.Members {
		switch {
		case m.Compression == inspect.FormatNone:
			members[i] = "cpio"
		case m.XZCheck != "":
			members[i] = fmt.Sprintf("%s (%s)", m.Compression, m.XZCheck)
		default:
			members[i] = string(m.Compression)
		}
	}

	desc := fmt.Sprintf("%d members: %s; %d files, %s unpacked", len(members), strings.Join(members, " + "), ir.Files,
		size(ir.UncompressedSize))
	if ir.Path != "" {
		desc = ir.Path + ", " + desc
	}

	line("initramfs", "%s", desc)
}

func writeTar(line lineFunc, t *inspect.TarInfo) {
	const shown = 5

	names := make([]string, 0, shown)

	for _, e := range t.Entries[:min(len(t.Entries), shown)] {
		names = append(names, fmt.Sprintf("%s (%s)", e.Name, size(e.Size)))
	}

	if t.Count > shown {
		names = append(names, fmt.Sprintf("and %d more", t.Count-shown))
	}

	line("members", "%s", strings.Join(names, ", "))
}

func writeDisk(line lineFunc, d *inspect.DiskInfo) {
	parts := make([]string, len(d.Partitions))

	for i, p := range d.Partitions {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("%d (%s)", p.Index, cmp.Or(p.TypeName, p.Type))
		}

		parts[i] = name + " " + size(p.Size)
	}

	desc := fmt.Sprintf("%s, %d-byte sectors", strings.ToUpper(d.Table), d.SectorSize)
	if d.BIOSBootCode {
		desc += ", BIOS boot code"
	}

	if d.Path != "" {
		desc = d.Path + ": " + desc
	}

	if len(parts) == 0 {
		parts = []string{"none"}
	}

	line("partitions", "%s: %s", desc, strings.Join(parts, ", "))
}

func extensionList(exts []inspect.Extension) string {
	if len(exts) == 0 {
		return "none"
	}

	names := make([]string, len(exts))
	for i, e := range exts {
		names[i] = strings.TrimSpace(e.Name + " " + e.Version)
	}

	return strings.Join(names, ", ")
}

func size(n int64) string {
	if n < 0 {
		n = 0
	}

	return humanize.IBytes(uint64(n))
}
