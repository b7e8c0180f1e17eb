package chaos

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// The data-parallel part of the kill harness: the launcher of a 2-rank training
// (`train --nproc-per-node 2`, Gloo on the loopback) is SIGKILLed, after its first complete
// checkpoint or at a random time. A trial passes when no process of the launch is left
// within dpGone (every process whose environment carries the trial's marker, so a rank
// started just before the kill is found too), the run directory is not written after,
// and the user's recovery (`train --out RUN --resume RUN/checkpoints/last
// --nproc-per-node 2`, or the original command when there was no complete checkpoint)
// ends identical to an uninterrupted 2-rank run (sameRun: weights bitwise, metrics.json
// without timings).
//
// go test ./chaos/ runs two trials (after the first checkpoint, and one random time);
// CHAOS_FULL=1 runs ten, checks that two uninterrupted 2-rank runs are identical, and
// prints one summary line. CHAOS_SEED=n fixes the random times.

// dpGone is how long the ranks may outlive their launcher (they take milliseconds; an
// orphan would train on for seconds: the kills leave more than dpGone of training).
const dpGone = 3 * time.Second

// dpEpochs makes a trial run long enough (about 10 s on an idle machine, the first
// checkpoint after about 3 s) that a kill in its first 55 % leaves more than dpGone of
// training to an orphaned rank.
const dpEpochs = "120"

// dpMarker is the variable that marks every process of one trial's launch.
const dpMarker = "CHAOS_DP_TRIAL"

func dpArgs(data, out string) []string {
	args := killArgs("drcnn", data, out)
	for i, a := range args {
		if strings.HasPrefix(a, "training.trainer.max_epochs=") {
			args[i] = "training.trainer.max_epochs=" + dpEpochs
		}
	}
	return append(args, "--nproc-per-node", "2", "--dist-timeout", "30s")
}

// markedProcs lists the live processes whose environment holds marker=value (an exited
// process's environment reads empty).
func markedProcs(marker, value string) []procstat.Proc {
	want := []byte("\x00" + marker + "=" + value + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []procstat.Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), want) {
			continue
		}
		if st, err := procstat.ReadStat(pid); err == nil {
			if p := (procstat.Proc{PID: pid, Start: st.Start}); p.Alive() {
				out = append(out, p)
			}
		}
	}
	return out
}

// dirState lists every file under dir with its size and modification time.
func dirState(dir string) string {
	var lines []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				lines = append(lines, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
			}
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

type dpTrial struct {
	afterCheckpoint bool          // kill once checkpoints/last is complete
	after           time.Duration // else kill after this long
}

type dpOutcome struct {
	killed, gone, quiet, resumed, restarted, identical bool
	goneIn                                             time.Duration
	why                                                string
}

func TestKillDataParallelLauncher(t *testing.T) {
	if why := torch.GlooUnavailable(); why != "" {
		t.Skipf("LibTorch %s: no Gloo backend: %s", torch.Version(), why)
	}
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
	ref := filepath.Join(root, "ref")
	t0 := time.Now()
	if r := RunCLI(t, RunOptions{Dir: root, Env: lib}, dpArgs(data, ref)...); r.Exit != 0 {
		t.Fatalf("2-rank reference run: exit %d\n%s", r.Exit, r.Stderr)
	}
	took := time.Since(t0)
	if full {
		// the same command again must give the same run, or "identical" means nothing (a
		// short run skips it: a nondeterministic training fails its trials anyway)
		again := filepath.Join(root, "again")
		if r := RunCLI(t, RunOptions{Dir: root, Env: lib}, dpArgs(data, again)...); r.Exit != 0 {
			t.Fatalf("second 2-rank reference run: exit %d\n%s", r.Exit, r.Stderr)
		}
		if why := sameRun(ref, again); why != "" {
			t.Errorf("2-rank training is not deterministic: two uninterrupted runs differ (%s); the identical counts below are not meaningful", why)
		}
	}
	trials := []dpTrial{{afterCheckpoint: true}}
	n := 1
	if full {
		n = 9
	}
	for i := 0; i < n; i++ {
		trials = append(trials, dpTrial{after: time.Duration(float64(took) * (0.15 + 0.4*rng.Float64()))})
	}
	var nKilled, nGone, nQuiet, nResumed, nRestarted, nIdentical int
	var slowest time.Duration
	for i, tr := range trials {
		o := runDPKillTrial(t, root, data, ref, i, tr, lib)
		what := fmt.Sprintf("2-rank launcher killed after %v", tr.after.Round(time.Millisecond))
		if tr.afterCheckpoint {
			what = "2-rank launcher killed after its first checkpoint"
		}
		if o.killed {
			nKilled++
			if o.gone {
				nGone++
				slowest = max(slowest, o.goneIn)
			}
			if o.quiet {
				nQuiet++
			}
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
		if o.why != "" {
			t.Errorf("%s: %s", what, o.why)
		} else if testing.Verbose() {
			t.Logf("%s: ok (killed %v, ranks gone in %v, restarted %v)", what, o.killed, o.goneIn.Round(time.Millisecond), o.restarted)
		}
	}
	summary := fmt.Sprintf("chaos kill dp: %d trials, %d launchers killed: ranks gone within %v in %d (slowest %v), run directory untouched after in %d, %d resumed, %d identical (%d restarted for want of a complete checkpoint); %d finished before the kill (not counted)",
		len(trials), nKilled, dpGone, nGone, slowest.Round(time.Millisecond), nQuiet, nResumed, nIdentical, nRestarted, len(trials)-nKilled)
	t.Log(summary)
	if full {
		fmt.Println(summary)
	}
}

func runDPKillTrial(t *testing.T, root, data, ref string, i int, tr dpTrial, lib []string) dpOutcome {
	t.Helper()
	var o dpOutcome
	out := filepath.Join(root, fmt.Sprintf("dp_trial_%03d", i))
	args := dpArgs(data, out)
	mark := fmt.Sprintf("%d-%d", os.Getpid(), i)
	cmd := exec.Command(BinPath, args...)
	cmd.Dir = root
	cmd.Env = append(append(baseEnv(root), lib...), dpMarker+"="+mark)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { // leave nothing behind, whatever happened
		for _, p := range markedProcs(dpMarker, mark) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var fire <-chan time.Time
	if !tr.afterCheckpoint {
		fire = time.After(tr.after)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				o.why = fmt.Sprintf("the run failed before it was killed: %v\n%s", err, stderr.String())
			}
			return o // finished before the kill: not counted
		case <-fire:
			break wait
		case <-tick.C:
			if tr.afterCheckpoint {
				if _, err := run.Verify(filepath.Join(out, "checkpoints", "last")); err == nil {
					break wait
				}
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	<-done
	o.killed = true
	var left []procstat.Proc
	for {
		left = markedProcs(dpMarker, mark)
		if len(left) == 0 || time.Since(killed) > dpGone {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	o.goneIn = time.Since(killed)
	if len(left) > 0 {
		o.why = fmt.Sprintf("%d process(es) of the launch %v still run %v after the launcher's SIGKILL", len(left), left, o.goneIn.Round(time.Millisecond))
		return o
	}
	o.gone = true
	before := dirState(out)
	time.Sleep(time.Second)
	if after := dirState(out); after != before {
		o.why = fmt.Sprintf("the run directory changed after the ranks died:\n%s\n----\n%s", before, after)
		return o
	}
	o.quiet = true
	// recover as a user would: resume with the same number of ranks, else start again
	rec := recoverRun(t, root, lib, out, ref, "the uninterrupted 2-rank run", []string{"--nproc-per-node", "2", "--dist-timeout", "30s"}, args)
	o.resumed, o.restarted, o.identical, o.why = rec.resumed, rec.restarted, rec.identical, rec.why
	return o
}

func lastStderrLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
