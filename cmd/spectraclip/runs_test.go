package main

import (
	"encoding/json"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/run"
)

// chdir runs the test from dir (so that nothing lands in the source tree) and goes back.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(old) })
}

func history(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, h := range readMetrics(t, dir)["history"].([]any) {
		m := h.(map[string]any)
		delete(m, "seconds")
		out = append(out, m)
	}
	return out
}

// With save_last: false the best top-k checkpoint is still found and evaluated: the
// epoch with the lowest validation loss (the monitor), read from the run's own history.
func TestBestCheckpointWithoutSaveLast(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", runDir}, append(tiny(dir, "4"),
		"training.callbacks.checkpoint.save_last=false", "training.callbacks.checkpoint.monitor=val/loss",
		"training.callbacks.checkpoint.mode=min", "training.callbacks.checkpoint.save_top_k=2", "training.optimizer.lr=0.05")...)...)
	best, bestV := -1, math.Inf(1)
	for _, h := range history(t, runDir) {
		if v := h["val_loss"].(float64); v < bestV {
			best, bestV = int(h["epoch"].(float64)), v
		}
	}
	got, _ := readMetrics(t, runDir)["checkpoint"].(string)
	want := "epoch=" + leftPad(best)
	if !strings.HasSuffix(filepath.ToSlash(got), want) {
		t.Fatalf("metrics.json checkpoint %q, want the best epoch %s (val_loss %v)", got, want, bestV)
	}
}

func leftPad(n int) string {
	s := strconv.Itoa(n)
	if len(s) < 2 {
		s = "0" + s
	}
	return s
}

// A run started from one working directory and resumed from another keeps pruning its
// top-k checkpoints and restoring the best one.
func TestResumeFromAnotherDirectory(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := func(epochs string) []string {
		return append([]string{"train", "--variant", "drcnn"}, append(tiny(dir, epochs),
			"training.callbacks.checkpoint.monitor=val/loss", "training.callbacks.checkpoint.mode=min",
			"training.callbacks.checkpoint.save_top_k=1", "training.optimizer.lr=0.05")...)
	}
	chdir(t, a)
	mustRun(t, append(args("2"), "--out", "run")...)
	chdir(t, b)
	runDir := filepath.Join(a, "run")
	mustRun(t, append(args("4"), "--out", runDir, "--resume", filepath.Join(runDir, "checkpoints", "last"))...)
	ents, err := os.ReadDir(filepath.Join(runDir, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	epochs := map[string]bool{}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "epoch=") {
			epochs[n[:len("epoch=00")]] = true
		}
	}
	if len(epochs) != 1 {
		t.Errorf("save_top_k=1 but %d epoch checkpoints are left: %v", len(epochs), epochs)
	}
	if got, _ := readMetrics(t, runDir)["checkpoint"].(string); got == "" {
		t.Error("the best checkpoint was not restored after resuming from another directory")
	}
}

// lastFiles returns the last checkpoint's weights and optimizer files in either layout.
func lastFiles(runDir, name string) (weights, optim string) {
	d := filepath.Join(runDir, "checkpoints", name)
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return filepath.Join(d, "weights.pt"), filepath.Join(d, "optim.pt")
	}
	return d + ".weights.pt", d + ".optim.pt"
}

// A checkpoint torn by a kill between two renames (new weights, the previous epoch's
// optimizer state) is never resumed silently: the resume falls back to a complete
// checkpoint and ends exactly where an uninterrupted run ends.
func TestTornCheckpointIsNotResumed(t *testing.T) {
	dir := t.TempDir()
	ref, c := filepath.Join(dir, "ref"), filepath.Join(dir, "c")
	args := func(out, epochs string) []string {
		return append([]string{"train", "--variant", "drcnn", "--out", out}, append(tiny(dir, epochs), "training.optimizer.lr=0.05")...)
	}
	mustRun(t, args(ref, "3")...)
	mustRun(t, args(c, "2")...)
	_, lastOptim := lastFiles(c, "last")
	_, oldOptim := lastFiles(c, "epoch=01") // the previous epoch's (epoch=00 is the initialisation's)
	b, err := os.ReadFile(oldOptim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lastOptim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, append(args(c, "3"), "--resume", filepath.Join(c, "checkpoints", "last"))...)
	if err != nil {
		return // refusing is allowed
	}
	hr, hc := history(t, ref), history(t, c)
	if len(hc) != 4 || !sameJSON(hr[3], hc[3]) { // epoch 0 (the initialisation) and 3 training epochs
		t.Fatalf("resumed from a torn checkpoint, diverged:\n%v\n%v", hr[len(hr)-1], hc[len(hc)-1])
	}
}

// A run directory killed before its first complete checkpoint can be started again (the
// leftover temporary files are removed), and a failed --resume writes nothing.
func TestEarlyKilledRunRestarts(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "run")
	if err := os.MkdirAll(filepath.Join(rd, "checkpoints"), 0o755); err != nil {
		t.Fatal(err)
	}
	// what a run killed before its first checkpoint leaves: its lock file (taken before it
	// writes anything), its config.yaml and temporary files
	for _, f := range []string{run.LockName, "config.yaml", "checkpoints/.last.weights.pt.tmp123", "checkpoints/last.optim.pt.tmp"} {
		if err := os.WriteFile(filepath.Join(rd, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", rd}, tiny(dir, "1")...)...)
	for _, f := range []string{"checkpoints/.last.weights.pt.tmp123", "checkpoints/last.optim.pt.tmp"} {
		if _, err := os.Stat(filepath.Join(rd, f)); err == nil {
			t.Errorf("leftover %s was not removed", f)
		}
	}
	// a finished run is not restarted over
	if _, err := runCLI(t, append([]string{"train", "--variant", "drcnn", "--out", rd}, tiny(dir, "1")...)...); err == nil {
		t.Error("a second fresh start into a finished run directory succeeded")
	}
	// a failed resume leaves no trace
	other := filepath.Join(dir, "other")
	if _, err := runCLI(t, append([]string{"train", "--variant", "drcnn", "--out", other, "--resume", filepath.Join(other, "checkpoints", "last")}, tiny(dir, "1")...)...); err == nil {
		t.Fatal("resuming a run that does not exist succeeded")
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("a failed --resume created %s", other)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.MkdirAll(filepath.Join(empty, "checkpoints"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, append([]string{"train", "--variant", "drcnn", "--out", empty, "--resume", filepath.Join(empty, "checkpoints", "last")}, tiny(dir, "1")...)...); err == nil {
		t.Fatal("resuming a run without a checkpoint succeeded")
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 2 || names[0] != run.LockName { // the lock file may stay
			t.Errorf("a failed --resume wrote into %s: %v", empty, names)
		}
	}
}

// Resume reads the run's own config.yaml: without the original overrides it trains on the
// run's data and ends where an uninterrupted run ends; an unsafe override is refused and a
// safe one (more epochs) is recorded.
func TestResumeUsesTheRunsConfig(t *testing.T) {
	dir := t.TempDir()
	chdir(t, dir)
	ref, c := filepath.Join(dir, "ref"), filepath.Join(dir, "c")
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", ref}, tiny(dir, "3")...)...)
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", c}, tiny(dir, "2")...)...)
	last := filepath.Join(c, "checkpoints", "last")
	if _, err := runCLI(t, "train", "--out", c, "--resume", last, "training.trainer.max_epochs=3", "training.optimizer.lr=0.5"); err == nil || !strings.Contains(err.Error(), "training.optimizer.lr") {
		t.Fatalf("unsafe override on resume: %v", err)
	}
	mustRun(t, "train", "--out", c, "--resume", last, "training.trainer.max_epochs=3")
	if _, err := os.Stat(filepath.Join(dir, "data", dataset.ManifestName)); err != nil {
		t.Fatalf("the run's data root is gone? %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "lentils_synth")); err == nil {
		t.Fatal("resume generated the default data root instead of using the run's")
	}
	hr, hc := history(t, ref), history(t, c)
	if len(hc) != 4 || !sameJSON(hr[3], hc[3]) { // epoch 0 (the initialisation) and 3 training epochs
		t.Fatalf("resumed run differs:\n%v\n%v", hr[len(hr)-1], hc[len(hc)-1])
	}
	b, err := os.ReadFile(filepath.Join(c, "resume.json"))
	if err != nil || !strings.Contains(string(b), "training.trainer.max_epochs") {
		t.Fatalf("the resume and its override are not recorded: %v %s", err, b)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil || len(recs) != 1 {
		t.Fatalf("resume.json: %v %s", err, b)
	}
}

// A second writer on a run directory fails at once, naming the holder's pid.
func TestSecondWriterIsRefused(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "run")
	if err := os.MkdirAll(rd, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := run.Acquire(rd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, append([]string{"train", "--variant", "drcnn", "--out", rd}, tiny(dir, "1")...)...)
	l.Release()
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second writer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rd, "config.yaml")); err == nil {
		t.Error("the refused writer wrote config.yaml")
	}
	// A run being written that already has a complete checkpoint: a second writer (fresh
	// or --resume) is told the directory is in use, not invited to resume it.
	done := filepath.Join(dir, "done")
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", done}, tiny(dir, "1")...)...)
	if err := os.Remove(filepath.Join(done, "metrics.json")); err != nil { // as if still training
		t.Fatal(err)
	}
	l, err = run.Acquire(done)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	for _, extra := range [][]string{nil, {"--resume", filepath.Join(done, "checkpoints", "last")}} {
		args := append(append([]string{"train", "--variant", "drcnn", "--out", done}, extra...), tiny(dir, "2")...)
		_, err = runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "in use by another spectraclip process") || strings.Contains(err.Error(), "resume it") {
			t.Errorf("second writer %v into a run being written: %v", extra, err)
		}
	}
}

// infer checks its inputs for NaN/Inf as training does (an error naming the file, or
// --nan-policy zero), and writes the maps as (H, W) arrays that numpy reads.
func TestInferChecksInputsAndWritesMaps(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", rd}, tiny(dir, "1")...)...)
	ds, err := dataset.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dataset.ReadENVI(ds.Frames[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	c.Data[(5*c.W+7)*c.C+3] = float32(math.NaN())
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := dataset.WriteENVI(filepath.Join(in, "cube"), c, dataset.ENVIWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	_, err = runCLI(t, "infer", "--run", rd, "--input", in, "--out", out)
	if err == nil || !strings.Contains(err.Error(), "cube") || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("infer on a cube with a NaN pixel: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "results.json")); err == nil {
		t.Error("results.json written for a failed infer")
	}
	mustRun(t, "infer", "--run", rd, "--input", in, "--out", out, "--nan-policy", "zero")
	py := `import json,sys,numpy as np
s=np.load(sys.argv[1]+"/cube_scores.npy"); d=np.load(sys.argv[1]+"/cube_decisions.npy")
r=json.load(open(sys.argv[1]+"/results.json"))["frames"][0]
assert np.isfinite(s).all()
print(s.shape, d.shape, s.dtype, d.dtype, (r["height"], r["width"]))`
	o, err := exec.Command(testpy.Python(), "-c", py, out).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, o)
	}
	want := "(32, 32) (32, 32) float32 uint8 (32, 32)"
	if strings.TrimSpace(string(o)) != want {
		t.Fatalf("numpy reads %s, want %s", o, want)
	}
}

// No JSON write in the repository's program code drops its error (a failed json.Marshal used to leave a
// 0-byte results.json behind a "wrote N frames").
func TestNoJSONWriteIgnoresItsError(t *testing.T) {
	rules := []*regexp.Regexp{
		regexp.MustCompile(`,\s*_\s*:?=\s*json\.(Marshal|MarshalIndent)\(`),
		regexp.MustCompile(`_\s*=\s*json\.NewEncoder\(.*\)\.Encode\(`),
		regexp.MustCompile(`^\s*json\.NewEncoder\(.*\)\.Encode\(`),
		regexp.MustCompile(`_\s*=\s*\w*[wW]riteJSON\(`), // a JSON-writing helper's error dropped
	}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "build" || strings.HasPrefix(d.Name(), ".") && p != root) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, re := range rules {
				if re.MatchString(line) {
					t.Errorf("%s:%d ignores a JSON error: %s", p, i+1, strings.TrimSpace(line))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestInferStreamsIntoAnExistingFolder: infer writes each frame as it is scored (into a
// staging folder beside --out) and publishes only a complete result: into an existing
// folder a failing second input adds nothing and leaves no staging folder behind; a good
// run adds its maps next to what the folder held.
func TestInferStreamsIntoAnExistingFolder(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "pca", "--out", rd}, tiny(dir, "1")...)...)
	ds, err := dataset.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		c, err := dataset.ReadENVI(ds.Frames[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		if name == "b" {
			c.Data[3] = float32(math.Inf(1))
		}
		if err := dataset.WriteENVI(filepath.Join(in, name), c, dataset.ENVIWriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "results")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	list := func(d string) []string {
		ents, _ := os.ReadDir(d)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	if _, err := runCLI(t, "infer", "--run", rd, "--input", in, "--out", out); err == nil || !strings.Contains(err.Error(), "b") {
		t.Fatalf("infer with an Inf in the second cube: %v", err)
	}
	if got := list(out); len(got) != 1 || got[0] != "keep.txt" {
		t.Errorf("after a failed infer the folder holds %v, want only keep.txt", got)
	}
	for _, n := range list(dir) {
		if strings.Contains(n, "partial") {
			t.Errorf("staging folder %s left behind", n)
		}
	}
	mustRun(t, "infer", "--run", rd, "--input", in, "--out", out, "--nan-policy", "zero")
	got := strings.Join(list(out), " ")
	for _, want := range []string{"keep.txt", "a_scores.npy", "b_scores.npy", "a_scores.png", "results.json"} {
		if !strings.Contains(got, want) {
			t.Errorf("folder holds %s, lacks %s", got, want)
		}
	}
}
