package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/run"
)

// rankLines are the lines of a launcher's output that rank r wrote, without the prefix
// (rank 0's own error is among them when a data-parallel command fails).
func rankLines(out string, r int) string {
	prefix := fmt.Sprintf("[rank %d] ", r)
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, prefix); ok {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}

// treeState lists every file under dir with its size and modification time.
func treeState(dir string) string {
	var lines []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			lines = append(lines, fmt.Sprintf("%s %d %s", strings.TrimPrefix(p, dir), fi.Size(), fi.ModTime().Format(time.RFC3339Nano)))
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// sameFinishedRun compares two finished runs byte for byte: the final weights
// (pipeline.weights.pt and checkpoints/last/weights.pt), metrics.json without wall times and
// paths (runSummary), and the names of the kept checkpoints. "" when equal.
func sameFinishedRun(t *testing.T, a, b string) string {
	t.Helper()
	for _, f := range []string{"pipeline.weights.pt", filepath.Join("checkpoints", "last", "weights.pt")} {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil {
			return fmt.Sprintf("%s: %v, %v", f, err1, err2)
		}
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("%s differs (%d and %d bytes)", f, len(x), len(y))
		}
	}
	if sa, sb := runSummary(t, a), runSummary(t, b); sa != sb {
		return fmt.Sprintf("metrics.json differs:\n%s\n%s", sa, sb)
	}
	names := func(runDir string) string {
		ents, _ := os.ReadDir(filepath.Join(runDir, "checkpoints"))
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return strings.Join(n, ",")
	}
	if na, nb := names(a), names(b); na != nb {
		return fmt.Sprintf("kept checkpoints %s and %s", na, nb)
	}
	return ""
}

// TestDataParallelLauncherKilled: SIGKILL the launcher of a real 2-rank training (this test
// binary as spectraclip, --nproc-per-node 2) after its first complete checkpoint. Both rank
// processes (found in /proc as the launcher's children before the kill, and told apart from
// a reused pid by their start time) must be gone within 5 s, and the run directory must not
// change after they are (every file's size and mtime; metrics.json must not appear). Then
// `train --resume RUN/checkpoints/last --nproc-per-node 2` succeeds, and the run ends byte
// for byte as an uninterrupted 2-rank run of the same command ends. The ranks run in a
// process group of their own, led by rank 0, so that one signal reaches them all.
func TestDataParallelLauncherKilled(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	// 100 epochs of 4 steps: about 9 s of training on an idle machine after the first
	// checkpoint, longer than the 5 s the ranks have to die in
	const epochs = "100"
	args := func(out string) []string {
		return append([]string{"train", "--variant", "drcnn", "--out", out, "--nproc-per-node", "2", "--dist-timeout", "30s"}, distTiny(data, epochs, 1)...)
	}
	ref := filepath.Join(dir, "ref")
	if out, err := spectraclipProc(t, nil, args(ref)...); err != nil {
		t.Fatalf("uninterrupted run: %v\nrank 0:\n%s", err, rankLines(out, 0))
	}

	runDir := filepath.Join(dir, "run")
	logf, err := os.Create(filepath.Join(dir, "killed.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// at --log-level warn the ranks write nothing while they train: a rank that logs dies of
	// SIGPIPE at its next line once the launcher (the reader of its output) is gone, but a
	// quiet one would not
	launcher := exec.Command(os.Args[0], append([]string{"--log-level", "warn"}, args(runDir)...)...)
	launcher.Env = append(os.Environ(), envAsMain+"=1", "OMP_NUM_THREADS=1")
	launcher.Stdout, launcher.Stderr = logf, logf // a file: orphans cannot hold up Wait
	if err := launcher.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- launcher.Wait() }()
	var ranks []procstat.Proc
	defer func() { // whatever happened, leave no process behind
		for _, p := range ranks {
			if p.Alive() {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	}()
	for {
		if ranks, err = procstat.Children(launcher.Process.Pid); err != nil {
			t.Fatal(err)
		}
		_, verr := run.Verify(filepath.Join(runDir, "checkpoints", "last"))
		if len(ranks) == 2 && verr == nil {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("the launcher ended before it was killed (%v; ranks seen %v):\n%s", err, ranks, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// the ranks' process group: rank 0's pid, not the launcher's group
	var groups []int
	for _, p := range ranks {
		st, err := procstat.ReadStat(p.PID)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, st.PGRP)
	}
	lst, _ := procstat.ReadStat(launcher.Process.Pid)
	if groups[0] != groups[1] || groups[0] == lst.PGRP || (groups[0] != ranks[0].PID && groups[0] != ranks[1].PID) {
		t.Errorf("rank process groups %v (ranks %v, launcher's group %d): want one group of their own, led by a rank", groups, ranks, lst.PGRP)
	}
	if err := launcher.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-exited
	const within = 5 * time.Second
	var left []procstat.Proc
	for {
		left = left[:0]
		for _, p := range ranks {
			if p.Alive() {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Since(killed) > within {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(killed)
	if len(left) > 0 {
		t.Errorf("%d rank process(es) %v still run %v after the launcher was killed", len(left), left, took.Round(time.Millisecond))
	} else {
		t.Logf("both ranks gone %v after the launcher's SIGKILL", took.Round(time.Millisecond))
	}
	// nothing writes the run directory any more
	before := treeState(runDir)
	time.Sleep(2 * time.Second)
	if after := treeState(runDir); after != before {
		t.Errorf("the run directory changed after the launcher died:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(runDir, "metrics.json")); err == nil {
		t.Errorf("metrics.json was written after the launcher was killed")
	}
	for _, p := range left {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	// a resume of the same world size completes the run as if nothing had happened
	out, err := spectraclipProc(t, nil, "train", "--resume", filepath.Join(runDir, "checkpoints", "last"), "--nproc-per-node", "2", "--dist-timeout", "30s")
	if err != nil {
		t.Fatalf("resume after the launcher was killed: %v\nrank 0:\n%s\nlauncher: %s", err, rankLines(out, 0), lastLine(out))
	}
	if why := sameFinishedRun(t, ref, runDir); why != "" {
		t.Errorf("the resumed run differs from the uninterrupted one: %s", why)
	}
}

// TestDataParallelLauncherForwardsSIGTERM: SIGTERM to the launcher (a scheduler's stop)
// reaches both ranks through their process group: the launcher then ends on its own with
// an error naming a rank ended by the signal, and no rank process is left.
func TestDataParallelLauncherForwardsSIGTERM(t *testing.T) {
	needGloo(t)
	l := startQuietLaunch(t)
	launcher, exited, out := l.cmd, l.exited, &l.out
	ranks := l.waitRanks(t, false)
	time.Sleep(time.Second) // well into the rendezvous or training
	if err := launcher.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		last := lastLine(out.String())
		if err == nil || !strings.Contains(last, " of 2 failed (signal: terminated)") {
			t.Errorf("launcher after SIGTERM: %v, last line %q; want an error naming a rank ended by SIGTERM", err, last)
		}
	case <-time.After(60 * time.Second): // a hang guard
		_ = launcher.Process.Kill()
		t.Fatalf("the launcher still runs 60 s after SIGTERM:\n%s", out.String())
	}
	for _, p := range ranks {
		if p.Alive() {
			t.Errorf("rank process %d outlived the launcher's SIGTERM", p.PID)
		}
	}
}

// TestDataParallelLauncherCtrlZ: the ranks run in a process group of their own, so a
// terminal's Ctrl-Z (SIGTSTP to the launcher) must be passed on: after SIGTSTP the launcher and
// both ranks are stopped (state T in /proc) and the run directory stays as it is; after SIGCONT
// to the launcher, both ranks run again. Before the launcher passed them on, the ranks kept
// training while the launcher was stopped.
func TestDataParallelLauncherCtrlZ(t *testing.T) {
	needGloo(t)
	l := startQuietLaunch(t)
	launcher, exited, out, runDir := l.cmd, l.exited, &l.out, l.runDir
	ranks := l.waitRanks(t, true)
	t.Cleanup(func() { _ = launcher.Process.Signal(syscall.SIGCONT) })
	pids := []int{launcher.Process.Pid, ranks[0].PID, ranks[1].PID}
	// waitStates polls until every pid's state satisfies ok, or 10 s pass; it returns the states.
	waitStates := func(ok func(byte) bool) (string, bool) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var states []byte
			all := true
			for _, pid := range pids {
				st, err := procstat.ReadStat(pid)
				if err != nil {
					t.Fatalf("pid %d: %v", pid, err)
				}
				states = append(states, st.State)
				all = all && ok(st.State)
			}
			if all || time.Now().After(deadline) {
				return string(states), all
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := launcher.Process.Signal(syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	if states, ok := waitStates(func(s byte) bool { return s == 'T' }); !ok {
		t.Fatalf("after SIGTSTP the launcher and ranks are in states %q; want all stopped (T)", states)
	}
	before := treeState(runDir)
	time.Sleep(1500 * time.Millisecond)
	if after := treeState(runDir); after != before {
		t.Errorf("the run directory changed while the ranks were stopped")
	}
	if err := launcher.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if states, ok := waitStates(func(s byte) bool { return s != 'T' }); !ok {
		t.Fatalf("after SIGCONT the launcher and ranks are in states %q; want all running again", states)
	}
	select {
	case err := <-exited:
		t.Fatalf("the launcher ended after SIGCONT: %v\n%s", err, out.String())
	default:
	}
}

// quietLaunch is a data-parallel training started by startQuietLaunch.
type quietLaunch struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // its output and its ranks'
	exited chan error   // receives its Wait
	runDir string
}

// startQuietLaunch synthesises a small data set and starts this test binary as `spectraclip
// --log-level warn train --variant drcnn --nproc-per-node 2` on it for 100000 epochs (it never
// ends on its own). At cleanup the launcher and every rank found by waitRanks are killed.
func startQuietLaunch(t *testing.T) *quietLaunch {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	l := &quietLaunch{exited: make(chan error, 1), runDir: filepath.Join(dir, "run")}
	l.cmd = exec.Command(os.Args[0], append([]string{"--log-level", "warn", "train", "--variant", "drcnn", "--out", l.runDir, "--nproc-per-node", "2"}, distTiny(data, "100000", 1)...)...)
	l.cmd.Env = append(os.Environ(), envAsMain+"=1", "OMP_NUM_THREADS=1")
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.exited <- l.cmd.Wait() }()
	t.Cleanup(func() { _ = l.cmd.Process.Kill() })
	return l
}

// waitRanks waits until the launcher has both ranks running (and, with checkpointed, until
// the run has a complete checkpoint, so training is under way) and returns them; they are
// killed at cleanup if still alive.
func (l *quietLaunch) waitRanks(t *testing.T, checkpointed bool) []procstat.Proc {
	t.Helper()
	var ranks []procstat.Proc
	t.Cleanup(func() {
		for _, p := range ranks {
			if p.Alive() {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
	})
	for {
		found, err := procstat.Children(l.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		ranks = found
		ready := len(ranks) == 2
		if ready && checkpointed {
			_, verr := run.Verify(filepath.Join(l.runDir, "checkpoints", "last"))
			ready = verr == nil
		}
		if ready {
			return ranks
		}
		select {
		case err := <-l.exited:
			t.Fatalf("the launcher ended early: %v\n%s", err, l.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
