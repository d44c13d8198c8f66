package hosttools

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// tarValueOptions are GNU tar's short options that take a value: in "-cf out" or "-Cdir" what follows is a value.
const tarValueOptions = "bCfFgHIKLNTVX"

// tarCreates reports whether a GNU tar command line creates an archive: -c or --create, in a dash cluster or in
// the traditional first argument without a dash ("cvf out").
func tarCreates(args []string) bool {
	for i := 0; i < len(args); i++ {
		arg := args[i]

		switch {
		case arg == "--":
			return false
		case arg == "--create":
			return true
		case strings.HasPrefix(arg, "--"):
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			creates, used := tarCluster(arg[1:])
			if creates {
				return true
			}

			i += used
		case i == 0 && strings.ContainsRune(arg, 'c'):
			// Traditional style ("cvf out"): letters only, every value follows as a separate argument.
			return true
		}
	}

	return false
}

// tarCluster reads one cluster of short options and says whether it has -c and whether it took the next argument
// as a value.
func tarCluster(cluster string) (creates bool, used int) {
	for j := 0; j < len(cluster); j++ {
		if cluster[j] == 'c' {
			return true, 0
		}

		if strings.ContainsRune(tarValueOptions, rune(cluster[j])) {
			if j == len(cluster)-1 {
				return false, 1
			}

			return false, 0
		}
	}

	return false, 0
}

// tarOptions are the GNU tar options that make an archive independent of when and by whom its files were written
// (the "--mtime=@N" form needs no time zone); they go in TAR_OPTIONS, which tar reads before its command line, so
// the caller's own options still win and the traditional "tar cvf" form keeps its first place.
func tarOptions(epoch int64, inherited string) string {
	opts := fmt.Sprintf("--mtime=@%d --owner=0 --group=0 --numeric-owner --sort=name", epoch)
	if inherited = strings.TrimSpace(inherited); inherited != "" {
		opts += " " + inherited
	}

	return opts
}

// planTar: with SOURCE_DATE_EPOCH set, an archive is created with every member's mtime at SOURCE_DATE_EPOCH, owned
// by 0:0 without names, directories in name order. The imager's OVA (disk.ovf, disk.mf, disk.vmdk, written during
// the build) needs it; its .tar.gz outputs already pass these options.
func planTar(_ context.Context, h *host, args []string) (plan, error) {
	tool, err := h.lookPath("tar")
	if err != nil {
		return plan{}, err
	}

	p := plan{path: tool, args: args}

	epoch, ok, err := sourceDateEpoch()
	if err != nil || !ok || !tarCreates(args) {
		return p, err
	}

	opts := tarOptions(epoch.Unix(), os.Getenv("TAR_OPTIONS"))
	p.env = []string{"TAR_OPTIONS=" + opts}
	p.changes = []string{"TAR_OPTIONS=" + opts}

	return p, nil
}
