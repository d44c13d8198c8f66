// Command testlog keeps the record of a test run, so that CI can end by saying which suites ran and which tests
// skipped, and why, and can fail on a skip nobody allowed (a missing tool is a broken machine, not a pass).
//
//	go test -json ... | testlog record [-v] SUITE   print the run as go test would, and record it
//	testlog mark SUITE ran|skipped|failed REASON    record a suite that is not a go test run (fuzzing)
//	testlog summary [-allowed FILE] [-expect S,...] print every suite and every skip; exit 1 on a skip FILE
//	                                                 does not allow (one regular expression per line, # comments),
//	                                                 a failed suite, or an expected suite that never ran
//
// Records go to $EDGEFACTORY_TEST_RECORD (default build/test-record), one JSON file per suite.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Record is one suite's run.
type Record struct {
	Suite    string   `json:"suite"`
	Status   string   `json:"status"` // ran, failed, skipped
	Reason   string   `json:"reason,omitempty"`
	Packages int      `json:"packages"`
	Tests    int      `json:"tests"`
	Failed   []string `json:"failed,omitempty"`
	Skipped  []Skip   `json:"skipped,omitempty"`
}

// Skip is one skipped test and what it said.
type Skip struct {
	Test   string `json:"test"`
	Reason string `json:"reason"`
}

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: testlog record|mark|summary, as the package comment says"))
	}

	var err error

	switch os.Args[1] {
	case "record":
		err = record(os.Args[2:], os.Stdin, os.Stdout)
	case "mark":
		err = mark(os.Args[2:])
	case "summary":
		err = summary(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}

	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testlog:", err)
	os.Exit(1)
}

func dir() string {
	if d := os.Getenv("EDGEFACTORY_TEST_RECORD"); d != "" {
		return d
	}

	return filepath.Join("build", "test-record")
}

func save(r Record) error {
	if err := os.MkdirAll(dir(), 0o750); err != nil {
		return err
	}

	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}

	return os.WriteFile(filepath.Join(dir(), r.Suite+".json"), data, 0o600)
}

// record reads go test's JSON stream, prints it as go test prints (every line with -v; without, only the package
// lines and the output of failed tests), and saves the suite's record. It fails when the run failed.
func record(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "print every line, as go test -v")

	if err := fs.Parse(args); err != nil {
		return err
	}

	if fs.NArg() != 1 {
		return errors.New("record: name the suite")
	}

	r := Record{Suite: fs.Arg(0), Status: "ran"}
	held := map[string][]string{} // a test's output until it passes (dropped), fails or skips (kept)
	pkgs := map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)

	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(out, sc.Text()) // not an event (a build error before the tests): as it came

			continue
		}

		id := e.Package + " " + e.Test

		switch e.Action {
		case "output", "build-output":
			if *verbose || e.Test == "" && e.Output != "PASS\n" { // go test without -v prints no PASS line
				fmt.Fprint(out, e.Output)
			} else {
				held[id] = append(held[id], e.Output)
			}
		case "run":
			if e.Test != "" && !strings.Contains(e.Test, "/") {
				r.Tests++
			}
		case "skip":
			if e.Test == "" {
				break // a package without tests
			}

			r.Skipped = append(r.Skipped, Skip{Test: id, Reason: skipReason(held[id], e)})
			delete(held, id)
		case "fail", "build-fail":
			if e.Test == "" {
				pkgs[e.Package] = true
				r.Status = "failed"
				r.Failed = append(r.Failed, e.Package)

				break
			}

			for _, line := range held[id] {
				fmt.Fprint(out, line)
			}

			delete(held, id)
		case "pass":
			if e.Test == "" {
				pkgs[e.Package] = true
			}

			delete(held, id)
		}
	}

	if err := sc.Err(); err != nil {
		return err
	}

	r.Packages = len(pkgs)
	if err := save(r); err != nil {
		return err
	}

	if r.Status == "failed" {
		return fmt.Errorf("%s failed: %s", r.Suite, strings.Join(r.Failed, ", "))
	}

	return nil
}

// skipReason is what a skipped test said before its "--- SKIP" line (with -v it comes in the same events).
func skipReason(lines []string, e event) string {
	var said []string

	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}

		said = append(said, l)
	}

	if len(said) == 0 {
		return "(no reason given)"
	}

	return said[len(said)-1]
}

func mark(args []string) error {
	if len(args) != 3 || !slices.Contains([]string{"ran", "skipped", "failed"}, args[1]) {
		return errors.New("usage: testlog mark SUITE ran|skipped|failed REASON")
	}

	r := Record{Suite: args[0], Status: args[1], Reason: args[2]}
	if r.Status == "failed" {
		r.Failed = []string{r.Reason}
	}

	return save(r)
}

// summary prints every suite recorded and every skip, and fails on a skip the allowed file does not allow.
func summary(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("summary", flag.ContinueOnError)
	allowedFile := fs.String("allowed", "", "file of the skips allowed (regular expressions, one per line)")
	expect := fs.String("expect", "", "comma-separated suites that must have been recorded")

	if err := fs.Parse(args); err != nil {
		return err
	}

	allowed, err := readAllowed(*allowedFile)
	if err != nil {
		return err
	}

	files, err := filepath.Glob(filepath.Join(dir(), "*.json"))
	if err != nil {
		return err
	}

	slices.Sort(files)

	var unexpected, failed []string

	for _, suite := range strings.Split(*expect, ",") {
		if _, err := os.Stat(filepath.Join(dir(), suite+".json")); suite != "" && err != nil {
			failed = append(failed, suite+" (never ran)")
		}
	}

	fmt.Fprintf(out, "\n== test summary (%s) ==\n", time.Now().UTC().Format(time.RFC3339))

	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}

		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}

		switch r.Status {
		case "skipped":
			fmt.Fprintf(out, "suite %-11s SKIPPED: %s\n", r.Suite, r.Reason)

			if !matches(allowed, r.Reason) {
				unexpected = append(unexpected, r.Suite+": "+r.Reason)
			}
		case "failed":
			failed = append(failed, r.Suite)

			fmt.Fprintf(out, "suite %-11s FAILED (%s)\n", r.Suite, strings.Join(r.Failed, ", "))
		default:
			fmt.Fprintf(out, "suite %-11s ran: %d packages, %d tests, %d skipped %s\n", r.Suite, r.Packages, r.Tests,
				len(r.Skipped), r.Reason)
		}

		for _, s := range r.Skipped {
			verdict := "allowed"
			if !matches(allowed, s.Reason) {
				verdict = "UNEXPECTED"
				unexpected = append(unexpected, s.Test+": "+s.Reason)
			}

			fmt.Fprintf(out, "  skip %-10s %s: %s\n", verdict, s.Test, s.Reason)
		}
	}

	if len(files) == 0 {
		return fmt.Errorf("no suite recorded in %s", dir())
	}

	for _, f := range failed {
		if strings.HasSuffix(f, "(never ran)") {
			fmt.Fprintf(out, "suite %s\n", f)
		}
	}

	if len(unexpected) > 0 {
		fmt.Fprintf(out, "%d unexpected skips: this machine lacks what `make deps` installs, or a test skips for "+
			"no reason the allowed list (%s) gives\n", len(unexpected), *allowedFile)

		return fmt.Errorf("%d unexpected skips", len(unexpected))
	}

	if len(failed) > 0 {
		return fmt.Errorf("suites failed: %s", strings.Join(failed, ", "))
	}

	fmt.Fprintln(out, "every suite ran; every skip is allowed")

	return nil
}

func readAllowed(path string) ([]*regexp.Regexp, error) {
	if path == "" {
		return nil, nil
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}

	var out []*regexp.Regexp

	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}

		re, err := regexp.Compile(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}

		out = append(out, re)
	}

	return out, nil
}

func matches(allowed []*regexp.Regexp, reason string) bool {
	for _, re := range allowed {
		if re.MatchString(reason) {
			return true
		}
	}

	return false
}
