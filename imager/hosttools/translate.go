package hosttools

import (
	"fmt"
	"strings"
)

// smallFATLimit is the image size below which mkfs.vfat must not be forced to FAT32: such a FAT32 has fewer than
// 65525 clusters, which mtools 4.0.32 (Debian 12) refuses to read ("Error reading FAT"), so the imager's later
// mcopy fails. Without -F mkfs.fat picks FAT12/16, which UEFI firmware reads as well.
const smallFATLimit = 64 << 20

// xfsArgs rewrites mkfs.xfs arguments from the dialect the v1.13 imager speaks (xfsprogs ≥ 6.5) to one that
// xfsprogs 6.1 accepts:
//   - "-c options=F" is dropped when F does not exist (the imager names a Talos-side config such as lts_6.18.conf;
//     Debian 12's own lts_6.1.conf is no substitute, its mkfs.xfs rejects it);
//   - "-p file=X" becomes "-p X" when oldProto (xfsprogs < 6.5, which knows only the bare protofile form).
//
// It returns the new arguments and one note per change.
func xfsArgs(args []string, exists func(string) bool, oldProto bool) (out, changes []string) {
	out = make([]string, 0, len(args))

	for i := 0; i < len(args); i++ {
		arg := args[i]
		if i+1 >= len(args) || (arg != "-c" && arg != "-p") {
			out = append(out, arg)

			continue
		}

		val := args[i+1]
		i++

		switch {
		case arg == "-c" && strings.HasPrefix(val, "options="):
			if file := strings.TrimPrefix(val, "options="); !exists(file) {
				changes = append(changes, fmt.Sprintf("dropped -c %s (file missing; mkfs.xfs defaults apply)", val))

				continue
			}
		case arg == "-p" && oldProto && strings.HasPrefix(val, "file="):
			val = strings.TrimPrefix(val, "file=")
			changes = append(changes, fmt.Sprintf("-p file=%s -> -p %s", val, val))
		}

		out = append(out, arg, val)
	}

	return out, changes
}

// vfatArgs drops "-F 32" (or "-F32") when the target, the last argument, is a file smaller than smallFATLimit.
// size reports a regular file's size, and false for anything else (block devices keep their arguments).
func vfatArgs(args []string, size func(string) (int64, bool)) (out, changes []string) {
	if len(args) == 0 {
		return args, nil
	}

	n, ok := size(args[len(args)-1])
	if !ok || n >= smallFATLimit {
		return args, nil
	}

	out = make([]string, 0, len(args))

	for i := 0; i < len(args); i++ {
		// The last argument is the target: never take it for an option value.
		switch {
		case args[i] == "-F" && i+2 < len(args) && args[i+1] == "32":
			i++
		case args[i] == "-F32" && i+1 < len(args):
		default:
			out = append(out, args[i])

			continue
		}

		changes = append(changes, fmt.Sprintf("dropped -F 32 (image is %d bytes < 64 MiB; FAT12/16 instead)", n))
	}

	return out, changes
}

// vmdkArgs turns open-vmdk's "vmdk-convert SRC DST" (the only form the imager uses: a raw disk into a
// streamOptimized VMDK for the OVA) into the equivalent qemu-img arguments.
func vmdkArgs(args []string) ([]string, error) {
	if len(args) != 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		return nil, fmt.Errorf("vmdk-convert via qemu-img supports only \"vmdk-convert SRC DST\", got %q", args)
	}

	return []string{"convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", args[0], args[1]}, nil
}

// squashfs45Args strips the squashfs-tools ≥ 4.6 options the imager uses to label extension files for SELinux
// ("-xattrs-exclude REGEX" and pseudo-xattr definitions "-p 'PATH x NAME=VALUE'") and asks for no xattrs instead,
// so that mksquashfs 4.5 builds the image. The labels are lost: only a fallback.
func squashfs45Args(args []string) (out, changes []string) {
	out = make([]string, 0, len(args)+1)
	dropped := false

	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-xattrs-exclude" && i+1 < len(args):
			changes = append(changes, fmt.Sprintf("dropped -xattrs-exclude %s", args[i+1]))
		case args[i] == "-p" && i+1 < len(args) && isPseudoXattr(args[i+1]):
			changes = append(changes, fmt.Sprintf("dropped pseudo xattr %q", args[i+1]))
		default:
			out = append(out, args[i])

			continue
		}

		dropped = true
		i++
	}

	if dropped {
		out = append(out, "-no-xattrs")
		changes = append(changes, "added -no-xattrs (SELinux labels are lost)")
	}

	return out, changes
}

// isPseudoXattr reports whether a mksquashfs pseudo definition is an xattr one: "PATH x NAME=VALUE".
func isPseudoXattr(def string) bool {
	// The path may contain spaces; the xattr itself does not.
	i := strings.LastIndex(def, " x ")

	return i > 0 && strings.Contains(def[i+len(" x "):], "=")
}

// xorrisofsArgs runs xorriso in its mkisofs personality, for hosts that have xorriso without the xorrisofs link.
func xorrisofsArgs(args []string) []string {
	return append([]string{"-as", "mkisofs"}, args...)
}
