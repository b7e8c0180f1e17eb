package sweep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"github.com/spectraclip/spectraclip/internal/procattr"
	"github.com/spectraclip/spectraclip/run"
)

// Options say what a sweep invocation does. With Emit set it only writes the Slurm
// script; with Collect it only builds the results; with Point >= 0 it runs that one point
// (a Slurm array task); otherwise it runs every point that is not finished.
type Options struct {
	Dir  string // the sweep directory
	Spec *Spec  // nil: the plan already stored in Dir
	// Binary is the spectraclip executable that runs `train` (the CLI passes its own).
	Binary string
	// Workers run at once (0: one, or one per GPU). Threads is each one's
	// training.threads (0: the CPU cores divided by the workers).
	Workers int
	Threads int
	// GPUs are CUDA device ids; each worker gets one as CUDA_VISIBLE_DEVICES.
	GPUs        []string
	RetryFailed bool
	Point       int // -1: all points
	Collect     bool
	Emit        string // "slurm": write the job-array script
	Slurm       SlurmOptions
	Ctx         context.Context // cancels the running points (SIGINT in the CLI)
	Log         *logrus.Logger
	Progress    io.Writer // the progress bar (os.Stderr in the CLI); nil: none
	Environ     []string  // the environment of the train processes (nil: os.Environ())
	Workdir     string    // where the points run ("": the current directory)
}

// Summary is what an invocation did.
type Summary struct {
	Dir         string
	Points      int
	Ran         int // train processes started now
	Done        int // finished points (all of them, not only now)
	Failed      int
	Pending     int // neither done nor failed (interrupted, or not yet run)
	Skipped     int // finished or failed points this invocation left alone
	Results     *Results
	SlurmScript string
}

// ErrPointsFailed is wrapped by the error Execute returns when points failed.
var ErrPointsFailed = errors.New("sweep: points failed")

// Execute is the sweep's entry point (see Options).
func Execute(o Options) (*Summary, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("sweep: give the sweep directory (--out DIR)")
	}
	if o.Log == nil {
		o.Log = logrus.New()
		o.Log.SetOutput(io.Discard)
	}
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if o.Workdir == "" {
		if o.Workdir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	modes := 0
	for _, b := range []bool{o.Collect, o.Emit != "", o.Point >= 0} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		return nil, fmt.Errorf("sweep: --collect, --emit and --point exclude each other")
	}
	switch {
	case o.Collect:
		if o.Spec != nil {
			return nil, fmt.Errorf("sweep --collect reads the plan in %s: give no sweep file or variants", o.Dir)
		}
		plan, err := LoadPlan(o.Dir)
		if err != nil {
			return nil, err
		}
		return finish(o, plan, &Summary{Dir: o.Dir, Points: len(plan.Points)})
	case o.Emit != "":
		if o.Emit != "slurm" {
			return nil, fmt.Errorf("sweep: --emit %q (allowed: slurm)", o.Emit)
		}
		plan, lock, err := openPlan(o)
		if err != nil {
			return nil, err
		}
		defer lock.release()
		if err := plan.prepareData(o.Ctx); err != nil {
			return nil, err
		}
		if o.RetryFailed {
			o.Slurm.TaskArgs = append(o.Slurm.TaskArgs, "--retry-failed")
		}
		path, err := EmitSlurm(o.Dir, plan, o.Binary, o.Slurm)
		if err != nil {
			return nil, err
		}
		o.Log.WithFields(logrus.Fields{"script": path, "tasks": len(plan.Points)}).Info("Slurm job array written: submit it with sbatch, then collect with spectraclip sweep --collect --out " + o.Dir)
		return &Summary{Dir: o.Dir, Points: len(plan.Points), Pending: len(plan.Points), SlurmScript: path}, nil
	case o.Point >= 0:
		return runOnePoint(o)
	}
	return runAll(o)
}

// openPlan expands the spec (or loads the stored plan), checks that a stored plan holds the
// same points, saves it, and takes the sweep directory's lock.
//
// Interrupted (o.Ctx ends) before the plan is saved, it leaves the sweep directory as it
// was: no plan.json, and a directory it created itself is removed again.
func openPlan(o Options) (*Plan, *fileLock, error) {
	_, statErr := os.Stat(o.Dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sweep directory: %w", err)
	}
	lockPath := filepath.Join(o.Dir, ".sweep.lock")
	lock, err := lockFile(lockPath, "sweep directory "+o.Dir)
	if err != nil {
		return nil, nil, err
	}
	// release gives the lock back; after an interruption, a directory this call created
	// (it holds only the lock file: the plan is written last) is removed with it
	release := func(err error) error {
		if created && o.Ctx.Err() != nil && errors.Is(err, o.Ctx.Err()) {
			_ = os.Remove(lockPath)
			lock.release()
			_ = os.Remove(o.Dir) // only if empty
			return err
		}
		lock.release()
		return err
	}
	stored, serr := LoadPlan(o.Dir)
	if serr != nil && !errors.Is(serr, os.ErrNotExist) && fileExists(filepath.Join(o.Dir, PlanName)) {
		lock.release()
		return nil, nil, serr
	}
	var plan *Plan
	if o.Spec != nil && serr == nil {
		fresh, err := ExpandContext(o.Ctx, o.Spec, o.Workdir, o.Environ)
		if err != nil {
			return nil, nil, release(err)
		}
		if !samePoints(fresh, stored) {
			lock.release()
			return nil, nil, fmt.Errorf("sweep directory %s holds a different sweep (%d points in %s, %d now): rerun it with `spectraclip sweep --out %s` alone, or choose another --out", o.Dir, len(stored.Points), PlanName, len(fresh.Points), o.Dir)
		}
		stored.Name, stored.Metric = fresh.Name, fresh.Metric
		o.Spec = nil // the same sweep: go on with the stored plan (and its working directory)
	}
	if o.Spec == nil {
		if serr != nil {
			lock.release()
			return nil, nil, fmt.Errorf("sweep: no sweep given (-c FILE or --variant ...) and %s holds none yet", o.Dir)
		}
		// Re-resolve every point: checks the configs and finds the data to generate.
		plan = stored
		plan.synth, plan.order = map[string]dataset.SynthConfig{}, nil
		for i := range plan.Points {
			if err := o.Ctx.Err(); err != nil {
				lock.release()
				return nil, nil, interruptedExpanding(i, int64(len(plan.Points)), err)
			}
			if err := plan.resolve(&plan.Points[i], o.Environ); err != nil {
				lock.release()
				return nil, nil, err
			}
		}
	} else {
		plan, err = ExpandContext(o.Ctx, o.Spec, o.Workdir, o.Environ)
		if err != nil {
			return nil, nil, release(err)
		}
	}
	if err := plan.Save(o.Dir); err != nil {
		lock.release()
		return nil, nil, err
	}
	return plan, lock, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func runAll(o Options) (*Summary, error) {
	plan, lock, err := openPlan(o)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	if err := plan.prepareData(o.Ctx); err != nil {
		return nil, err
	}
	workers := o.Workers
	if len(o.GPUs) > 0 {
		if workers != 0 && workers != len(o.GPUs) {
			return nil, fmt.Errorf("sweep: --workers %d with --gpus %s: one worker runs per GPU", workers, strings.Join(o.GPUs, ","))
		}
		workers = len(o.GPUs)
	}
	if workers <= 0 {
		workers = 1
	}
	threads := o.Threads
	if threads <= 0 {
		threads = max(1, runtime.NumCPU()/workers)
	}
	sum := &Summary{Dir: o.Dir, Points: len(plan.Points)}
	var todo []*Point
	var interrupted int
	for i := range plan.Points {
		if err := o.Ctx.Err(); err != nil {
			return nil, fmt.Errorf("sweep interrupted while reading its points' states, before any point ran: %w (rerun the same command to go on)", err)
		}
		p := &plan.Points[i]
		st, err := LoadState(o.Dir, p)
		if err != nil {
			return nil, err
		}
		switch {
		case st.Status == Done && fileExists(run.Path(filepath.Join(o.Dir, p.RunDir), run.MetricsFile)):
			sum.Skipped++
			continue
		case st.Status == Failed && !o.RetryFailed:
			sum.Skipped++
			continue
		case st.Status == Running || st.Status == Interrupted:
			interrupted++
		}
		todo = append(todo, p)
	}
	o.Log.WithFields(logrus.Fields{"sweep": o.Dir, "points": len(plan.Points), "to_run": len(todo), "interrupted": interrupted,
		"left_alone": sum.Skipped, "workers": workers, "threads_per_worker": threads}).Info("sweep")
	if sum.Skipped > 0 && !o.RetryFailed {
		if n := countStatus(o.Dir, plan, Failed); n > 0 {
			o.Log.WithField("failed", n).Warn("failed points are not rerun; pass --retry-failed to rerun them")
		}
	}
	var bar *progressbar.ProgressBar
	if o.Progress != nil && len(todo) > 0 {
		bar = progressbar.NewOptions(len(todo), progressbar.OptionSetWriter(o.Progress), progressbar.OptionSetDescription("sweep"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(o.Progress) }))
		_ = bar.RenderBlank()
	}
	jobs := make(chan *Point)
	var mu sync.Mutex // serialises state.json, the log lines and the bar
	finished := 0
	var wg sync.WaitGroup
	r := &runner{o: o, plan: plan, threads: threads}
	for w := 0; w < workers; w++ {
		gpu := ""
		if len(o.GPUs) > 0 {
			gpu = o.GPUs[w]
		}
		wg.Add(1)
		go func(w int, gpu string) {
			defer wg.Done()
			for p := range jobs {
				st, ran, err := r.point(p, w, gpu, "", func() { mu.Lock(); r.writeStateSummary(); mu.Unlock() })
				mu.Lock()
				if ran {
					sum.Ran++
				}
				finished++
				if bar != nil {
					_ = bar.Clear()
				}
				logPoint(o.Log, p, st, err, finished, len(todo))
				r.writeStateSummary()
				if bar != nil {
					_ = bar.Add(1)
				}
				mu.Unlock()
			}
		}(w, gpu)
	}
feed:
	for _, p := range todo {
		select {
		case jobs <- p:
		case <-o.Ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	res, err := finish(o, plan, sum)
	if err == nil && o.Ctx.Err() != nil {
		err = fmt.Errorf("sweep interrupted: %w (rerun the same command to go on)", o.Ctx.Err())
	}
	return res, err
}

func countStatus(dir string, plan *Plan, s Status) int {
	n := 0
	for i := range plan.Points {
		if st, err := LoadState(dir, &plan.Points[i]); err == nil && st.Status == s {
			n++
		}
	}
	return n
}

func logPoint(log *logrus.Logger, p *Point, st *State, err error, k, n int) {
	f := logrus.Fields{"point": p.Index, "id": p.ID, "setting": p.Setting}
	if p.Seed != nil {
		f["seed"] = *p.Seed
	}
	if st != nil {
		f["status"] = st.Status
		f["seconds"] = round(st.Seconds, 1)
		if st.Resumed != "" {
			f["resumed"] = true
		}
	}
	msg := fmt.Sprintf("point %d/%d", k, n)
	switch {
	case err != nil:
		log.WithFields(f).WithError(err).Error(msg + ": sweep error")
	case st.Status == Failed:
		if st.ExitCode != nil {
			f["exit_code"] = *st.ExitCode
		}
		if st.Signal != "" {
			f["signal"] = st.Signal
		}
		log.WithFields(f).WithField("error", st.Error).Warn(msg + " failed")
	default:
		log.WithFields(f).Info(msg + " " + string(st.Status))
	}
}

// runOnePoint runs one point of a stored plan (a Slurm array task).
func runOnePoint(o Options) (*Summary, error) {
	if o.Spec != nil {
		return nil, fmt.Errorf("sweep --point reads the plan in %s: give no sweep file or variants", o.Dir)
	}
	plan, err := LoadPlan(o.Dir)
	if err != nil {
		return nil, err
	}
	if o.Point >= len(plan.Points) {
		return nil, fmt.Errorf("sweep --point %d: the sweep in %s has points 0..%d", o.Point, o.Dir, len(plan.Points)-1)
	}
	threads := o.Threads
	if threads <= 0 {
		if n, err := strconv.Atoi(os.Getenv("SLURM_CPUS_PER_TASK")); err == nil && n > 0 {
			threads = n
		} else {
			threads = runtime.NumCPU()
		}
	}
	p := &plan.Points[o.Point]
	task := os.Getenv("SLURM_ARRAY_JOB_ID")
	if task != "" {
		task += "_" + os.Getenv("SLURM_ARRAY_TASK_ID")
	}
	r := &runner{o: o, plan: plan, threads: threads}
	st, ran, err := r.point(p, 0, "", task, nil)
	sum := &Summary{Dir: o.Dir, Points: len(plan.Points)}
	if ran {
		sum.Ran = 1
	}
	if err != nil {
		return sum, err
	}
	logPoint(o.Log, p, st, nil, 1, 1)
	switch st.Status {
	case Done:
		sum.Done = 1
	case Failed:
		sum.Failed = 1
		return sum, fmt.Errorf("point %d (%s) failed: %s: %w", p.Index, p.ID, st.Error, ErrPointsFailed)
	}
	return sum, nil
}

// finish builds the results and counts the statuses.
func finish(o Options, plan *Plan, sum *Summary) (*Summary, error) {
	res, err := Collect(o.Dir, plan)
	if err != nil {
		return sum, err
	}
	if err := res.Write(o.Dir); err != nil {
		return sum, err
	}
	sum.Results = res
	sum.Done, sum.Failed, sum.Pending = 0, 0, 0
	for _, row := range res.Points {
		switch row.Status {
		case Done:
			sum.Done++
		case Failed:
			sum.Failed++
		default:
			sum.Pending++
		}
	}
	o.Log.WithFields(logrus.Fields{"done": sum.Done, "failed": sum.Failed, "pending": sum.Pending,
		"report": filepath.Join(o.Dir, "report.md")}).Info("sweep results written")
	if sum.Failed > 0 {
		return sum, fmt.Errorf("%d of %d points failed (see %s): %w", sum.Failed, sum.Points, filepath.Join(o.Dir, "report.md"), ErrPointsFailed)
	}
	return sum, nil
}

type runner struct {
	o       Options
	plan    *Plan
	threads int
}

// writeStateSummary rewrites state.json, the table of all points' states (the per-point
// files are the record; this is their summary).
func (r *runner) writeStateSummary() {
	var all []*State
	for i := range r.plan.Points {
		st, err := LoadState(r.o.Dir, &r.plan.Points[i])
		if err != nil {
			continue
		}
		all = append(all, st)
	}
	if err := writeJSON(filepath.Join(r.o.Dir, "state.json"), map[string]any{"points": all}); err != nil {
		r.o.Log.WithError(err).Warn("sweep: state.json not rewritten (the per-point state files are the record)")
	}
}

// checkpointPrefix returns the run's last checkpoint to resume from, or "" when the run
// has no complete checkpoint at all. A missing or torn last/ with another complete
// checkpoint beside it (the previous version kept during a replacement, or a top-k one)
// still resumes: train --resume falls back to it itself, as run.Resolve does here.
func checkpointPrefix(runDir string) string {
	prefix := run.CheckpointPath(runDir, run.LastCheckpoint)
	if fileExists(prefix + ".json") {
		return prefix // a checkpoint of the older three-file layout
	}
	if _, _, _, err := run.Resolve(prefix); err == nil {
		return prefix
	}
	return ""
}

// point runs one point unless it is finished (or failed, without RetryFailed). ran says
// whether a train process was started.
func (r *runner) point(p *Point, worker int, gpu, task string, onStart func()) (*State, bool, error) {
	dir := r.o.Dir
	// one process per point, whether a local sweep or a Slurm task runs it
	lock, err := lockFile(filepath.Join(dir, "state", p.ID+".lock"), fmt.Sprintf("sweep point %d (%s)", p.Index, p.ID))
	if err != nil {
		return nil, false, err
	}
	defer lock.release()
	st, err := LoadState(dir, p)
	if err != nil {
		return nil, false, err
	}
	runDir := filepath.Join(dir, p.RunDir)
	if (st.Status == Done && fileExists(run.Path(runDir, run.MetricsFile))) || (st.Status == Failed && !r.o.RetryFailed) {
		return st, false, nil
	}
	// A run that finished while the sweep was being killed: its metrics are written last
	// but for the report, and its train process exited; do not run it again.
	if fileExists(run.Path(runDir, run.MetricsFile)) && st.Status != Failed {
		st.Status, st.Error, st.Finished = Done, "", time.Now().UTC().Format(time.RFC3339)
		if st.Completions == 0 {
			st.Completions = 1
		}
		return st, false, st.save(dir)
	}
	resume := ""
	if fileExists(runDir) {
		if st.Status != Failed {
			resume = checkpointPrefix(runDir)
		}
		if resume == "" {
			// Nothing to resume from (or a failed run retried from scratch): keep what it
			// wrote, out of the way.
			attic := filepath.Join(dir, "attic", fmt.Sprintf("%s.%s-%d", p.ID, st.Status, st.Attempts))
			if err := os.MkdirAll(filepath.Dir(attic), 0o755); err != nil {
				return st, false, err
			}
			if err := atomicfile.Rename(runDir, attic); err != nil {
				return st, false, fmt.Errorf("point %s: move aside %s: %w", p.ID, runDir, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		return st, false, err
	}
	base, argv, env := r.command(p, runDir, resume, gpu)
	// the SPECTRACLIP_ variables of the environment change a run (config overrides, limits),
	// so the command that reproduces the point carries them
	st.Command = shellCommand(r.plan.Workdir, append(spectraclipEnv(r.o.Environ), env...), append(base[:1:1], base[1:]...))
	st.Argv = argv
	st.Resumed = resume
	st.Status = Running
	st.Attempts++
	st.ExitCode, st.Signal, st.Error, st.Finished, st.Seconds = nil, "", "", "", 0
	st.Started = time.Now().UTC().Format(time.RFC3339)
	st.Host, _ = os.Hostname()
	st.Worker, st.GPU, st.Threads, st.SlurmTask = worker, gpu, r.threads, task
	if resume != "" {
		st.Threads = 0 // the run's config.yaml has its own
	}
	st.Log = filepath.Join("logs", p.ID+".log")
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return st, false, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, st.Log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return st, false, err
	}
	defer logf.Close()
	off, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "=== attempt %d at %s: %s\n", st.Attempts, st.Started, shellCommand(r.plan.Workdir, env, argv))
	cmd := exec.CommandContext(r.o.Ctx, argv[0], argv[1:]...)
	cmd.Dir = r.plan.Workdir
	cmd.Env = append(append([]string{}, r.o.Environ...), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procattr.DieWithParent()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := st.save(dir); err != nil {
		return st, false, err
	}
	t0 := time.Now()
	// The child dies with this thread (Pdeathsig): keep the goroutine on it while it runs.
	runtime.LockOSThread()
	err = cmd.Start()
	if err == nil {
		st.PID = cmd.Process.Pid
		_ = st.save(dir)
		if onStart != nil {
			onStart()
		}
		err = cmd.Wait()
	}
	runtime.UnlockOSThread()
	st.Seconds = time.Since(t0).Seconds()
	st.Finished = time.Now().UTC().Format(time.RFC3339)
	switch {
	case err == nil && fileExists(run.Path(runDir, run.MetricsFile)):
		st.Status = Done
		st.Completions++
		zero := 0
		st.ExitCode = &zero
	case r.o.Ctx.Err() != nil:
		st.Status = Interrupted
		st.Error = "the sweep was interrupted"
	default:
		st.Status = Failed
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code := ee.ExitCode()
			st.ExitCode = &code
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				st.Signal = ws.Signal().String()
			}
			st.Error = lastError(filepath.Join(dir, st.Log), off)
		case err != nil:
			st.Error = err.Error()
		default:
			zero := 0
			st.ExitCode = &zero
			st.Error = "train exited 0 but wrote no metrics.json"
		}
		if st.Signal != "" && st.Error == "" {
			st.Error = "killed by " + st.Signal
		}
	}
	fmt.Fprintf(logf, "=== attempt %d: %s after %.1f s\n", st.Attempts, st.Status, st.Seconds)
	return st, true, st.save(dir)
}

// command returns the reproducible train command (no --resume), the one to run now and
// the extra environment. Both are a config.TrainCommand's arguments: train's flag names
// are config's, the ones the CLI parses.
func (r *runner) command(p *Point, runDir, resume, gpu string) (base, argv, env []string) {
	bin := r.o.Binary
	if bin == "" {
		bin = "spectraclip"
	}
	tc := config.TrainCommand{Variant: p.Base.Variant, Out: runDir, Scene: p.Scene}
	if tc.Variant == "" {
		tc.File = p.Base.File
	}
	tc.Overrides = append([]string{}, p.Overrides...)
	userThreads := false
	for _, o := range tc.Overrides {
		userThreads = userThreads || strings.HasPrefix(o, "training.threads=")
	}
	if !userThreads {
		tc.Overrides = append(tc.Overrides, fmt.Sprintf("training.threads=%d", r.threads))
	}
	base = append([]string{bin}, tc.Args()...)
	if resume != "" {
		// A resumed run keeps the config.yaml it started with (threads included, whatever
		// this sweep's workers are now): name only the run and its checkpoint.
		resumed := config.TrainCommand{Out: runDir, Resume: resume}
		argv = append([]string{bin}, resumed.Args()...)
	} else {
		argv = append([]string{}, base...)
	}
	if gpu != "" {
		env = []string{"CUDA_VISIBLE_DEVICES=" + gpu}
	}
	return base, argv, env
}

// spectraclipEnv returns the SPECTRACLIP_ variables of environ, sorted.
func spectraclipEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	sort.Strings(out)
	return out
}

// shellCommand renders a command for a shell.
func shellCommand(dir string, env, argv []string) string {
	var b strings.Builder
	if dir != "" {
		b.WriteString("cd " + shellQuote(dir) + " && ")
	}
	for _, e := range env {
		b.WriteString(shellQuote(e) + " ")
	}
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lastError finds the error a failed train process printed after offset off of its log:
// the last "error:" line, else the last non-empty line.
func lastError(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	lines := bytes.Split(b[off:], []byte("\n"))
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(string(lines[i]))
		if l == "" || strings.HasPrefix(l, "=== attempt") {
			continue
		}
		if strings.HasPrefix(l, "error:") {
			return truncate(strings.TrimSpace(strings.TrimPrefix(l, "error:")), 2000)
		}
		if last == "" {
			last = l
		}
	}
	return truncate(last, 2000)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
