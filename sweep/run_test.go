package sweep

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/run"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// spectraclipBinary builds the real CLI once for the package's tests: every point of a
// sweep is a `spectraclip train` process.
func spectraclipBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "sweep-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "spectraclip")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/spectraclip/spectraclip/cmd/spectraclip").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/spectraclip: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// tinyData generates the small synthetic set the tiny runs share.
func tinyData(t *testing.T, root string) {
	t.Helper()
	sc := dataset.DefaultSynthConfig()
	sc.Frames, sc.Height, sc.Width = 8, 32, 32
	if err := dataset.EnsureSynthetic(root, sc); err != nil {
		t.Fatal(err)
	}
}

// tiny are overrides that make a run take a few seconds.
func tiny(data string, epochs int) []string {
	return []string{"data.root=" + data, "data.generate_if_missing=true", "data.synth.frames=8", "data.synth.height=32", "data.synth.width=32",
		fmt.Sprintf("training.trainer.max_epochs=%d", epochs), "+pipeline.detector.image_size=32"}
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(&bytes.Buffer{})
	return l
}

func readMetrics(t *testing.T, path string) *run.Result {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r run.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// A point that fails is recorded with its exit status and error and the others go on; a
// rerun leaves finished and failed points alone; --retry-failed reruns the failed one.
func TestFailedPointIsRecordedOthersGoOn(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	good := filepath.Join(work, "data")
	tinyData(t, good)
	missing := filepath.Join(work, "later")
	spec := &Spec{Name: "faults", Bases: []Base{{Variant: "drcnn"}}, Seeds: []uint64{0, 1},
		Overrides: append(tiny(good, 1), "training.threads=1"),
		Data: []DataSource{{Name: "good", Root: good},
			{Name: "missing", Root: missing, Overrides: []string{"data.generate_if_missing=false"}}}}
	dir := filepath.Join(work, "sweep")
	o := Options{Dir: dir, Spec: spec, Binary: bin, Workers: 2, Point: -1, Log: quietLog(), Workdir: work}
	sum, err := Execute(o)
	if !errors.Is(err, ErrPointsFailed) {
		t.Fatalf("error %v, want failed points", err)
	}
	if sum.Done != 2 || sum.Failed != 2 || sum.Ran != 4 {
		t.Fatalf("summary %+v", sum)
	}
	for _, row := range sum.Results.Points {
		if row.Data == "good" {
			if row.Status != Done || row.Test["auroc"] <= 0 {
				t.Errorf("point %d: %s %v", row.Index, row.Status, row.Test)
			}
			m := readMetrics(t, filepath.Join(dir, row.RunDir, "metrics.json"))
			if m.Seed != *row.Seed || m.Threads != 1 || m.Test["auroc"] != row.Test["auroc"] {
				t.Errorf("point %d: metrics.json seed %d threads %d", row.Index, m.Seed, m.Threads)
			}
			continue
		}
		if row.Status != Failed || row.ExitCode == nil || *row.ExitCode != 1 || !strings.Contains(row.Error, "data.root") || !strings.Contains(row.Error, missing) {
			t.Errorf("failing point %d: status %s exit %v error %q", row.Index, row.Status, row.ExitCode, row.Error)
		}
	}
	// sweep.csv, written by encoding/csv, read back
	f, err := os.Open(filepath.Join(dir, "sweep.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 5 {
		t.Fatalf("sweep.csv: %d records, %v", len(recs), err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	if recs[3][col["status"]] != "failed" || recs[3][col["exit_code"]] != "1" || recs[1][col["status"]] != "done" || recs[1][col["test_auroc"]] == "" {
		t.Errorf("sweep.csv rows: %v", recs)
	}
	rep, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(rep), "## Failed points") || !strings.Contains(string(rep), "--retry-failed") {
		t.Errorf("report.md:\n%s", rep)
	}
	// The recorded command reproduces a point: run it by hand into another directory.
	var st State
	b, _ := os.ReadFile(statePath(dir, sum.Results.Points[0].ID))
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Command, " train --variant drcnn --out ") || !strings.Contains(st.Command, "training.seed=0") {
		t.Errorf("recorded command %q", st.Command)
	}
	again := filepath.Join(work, "again")
	cmd := exec.Command("bash", "-c", strings.Replace(st.Command, filepath.Join(dir, sum.Results.Points[0].RunDir), again, 1))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recorded command: %v\n%s", err, out)
	}
	m0 := readMetrics(t, filepath.Join(dir, sum.Results.Points[0].RunDir, "metrics.json"))
	m1 := readMetrics(t, filepath.Join(again, "metrics.json"))
	for k, v := range m0.Test {
		if m1.Test[k] != v {
			t.Errorf("rerun of the recorded command: test %s %v, sweep had %v", k, m1.Test[k], v)
		}
	}

	// Rerun: nothing runs; the failed points stay failed.
	o.Spec = nil
	sum, err = Execute(o)
	if !errors.Is(err, ErrPointsFailed) || sum.Ran != 0 || sum.Skipped != 4 {
		t.Fatalf("rerun: %+v %v", sum, err)
	}
	// --retry-failed, now that the data exists: only the failed points run, and finish.
	tinyData(t, missing)
	o.RetryFailed = true
	sum, err = Execute(o)
	if err != nil || sum.Ran != 2 || sum.Done != 4 {
		t.Fatalf("retry: %+v %v", sum, err)
	}
	for _, row := range sum.Results.Points {
		want := 1
		if row.Data == "missing" {
			want = 2
		}
		if row.Attempts != want {
			t.Errorf("point %d: %d attempts, want %d", row.Index, row.Attempts, want)
		}
	}
	// The failed attempts left no run directory to keep aside (train removes what it made
	// when it fails before writing a checkpoint); their logs keep the error.
	if ents, _ := os.ReadDir(filepath.Join(dir, "attic")); len(ents) != 0 {
		t.Errorf("attic holds %d entries, want none (the failed runs left nothing)", len(ents))
	}
	for _, row := range sum.Results.Points {
		if row.Data != "missing" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "logs", row.ID+".log"))
		if err != nil || !strings.Contains(string(b), "error:") {
			t.Errorf("point %d: the log of its failed attempt lacks the error (%v)", row.Index, err)
		}
	}
}

// Two workers give the same results as one worker, point by point, bit for bit (each run
// has one thread either way).
func TestWorkersGiveSameResultsAsSequential(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	tinyData(t, data)
	spec := func() *Spec {
		return &Spec{Name: "par", Bases: []Base{{Variant: "drcnn"}, {Variant: "concrete"}}, Seeds: []uint64{0, 1},
			Overrides: tiny(data, 2), Metric: DefaultMetric}
	}
	var results [2]*Results
	for i, w := range []int{1, 2} {
		sum, err := Execute(Options{Dir: filepath.Join(work, fmt.Sprint("w", w)), Spec: spec(), Binary: bin, Workers: w, Threads: 1, Point: -1, Log: quietLog(), Workdir: work})
		if err != nil {
			t.Fatalf("workers %d: %v", w, err)
		}
		results[i] = sum.Results
	}
	if len(results[0].Points) != 4 {
		t.Fatalf("%d points", len(results[0].Points))
	}
	for i, a := range results[0].Points {
		b := results[1].Points[i]
		if a.ID != b.ID || a.Status != Done || b.Status != Done {
			t.Fatalf("point %d: %s %s vs %s %s", i, a.ID, a.Status, b.ID, b.Status)
		}
		for k, v := range a.Test {
			if b.Test[k] != v {
				t.Errorf("point %d test %s: sequential %v, 2 workers %v", i, k, v, b.Test[k])
			}
		}
		ha := readMetrics(t, filepath.Join(work, "w1", a.RunDir, "metrics.json")).History
		hb := readMetrics(t, filepath.Join(work, "w2", b.RunDir, "metrics.json")).History
		if len(ha) != 3 || len(hb) != 3 { // epoch 0 (the initialisation, no train loss) and 2 training epochs
			t.Fatalf("point %d: history %d/%d entries, want 3", i, len(ha), len(hb))
		}
		for e := range ha {
			if la, lb := float64(ha[e].TrainLoss), float64(hb[e].TrainLoss); la != lb && !(e == 0 && math.IsNaN(la) && math.IsNaN(lb)) {
				t.Errorf("point %d epoch %d train loss %v vs %v", i, e, ha[e].TrainLoss, hb[e].TrainLoss)
			}
		}
	}
	// The seeds differ, so the points of a setting differ too (the sweep really passed them).
	if results[0].Points[0].Test["auroc"] == results[0].Points[1].Test["auroc"] && results[0].Points[0].Test["average_precision"] == results[0].Points[1].Test["average_precision"] {
		t.Errorf("seeds 0 and 1 of drcnn gave identical test metrics: %v", results[0].Points[0].Test)
	}
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	if i := strings.LastIndex(s, ")"); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// SIGKILL of the sweep process in the middle: its train processes die with it, a rerun
// finishes every point, resumes the interrupted ones from their checkpoints, and no point
// runs to completion twice.
func TestSigkillSweepThenRerun(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the train processes die with the sweep through Linux's parent-death signal")
	}
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	tinyData(t, data)
	dir := filepath.Join(work, "sweep")
	args := []string{"--log-level", "warn", "sweep", "--out", dir, "--variant", "drcnn", "--seeds", "3", "--workers", "2", "--threads", "1"}
	args = append(args, tiny(data, 12)...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = work
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Wait (by state, not by time) for a finished point and a running one with a checkpoint.
	var plan *Plan
	var killedPIDs []int
	deadline := time.Now().Add(3 * time.Minute) // a guard against a hang, not a timing
	for {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no finished and checkpointed-running point appeared; stderr:\n%s", stderr.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("the sweep ended before it could be killed (%v); make its runs longer; stderr:\n%s", err, stderr.String())
		default:
		}
		time.Sleep(20 * time.Millisecond)
		if plan == nil {
			if p, err := LoadPlan(dir); err == nil {
				plan = p
			}
			continue
		}
		done, ckpt := 0, 0
		var pids []int
		for i := range plan.Points {
			st, err := LoadState(dir, &plan.Points[i])
			if err != nil {
				continue // being renamed into place
			}
			switch st.Status {
			case Done:
				done++
			case Running:
				if st.PID > 0 && checkpointPrefix(filepath.Join(dir, plan.Points[i].RunDir)) != "" && !fileExists(filepath.Join(dir, plan.Points[i].RunDir, "metrics.json")) {
					ckpt++
				}
				if st.PID > 0 {
					pids = append(pids, st.PID)
				}
			}
		}
		if done >= 1 && ckpt >= 1 {
			killedPIDs = pids
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	// its train processes die with it (gone, or zombies waiting for init to reap them)
	for _, pid := range killedPIDs {
		for i := 0; ; i++ {
			s := procState(pid)
			if s == "gone" || s == "Z" {
				break
			}
			if i > 500 {
				t.Fatalf("train process %d outlived the killed sweep (state %s)", pid, s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	before := map[string]*State{}
	mtimes := map[string]time.Time{}
	for i := range plan.Points {
		p := &plan.Points[i]
		st, err := LoadState(dir, p)
		if err != nil {
			t.Fatalf("state after SIGKILL: %v", err)
		}
		before[p.ID] = st
		if st.Status == Done {
			fi, err := os.Stat(filepath.Join(dir, p.RunDir, "metrics.json"))
			if err != nil {
				t.Fatal(err)
			}
			mtimes[p.ID] = fi.ModTime()
		}
	}
	// rerun: `spectraclip sweep --out DIR` alone (the plan is in DIR), with another number of
	// workers and threads than before: a resumed run keeps its own config, threads included
	out, err := exec.Command(bin, "--log-level", "warn", "sweep", "--out", dir, "--workers", "1", "--threads", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	resumed := 0
	for i := range plan.Points {
		p := &plan.Points[i]
		st, err := LoadState(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != Done || st.Completions != 1 {
			t.Errorf("point %d: %s, %d completions", p.Index, st.Status, st.Completions)
		}
		// the train output says so too: exactly one successful `train` per point
		log, _ := os.ReadFile(filepath.Join(dir, st.Log))
		if n := strings.Count(string(log), "\ntest: iou "); n != 1 {
			t.Errorf("point %d: %d train processes finished (log %s)", p.Index, n, st.Log)
		}
		switch before[p.ID].Status {
		case Done:
			fi, _ := os.Stat(filepath.Join(dir, p.RunDir, "metrics.json"))
			if st.Attempts != before[p.ID].Attempts || !fi.ModTime().Equal(mtimes[p.ID]) {
				t.Errorf("finished point %d was run again", p.Index)
			}
		case Running:
			if st.Resumed != "" {
				resumed++
				m := readMetrics(t, filepath.Join(dir, p.RunDir, "metrics.json"))
				if len(m.History) != 13 {
					t.Errorf("resumed point %d: %d entries of history, want 13 (epoch 0, the initialisation, and 12 training epochs)", p.Index, len(m.History))
				}
			}
		}
	}
	if resumed == 0 {
		t.Errorf("no interrupted point resumed from its checkpoint")
	}
	var res Results
	b, _ := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err := json.Unmarshal(b, &res); err != nil || len(res.Points) != 3 || len(res.Settings) != 1 || res.Settings[0].Done != 3 {
		t.Errorf("sweep.json: %v %+v", err, res.Settings)
	}
}

// --gpus runs one worker per listed device and hands each train process exactly one of
// them as CUDA_VISIBLE_DEVICES, with the CPU cores divided between the workers. A wrapper
// script in front of the real binary records what each process was given.
func TestGPUsOneWorkerEach(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	tinyData(t, data)
	seen := filepath.Join(work, "seen.txt")
	wrapper := filepath.Join(work, "spectraclip-wrapper")
	script := "#!/bin/sh\necho \"$CUDA_VISIBLE_DEVICES $*\" >> " + seen + "\nexec " + bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &Spec{Name: "gpus", Bases: []Base{{Variant: "pca"}}, Seeds: []uint64{0, 1, 2}, Overrides: tiny(data, 1)}
	sum, err := Execute(Options{Dir: filepath.Join(work, "sweep"), Spec: spec, Binary: wrapper, GPUs: []string{"3", "5"}, Point: -1, Log: quietLog(), Workdir: work})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Done != 3 {
		t.Fatalf("%+v", sum)
	}
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d train processes, want 3:\n%s", len(lines), b)
	}
	threads := fmt.Sprintf("training.threads=%d", max(1, runtime.NumCPU()/2))
	for _, l := range lines {
		dev, args, _ := strings.Cut(l, " ")
		if (dev != "3" && dev != "5") || !strings.HasPrefix(args, "train --variant pca") || !strings.HasSuffix(args, threads) {
			t.Errorf("a train process got CUDA_VISIBLE_DEVICES=%q and %q (want 3 or 5, and %s)", dev, args, threads)
		}
	}
	for i := range sum.Results.Points {
		st, _ := LoadState(sum.Dir, &Point{Index: i, ID: sum.Results.Points[i].ID})
		if !strings.HasPrefix(st.Command, "cd "+work+" && CUDA_VISIBLE_DEVICES="+st.GPU+" ") {
			t.Errorf("recorded command %q lacks its device %q", st.Command, st.GPU)
		}
	}
}

// Cancelling a sweep (SIGINT/SIGTERM in the CLI) stops its train processes, records them
// as interrupted, leaves the points not started pending, and a rerun finishes the sweep.
func TestCancelledSweepIsInterruptedThenFinishes(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	tinyData(t, data)
	dir := filepath.Join(work, "sweep")
	spec := &Spec{Name: "cancel", Bases: []Base{{Variant: "drcnn"}}, Seeds: []uint64{0, 1, 2}, Overrides: tiny(data, 12)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		sum *Summary
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := Execute(Options{Dir: dir, Spec: spec, Binary: bin, Workers: 1, Threads: 1, Point: -1, Log: quietLog(), Workdir: work, Ctx: ctx})
		ch <- result{s, err}
	}()
	// cancel once the first point runs (by its state, not by time)
	var pid int
	for pid == 0 {
		select {
		case r := <-ch:
			t.Fatalf("the sweep ended before it was cancelled: %+v %v", r.sum, r.err)
		case <-time.After(20 * time.Millisecond):
		}
		if plan, err := LoadPlan(dir); err == nil {
			if st, err := LoadState(dir, &plan.Points[0]); err == nil && st.Status == Running {
				pid = st.PID
			}
		}
	}
	cancel()
	r := <-ch
	if r.err == nil || !strings.Contains(r.err.Error(), "interrupted") {
		t.Fatalf("error %v", r.err)
	}
	if s := procState(pid); s != "gone" && s != "Z" {
		t.Errorf("train process %d still runs (state %s)", pid, s)
	}
	rows := r.sum.Results.Points
	if rows[0].Status != Interrupted || rows[1].Status != Pending || rows[2].Status != Pending || r.sum.Pending != 3 {
		t.Fatalf("statuses %s %s %s, summary %+v", rows[0].Status, rows[1].Status, rows[2].Status, r.sum)
	}
	sum, err := Execute(Options{Dir: dir, Binary: bin, Workers: 1, Threads: 1, Point: -1, Log: quietLog(), Workdir: work})
	if err != nil || sum.Done != 3 || sum.Ran != 3 {
		t.Fatalf("rerun: %+v %v", sum, err)
	}
}

// TestCommandRecordsSpectraclipEnv: a SPECTRACLIP_ variable in the sweep's environment
// changes the runs' config (here the learning rate), so the command recorded to reproduce a
// point must carry it; the other variables of the environment are not recorded.
func TestCommandRecordsSpectraclipEnv(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	tinyData(t, data)
	spec := &Spec{Name: "env", Bases: []Base{{Variant: "drcnn"}}, Seeds: []uint64{0},
		Overrides: append(tiny(data, 1), "training.threads=1")}
	dir := filepath.Join(work, "sweep")
	environ := append(os.Environ(), "SPECTRACLIP_TRAINING__OPTIMIZER__LR=0.00123", "UNRELATED_SWEEP_TEST_VAR=x")
	o := Options{Dir: dir, Spec: spec, Binary: bin, Workers: 1, Point: -1, Log: quietLog(), Workdir: work, Environ: environ}
	sum, err := Execute(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Results.Points) != 1 {
		t.Fatalf("%d points", len(sum.Results.Points))
	}
	row := sum.Results.Points[0]
	cfg, err := os.ReadFile(filepath.Join(dir, row.RunDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "0.00123") {
		t.Fatalf("the environment did not reach the run's config:\n%s", cfg)
	}
	if !strings.Contains(row.Command, "SPECTRACLIP_TRAINING__OPTIMIZER__LR=0.00123 ") {
		t.Errorf("recorded command does not carry the SPECTRACLIP_ variable that set the learning rate: %s", row.Command)
	}
	if strings.Contains(row.Command, "UNRELATED_SWEEP_TEST_VAR") {
		t.Errorf("recorded command carries an unrelated variable: %s", row.Command)
	}
}
