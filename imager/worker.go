package imager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	talosimager "github.com/siderolabs/talos/pkg/imager"
	"github.com/siderolabs/talos/pkg/imager/profile"
	"go.yaml.in/yaml/v4"
	"golang.org/x/sys/unix"
)

// The Talos imager runs in a worker: this executable again, started with workerEnv naming a job file. A build takes
// whole cores for seconds to minutes, mostly in the tools the imager runs; at a lower CPU priority the worker and
// those tools (they inherit it) leave the node's own threads, which answer the machines booting from it, first in
// line for the CPU. The worker's process group is killed whole when a build is cancelled or times out, so no tool
// outlives its build, and a crash or the imager's memory go with the worker.

// workerEnv names the job file of a worker process; RunIfWorker sees it.
const workerEnv = "EDGEFACTORY_IMAGER_WORKER"

// workerGuard is the worker's only argument: a Go test binary whose TestMain lacks RunIfWorker runs no test with
// it (and the build fails for want of a result) instead of running the whole suite again in every build.
const workerGuard = "-test.run=^$"

// workerJob is what a worker is asked to do, and where it answers.
type workerJob struct {
	Profile string `json:"profile"` // YAML of the Talos profile
	OutDir  string `json:"outDir"`
	Nice    int    `json:"nice"`
	Result  string `json:"result"` // file the worker writes its workerResult to
	// Events says the worker's file descriptor 3 is its events pipe (stage events, see stage.go).
	Events bool `json:"events,omitempty"`
}

type workerResult struct {
	Path  string `json:"path,omitempty"`
	Error string `json:"error,omitempty"`
	// NoSpace says the build failed for want of disk space: the node answers 507, not 500.
	NoSpace bool `json:"noSpace,omitempty"`
}

// noSpaceError is a worker's failure for want of disk space, as text from the other process: it matches
// syscall.ENOSPC again.
type noSpaceError struct{ msg string }

func (e *noSpaceError) Error() string { return e.msg }
func (e *noSpaceError) Unwrap() error { return syscall.ENOSPC }

// isNoSpace reports whether err is the disk filling up, whether it comes as an errno or as a tool's message.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error())
}

// RunIfWorker runs the build job and exits when this process was started as a build worker, and returns at once
// otherwise. Call it first in main, and in the TestMain of every package whose tests build, beside
// hosttools.RunIfAdapter.
func RunIfWorker() {
	jobFile := os.Getenv(workerEnv)
	if jobFile == "" {
		return
	}

	os.Unsetenv(workerEnv) // the tools the imager runs are not workers, even copies of this binary

	if err := runWorker(jobFile); err != nil { // in the node's log at this level (see CaptureStderr)
		fmt.Fprintf(os.Stderr, "level=ERROR msg=\"imager worker failed\" err=%q\n", err.Error())
		os.Exit(1)
	}

	os.Exit(0)
}

func runWorker(jobFile string) error {
	data, err := os.ReadFile(jobFile)
	if err != nil {
		return err
	}

	var job workerJob
	if err := json.Unmarshal(data, &job); err != nil {
		return fmt.Errorf("job %s: %w", jobFile, err)
	}

	if job.Nice > 0 {
		if err := lowerPriority(job.Nice); err != nil {
			fmt.Fprintf(os.Stderr, "level=WARN msg=\"imager worker runs at the node's priority\" err=%q\n", err.Error())
		}
	}

	path, err := executeImager(job)

	res := workerResult{Path: path}
	if err != nil {
		res.Error, res.NoSpace = err.Error(), isNoSpace(err)
	}

	out, err := json.Marshal(res)
	if err != nil {
		return err
	}

	return os.WriteFile(job.Result, out, 0o644)
}

// executeImager runs the Talos imager on the job's profile, its progress lines on stdout. A panic in the imager
// fails the build with its message.
func executeImager(job workerJob) (_ string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("imager panicked: %v", p)
		}
	}()

	var prof profile.Profile
	if err := yaml.Unmarshal([]byte(job.Profile), &prof); err != nil {
		return "", fmt.Errorf("profile: %w", err)
	}

	img, err := talosimager.New(prof)
	if err != nil {
		return "", err
	}

	// The reporter's lines pass through this process on their way to stdout, so that the steps beginning a new
	// stage are told to the node as events.
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("progress pipe: %w", err)
	}

	events := io.Discard
	if job.Events {
		syscall.CloseOnExec(workerEventsFD) // the tools the imager runs do not hold the node's pipe open
		events = os.NewFile(workerEventsFD, "events")
	}

	forwarded := make(chan struct{})

	go func() {
		defer close(forwarded)

		forwardProgress(pr, os.Stdout, events)
	}()

	defer func() {
		pw.Close() // ends forwardProgress once the reporter's last line is through
		<-forwarded
		pr.Close()
	}()

	rep, ok := newReporter(pw)
	if !ok { // the capture of stderr logs this line at its level
		fmt.Fprintln(os.Stderr, `level=WARN msg="imager progress not logged: unknown reporter layout"`)
	}

	// A cancelled build's process group gets SIGTERM: the imager stops its tools and removes its scratch.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	return img.Execute(ctx, job.OutDir, rep)
}

// lowerPriority gives every thread of this process the niceness nice. Threads the Go runtime starts later are
// cloned from these and inherit it, and so do the tools the imager runs. A thread started during the first pass
// by one not yet lowered is caught by the second.
func lowerPriority(nice int) error {
	var errs []error

	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}

		errs = errs[:0]

		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}

			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
				errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
			}
		}
	}

	return errors.Join(errs...)
}

// workerKillDelay is how long a cancelled worker's process group has between SIGTERM and SIGKILL.
const workerKillDelay = 5 * time.Second

// execute runs prof in a worker process at the Builder's priority, the imager's progress going to log and its
// stages to report, and returns the output's path. dir is the build's directory: the job file, the result file and
// the output directory go there.
func (b *Builder) execute(ctx context.Context, prof profile.Profile, dir string, log *slog.Logger,
	report Report,
) (string, error) {
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return "", err
	}

	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("imager worker: %w", err)
	}

	yml, err := yaml.Marshal(prof)
	if err != nil {
		return "", fmt.Errorf("imager worker: profile: %w", err)
	}

	job := workerJob{Profile: string(yml), OutDir: outDir, Nice: b.cfg.Nice, Result: filepath.Join(dir, "result.json"),
		Events: true}
	jobFile := filepath.Join(dir, "job.json")

	data, err := json.Marshal(job)
	if err != nil {
		return "", fmt.Errorf("imager worker: %w", err)
	}

	if err := os.WriteFile(jobFile, data, 0o600); err != nil {
		return "", fmt.Errorf("imager worker: %w", err)
	}

	progress, err := newProgressLog(log)
	if err != nil {
		return "", fmt.Errorf("imager worker: %w", err)
	}

	eventsR, eventsW, err := os.Pipe()
	if err != nil {
		progress.close()

		return "", fmt.Errorf("imager worker: %w", err)
	}

	eventsDone := make(chan struct{})

	go func() {
		defer close(eventsDone)

		readEvents(eventsR, report)
	}()

	cmd := exec.CommandContext(ctx, exe, workerGuard)
	cmd.Env = append(os.Environ(), workerEnv+"="+jobFile)
	cmd.ExtraFiles = []*os.File{eventsW} // the worker's workerEventsFD
	cmd.Stdout = progress.w
	cmd.Stderr = os.Stderr // the imager's and its tools' own output: serve and dev capture it (CaptureStderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = workerKillDelay

	runErr := cmd.Run()
	if runErr != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // whatever of the group is left
	}

	progress.close()
	eventsW.Close() // the worker's copy is gone with it: readEvents ends
	<-eventsDone
	eventsR.Close()

	return workerOutcome(job.Result, runErr)
}

// workerOutcome reads a worker's result file: the output's path, or the build's error.
func workerOutcome(resultFile string, runErr error) (string, error) {
	var res workerResult

	data, err := os.ReadFile(resultFile)
	if err == nil {
		err = json.Unmarshal(data, &res)
	}

	switch {
	case err == nil && res.Error != "" && res.NoSpace:
		return "", &noSpaceError{msg: res.Error}
	case err == nil && res.Error != "":
		return "", errors.New(res.Error)
	case err == nil && runErr == nil:
		return res.Path, nil
	case runErr != nil:
		return "", fmt.Errorf("imager worker: %w", runErr)
	default:
		return "", fmt.Errorf("imager worker gave no result: %w", err)
	}
}
