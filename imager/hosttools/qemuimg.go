package hosttools

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// qemuConvertValueOptions are qemu-img convert's short options that take a value (qemu-img 7.2 getopt string).
const qemuConvertValueOptions = "fOBFolStTmr"

// qemuConvert is what matters to the adapter in a qemu-img invocation.
type qemuConvert struct {
	format string // -O: the output format
	dest   string // the output file, the last argument
}

// parseQemuConvert returns the output format and file of "qemu-img convert ...", and false for other subcommands
// or when the output cannot be told for sure (--target-image-opts makes it an option string, not a file).
func parseQemuConvert(args []string) (qemuConvert, bool) {
	if len(args) == 0 || args[0] != "convert" {
		return qemuConvert{}, false
	}

	var (
		c          qemuConvert
		positional []string
	)

	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		arg := rest[i]

		switch {
		case arg == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case arg == "--target-image-opts":
			return qemuConvert{}, false
		case arg == "--object":
			i++
		case strings.HasPrefix(arg, "--"):
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			i += qemuShortCluster(arg[1:], rest[i+1:], &c)
		default:
			positional = append(positional, arg)
		}
	}

	if len(positional) < 2 {
		return qemuConvert{}, false
	}

	c.dest = positional[len(positional)-1]

	return c, true
}

// qemuShortCluster reads one cluster of short options ("pO", "Ovpc", "q") and returns how many of the following
// arguments it consumed as a value.
func qemuShortCluster(cluster string, rest []string, c *qemuConvert) int {
	for j := 0; j < len(cluster); j++ {
		if !strings.ContainsRune(qemuConvertValueOptions, rune(cluster[j])) {
			continue
		}

		val, used := cluster[j+1:], 0
		if val == "" && len(rest) > 0 {
			val, used = rest[0], 1
		}

		if cluster[j] == 'O' {
			c.format = val
		}

		return used
	}

	return 0
}

// normalizers rewrite what qemu-img makes up (clock, random ids) in an output format, in place.
var normalizers = map[string]func(path string, t time.Time) error{
	"vpc":  normalizeVHD,
	"vmdk": normalizeVMDK,
}

// planQemuImg: with SOURCE_DATE_EPOCH set, "qemu-img convert -O vpc|vmdk" runs as a child and its output is then
// normalised (VHD footer timestamp and unique id, VMDK CID); qcow2 and everything else is exec'd as is.
func planQemuImg(_ context.Context, h *host, args []string) (plan, error) {
	tool, err := h.lookPath("qemu-img")
	if err != nil {
		return plan{}, fmt.Errorf("qemu-img (qemu-utils): %w", err)
	}

	p := plan{path: tool, args: args}

	return p, normalizeAfter(&p, args)
}

// normalizeAfter makes p normalise the output of the qemu-img call args (a qemu-img command line) once it is done,
// when SOURCE_DATE_EPOCH is set and the output format needs it.
func normalizeAfter(p *plan, args []string) error {
	c, ok := parseQemuConvert(args)
	if !ok {
		return nil
	}

	return normalizeOutput(p, c.format, c.dest)
}

// normalizeOutput makes p normalise dest, a disk image in format (a qemu-img format name), once p's tool is done,
// when SOURCE_DATE_EPOCH is set and the format needs it.
func normalizeOutput(p *plan, format, dest string) error {
	epoch, ok, err := sourceDateEpoch()
	if err != nil || !ok {
		return err
	}

	normalize, ok := normalizers[format]
	if !ok {
		return nil
	}

	p.after = func() error {
		if err := normalize(dest, epoch); err != nil {
			return fmt.Errorf("normalise %s output: %w", format, err)
		}

		return nil
	}
	p.changes = append(p.changes, fmt.Sprintf("%s output %s: clock and random ids replaced by values derived from "+
		"SOURCE_DATE_EPOCH %s", format, dest, epoch.Format(time.RFC3339)))

	return nil
}
