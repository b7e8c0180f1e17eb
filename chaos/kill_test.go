package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/spectraclip/spectraclip/torch"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/run"
)

// The kill part of the harness: a training run is SIGKILLed at a checkpoint kill point
// (before every write and every rename of a checkpoint, through the test hook
// SPECTRACLIP_TEST_KILL_AT) or at a random time, then recovered the way a user would:
// `train --out RUN --resume RUN/checkpoints/last` with no other argument, or, when the run
// had no complete checkpoint yet, the original command again. A trial counts as resumed when
// that recovery exits 0, and as identical when the final weights (pipeline.weights.pt and
// checkpoints/last/weights.pt, bitwise) and metrics.json (val, test, history without
// timings, selected bands, evaluated checkpoint) equal an uninterrupted run's.
//
// go test ./chaos/ runs a handful of kills; CHAOS_FULL=1 kills at every kill point of a
// DRCNN and a Concrete run plus random times, and prints one summary line of counts.
// CHAOS_SEED=n fixes the random times (default: from the clock, printed).

// killEpochs is the length of a trial run; with save_top_k 2 the last epoch prunes one.
const killEpochs = "3"

func killArgs(variant, data, out string) []string {
	return []string{"--log-level", "warn", "train", "--variant", variant, "--out", out,
		"data.root=" + data, "+pipeline.detector.image_size=32", "training.threads=1",
		"training.trainer.max_epochs=" + killEpochs, "training.optimizer.lr=0.05",
		"training.callbacks.checkpoint.monitor=val/loss", "training.callbacks.checkpoint.mode=min",
		"training.callbacks.checkpoint.save_top_k=2"}
}

// pinnedLib is an environment entry that makes the trial processes load a private copy of
// build/libspectraclip_c.so (the binary's RUNPATH yields to LD_LIBRARY_PATH), so that a
// rebuild of the shim while the harness runs cannot make runs of one trial set differ.
func pinnedLib(t *testing.T) []string {
	t.Helper()
	src := filepath.Join(repoRoot, torch.BuildDir, "libspectraclip_c.so")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Logf("not pinning the shim library: %v", err)
		return nil
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libspectraclip_c.so"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	v := dir
	if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
		v += ":" + old
	}
	return []string{"LD_LIBRARY_PATH=" + v}
}

// killData generates the trials' small dataset once per test.
func killData(t *testing.T, dir string) string {
	t.Helper()
	data := filepath.Join(dir, "data")
	cfg := dataset.DefaultSynthConfig()
	cfg.Frames, cfg.Height, cfg.Width = 8, 32, 32
	if err := dataset.GenerateSynthetic(data, cfg); err != nil {
		t.Fatal(err)
	}
	return data
}

type killTrial struct {
	variant string
	at      int           // kill point (1-based), or 0
	after   time.Duration // random-time kill, when at == 0
	label   string
}

type killOutcome struct {
	killed, resumed, restarted, identical bool
	why                                   string
}

func TestKillAndResume(t *testing.T) {
	full := os.Getenv("CHAOS_FULL") != ""
	seed := time.Now().UnixNano()
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	rng := rand.New(rand.NewSource(seed))
	t.Logf("CHAOS_SEED=%d", seed)
	root := t.TempDir()
	data := killData(t, root)
	lib := pinnedLib(t)
	var trials []killTrial
	refs := map[string]string{}
	for _, v := range []string{"drcnn", "concrete"} {
		// the reference: uninterrupted, listing its kill points
		ref := filepath.Join(root, "ref_"+v)
		log := filepath.Join(root, "killpoints_"+v+".log")
		t0 := time.Now()
		r := RunCLI(t, RunOptions{Dir: root, Env: append([]string{run.EnvKillLog + "=" + log}, lib...)}, killArgs(v, data, ref)...)
		took := time.Since(t0)
		if r.Exit != 0 {
			t.Fatalf("%s reference run: exit %d\n%s", v, r.Exit, r.Stderr)
		}
		points := readKillPoints(t, log)
		if len(points) == 0 {
			t.Fatalf("%s reference run passed no kill point", v)
		}
		refs[v] = ref
		// the same command again must give the same run, or "identical" means nothing
		again := filepath.Join(root, "again_"+v)
		if r := RunCLI(t, RunOptions{Dir: root, Env: lib}, killArgs(v, data, again)...); r.Exit != 0 {
			t.Fatalf("%s second reference run: exit %d\n%s", v, r.Exit, r.Stderr)
		}
		if why := sameRun(ref, again); why != "" {
			t.Errorf("%s is not deterministic: two uninterrupted runs differ (%s); the identical counts below are not meaningful for it", v, why)
		}
		if full {
			for i, p := range points {
				trials = append(trials, killTrial{variant: v, at: i + 1, label: p})
			}
			for i := 0; i < 6; i++ {
				trials = append(trials, killTrial{variant: v, after: time.Duration(float64(took) * (0.05 + 0.9*rng.Float64()))})
			}
		} else {
			// a handful: mid-way through the replacement of last (old one moved aside, new one
			// not yet in place), between the weights and the optimizer of a top-k checkpoint,
			// and one random time
			for _, want := range []string{"rename staged last into place", "write optimizer epoch=01"} {
				for i, p := range points {
					if p == want {
						trials = append(trials, killTrial{variant: v, at: i + 1, label: p})
						break
					}
				}
			}
			trials = append(trials, killTrial{variant: v, after: time.Duration(float64(took) * (0.2 + 0.6*rng.Float64()))})
		}
	}
	var nKilled, nResumed, nRestarted, nIdentical int
	for i, tr := range trials {
		o := runKillTrial(t, root, data, refs[tr.variant], i, tr, lib)
		what := fmt.Sprintf("%s kill at point %d (%s)", tr.variant, tr.at, tr.label)
		if tr.at == 0 {
			what = fmt.Sprintf("%s kill after %v", tr.variant, tr.after.Round(time.Millisecond))
		}
		// a random-time trial whose run finished before the timer fired proves nothing about
		// recovery: it is counted apart, not as resumed
		if o.killed {
			nKilled++
			if o.resumed || o.restarted {
				nResumed++
			}
			if o.restarted {
				nRestarted++
			}
			if o.identical {
				nIdentical++
			}
		}
		if !(o.resumed || o.restarted) || !o.identical {
			t.Errorf("%s: %s", what, o.why)
		} else if testing.Verbose() {
			t.Logf("%s: ok (killed %v, restarted %v)", what, o.killed, o.restarted)
		}
	}
	summary := fmt.Sprintf("chaos kill: %d trials, %d killed: %d resumed, %d identical (%d restarted for want of a complete checkpoint); %d finished before the kill (not counted)",
		len(trials), nKilled, nResumed, nIdentical, nRestarted, len(trials)-nKilled)
	t.Log(summary)
	if full {
		fmt.Println(summary)
	}
}

func readKillPoints(t *testing.T, log string) []string {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, label, _ := strings.Cut(sc.Text(), "\t")
		out = append(out, label)
	}
	return out
}

func runKillTrial(t *testing.T, root, data, ref string, i int, tr killTrial, lib []string) killOutcome {
	t.Helper()
	var o killOutcome
	out := filepath.Join(root, fmt.Sprintf("trial_%03d_%s", i, tr.variant))
	args := killArgs(tr.variant, data, out)
	if tr.at > 0 {
		r := RunCLI(t, RunOptions{Dir: root, Env: append([]string{run.EnvKillAt + "=" + strconv.Itoa(tr.at)}, lib...)}, args...)
		if r.Signal != "killed" {
			o.why = fmt.Sprintf("the run was not killed at its kill point: exit %d signal %q\n%s", r.Exit, r.Signal, r.Stderr)
			return o
		}
		o.killed = true
	} else {
		cmd := exec.Command(BinPath, args...)
		cmd.Dir = root
		cmd.Env = append(baseEnv(root), lib...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				o.why = fmt.Sprintf("the run failed before it was killed: %v\n%s", err, stderr.String())
				return o
			}
		case <-time.After(tr.after):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			o.killed = true
		}
	}
	// recover as a user would: resume with nothing but the checkpoint, else start again
	rec := recoverRun(t, root, lib, out, ref, "the uninterrupted run", nil, args)
	o.resumed, o.restarted, o.identical, o.why = rec.resumed, rec.restarted, rec.identical, rec.why
	return o
}

// recovery is how recoverRun ended: resumed from the last checkpoint, or started again for want
// of a complete one; identical when the recovered run equals the reference; why when not.
type recovery struct {
	resumed, restarted, identical bool
	why                           string
}

// recoverRun recovers the killed run out as a user would: `train --resume
// out/checkpoints/last` (plus resumeExtra), or, where no complete checkpoint exists yet, the
// original command startArgs again. Then no temporary file may be left and the run must equal
// ref (named refName in the reason) by sameRun.
func recoverRun(t *testing.T, root string, lib []string, out, ref, refName string, resumeExtra, startArgs []string) (o recovery) {
	t.Helper()
	resume := append([]string{"--log-level", "warn", "train", "--out", out, "--resume", filepath.Join(out, "checkpoints", "last")}, resumeExtra...)
	r := RunCLI(t, RunOptions{Dir: root, Env: lib}, resume...)
	switch {
	case r.Exit == 0:
		o.resumed = true
	case strings.Contains(r.Stderr, "nothing to resume") || strings.Contains(r.Stderr, "not a run directory") || strings.Contains(r.Stderr, "does not exist"):
		if strings.Contains(r.Stderr, "panic") {
			o.why = "resume crashed:\n" + r.Stderr
			return o
		}
		r2 := RunCLI(t, RunOptions{Dir: root, Env: lib}, startArgs...)
		if r2.Exit != 0 {
			o.why = fmt.Sprintf("no complete checkpoint (%s), and starting again failed: exit %d\n%s", lastStderrLine(r.Stderr), r2.Exit, r2.Stderr)
			return o
		}
		o.restarted = true
	default:
		o.why = fmt.Sprintf("resume failed: exit %d signal %q\n%s", r.Exit, r.Signal, r.Stderr)
		return o
	}
	if left := leftovers(out); len(left) > 0 {
		o.why = fmt.Sprintf("temporary files left after recovery: %v", left)
		return o
	}
	if why := sameRun(ref, out); why != "" {
		o.why = "differs from " + refName + ": " + why
		return o
	}
	o.identical = true
	return o
}

// leftovers lists staging, previous-version and temporary entries in a run directory.
func leftovers(runDir string) []string {
	var out []string
	for _, d := range []string{runDir, filepath.Join(runDir, "checkpoints")} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if n := e.Name(); strings.Contains(n, ".tmp") || strings.HasSuffix(n, ".prev") {
				out = append(out, filepath.Join(d, n))
			}
		}
	}
	return out
}

// sameRun compares two finished runs: weights bitwise, metrics without timings and paths.
func sameRun(a, b string) string {
	for _, f := range []string{"pipeline.weights.pt", "checkpoints/last/weights.pt"} {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil {
			return fmt.Sprintf("%s: %v %v", f, err1, err2)
		}
		if !bytes.Equal(x, y) {
			return f + " differs"
		}
	}
	ma, err1 := metricsForCompare(filepath.Join(a, "metrics.json"))
	mb, err2 := metricsForCompare(filepath.Join(b, "metrics.json"))
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("metrics.json: %v %v", err1, err2)
	}
	if !bytes.Equal(ma, mb) {
		return fmt.Sprintf("metrics.json differs:\n%s\n%s", ma, mb)
	}
	ea, eb := epochDirs(a), epochDirs(b)
	if ea != eb {
		return fmt.Sprintf("top-k checkpoints %s vs %s", ea, eb)
	}
	return ""
}

func metricsForCompare(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	keep := map[string]any{}
	for _, k := range []string{"val", "test", "selected_bands", "checkpoint", "checkpoint_epoch", "epochs", "trained", "variant", "detector"} {
		keep[k] = m[k]
	}
	var hist []any
	h, _ := m["history"].([]any)
	for _, e := range h {
		if em, ok := e.(map[string]any); ok {
			delete(em, "seconds")
			hist = append(hist, em)
		}
	}
	keep["history"] = hist
	return json.Marshal(keep)
}

func epochDirs(runDir string) string {
	ents, _ := os.ReadDir(filepath.Join(runDir, "checkpoints"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// Two writers on one run directory: two train processes started together with the same
// --out; exactly one runs, the other fails at once naming the first's pid. After the
// holder is SIGKILLed the kernel has released the lock, and the run resumes.
func TestTwoWritersOnOneRunDir(t *testing.T) {
	root := t.TempDir()
	data := killData(t, root)
	out := filepath.Join(root, "run")
	args := killArgs("drcnn", data, out)
	for i, a := range args {
		if strings.HasPrefix(a, "training.trainer.max_epochs=") {
			args[i] = "training.trainer.max_epochs=100000" // runs until killed
		}
	}
	type proc struct {
		cmd    *exec.Cmd
		stderr bytes.Buffer
		done   chan error
	}
	start := func() *proc {
		p := &proc{cmd: exec.Command(BinPath, args...), done: make(chan error, 1)}
		p.cmd.Dir, p.cmd.Env, p.cmd.Stderr = root, baseEnv(root), &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		return p
	}
	a, b := start(), start()
	defer func() {
		for _, p := range []*proc{a, b} {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
			}
		}
	}()
	// the loser exits on its own; wait for it (the winner trains until killed)
	var loser, winner *proc
	select {
	case <-a.done:
		loser, winner = a, b
	case <-b.done:
		loser, winner = b, a
	}
	msg := loser.stderr.String()
	if loser.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(msg, "pid "+strconv.Itoa(winner.cmd.Process.Pid)) {
		t.Fatalf("the second writer: exit %d, want 1 and an error naming pid %d:\n%s", loser.cmd.ProcessState.ExitCode(), winner.cmd.Process.Pid, msg)
	}
	if n := strings.Count(strings.TrimSpace(msg), "\n"); n != 0 || !strings.HasPrefix(msg, "error:") {
		t.Errorf("the second writer should print one error line, got:\n%s", msg)
	}
	// wait for the winner's first complete checkpoint, then kill it
	for {
		if _, err := run.Verify(filepath.Join(out, "checkpoints", "last")); err == nil {
			break
		}
		select {
		case err := <-winner.done:
			t.Fatalf("the first writer ended: %v\n%s", err, winner.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = winner.cmd.Process.Signal(syscall.SIGKILL)
	<-winner.done
	// the lock died with its holder: a resume (stopping at once) runs
	r := RunCLI(t, RunOptions{Dir: root}, "--log-level", "warn", "train", "--out", out, "--resume", filepath.Join(out, "checkpoints", "last"), "training.trainer.max_epochs=1")
	if r.Exit != 0 {
		t.Fatalf("resume after the holder died: exit %d\n%s", r.Exit, r.Stderr)
	}
}
