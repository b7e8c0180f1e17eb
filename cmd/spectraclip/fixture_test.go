package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/serve"
	"github.com/spectraclip/spectraclip/torch"
)

// fixtureRun is a run directory written by main at 227401a, before package run existed
// (see its README): drcnn, 1 epoch, calibrated, with infer's outputs for one frame.
const fixtureRun = "../../run/testdata/main-2026-12-06"

// TestRunWrittenBeforeTheRefactorStillOpens: a run directory written by an earlier main
// opens unchanged. eval reproduces its metrics.json test metrics, calibrate its
// calibration.json threshold, infer its scores and decisions for the frame, serve reads its
// calibration, and it resumes for another epoch. The fixture is used from a copy (evaluating
// writes its data root beside it, and resuming writes into it); its data.root is the
// relative path "data", regenerated from the synthetic generator's seed.
//
// Tolerances: on the LibTorch that wrote it (1.13) the scores within 1e-5 and the metrics and
// threshold within 1e-6 (it reproduces them bit for bit); on another (2.11), whose kernels
// round differently, 5e-5 and 1e-4 (measured: scores 1.3e-5, AUROC 2.5e-5, threshold 1.2e-5
// apart). Decisions equal. Resuming on 2.11 loads the optimizer state 1.13 wrote (hexadecimal
// parameter keys, which 2.11's own loader misreads: sc_optim_load matches them itself).
func TestRunWrittenBeforeTheRefactorStillOpens(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixtureRun)); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	var saved struct {
		Test     map[string]float64 `json:"test"`
		LibTorch string             `json:"libtorch"`
	}
	readJSON(t, "run/"+run.MetricsFile, &saved)
	scoreTol, metricTol := 1e-5, 1e-6
	if !strings.HasPrefix(torch.Version(), strings.Join(strings.Split(saved.LibTorch, ".")[:2], ".")) {
		scoreTol, metricTol = 5e-5, 1e-4
	}
	var cal struct {
		PixelThreshold float64 `json:"pixel_threshold"`
	}
	readJSON(t, "run/"+run.CalibrationFile, &cal)

	out, err := runCLI(t, "eval", "--run", "run")
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	var got map[string]float64
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("eval output %q: %v", out, err)
	}
	for k, want := range saved.Test {
		if g, ok := got[k]; !ok || math.Abs(g-want) > metricTol {
			t.Errorf("eval %s = %v, metrics.json says %v", k, got[k], want)
		}
	}

	a, err := run.Open("run", run.OpenOptions{})
	if err != nil {
		t.Fatalf("run.Open: %v", err)
	}
	if a.Cfg.Variant != "drcnn" || len(a.Pipeline.Nodes()) == 0 {
		t.Errorf("run.Open: variant %q, %d nodes", a.Cfg.Variant, len(a.Pipeline.Nodes()))
	}
	a.Close()

	sc, err := serve.OpenScorer("run", "", 0, nil)
	if err != nil {
		t.Fatalf("serve's scorer: %v", err)
	}
	if sc.Rule.Source != "calibration.json pixel_threshold" || sc.Rule.Threshold != cal.PixelThreshold {
		t.Errorf("serve's image rule: %s, threshold %v; want the run's calibration.json %v", sc.Rule.Source, sc.Rule.Threshold, cal.PixelThreshold)
	}
	sc.Close()

	if _, err := runCLI(t, "infer", "--run", "run", "--input", "expected/frame_005.hdr", "--out", "inf", "--outputs", "npy,json"); err != nil {
		t.Fatalf("infer: %v", err)
	}
	want, wantShape := npy32(t, "expected/frame_005_scores.npy")
	scores, shape := npy32(t, "inf/frame_005_scores.npy")
	if !slices.Equal(shape, wantShape) || len(scores) != len(want) {
		t.Fatalf("infer scores shape %v, want %v", shape, wantShape)
	}
	worst := 0.0
	for i := range want {
		worst = max(worst, math.Abs(float64(scores[i]-want[i])))
	}
	if worst > scoreTol {
		t.Errorf("infer scores differ from the fixture's by up to %g", worst)
	}
	wantDec, _ := npy32(t, "expected/frame_005_decisions.npy")
	dec, _ := npy32(t, "inf/frame_005_decisions.npy")
	if !slices.Equal(dec, wantDec) {
		t.Errorf("infer decisions differ from the fixture's")
	}

	if _, err := runCLI(t, "calibrate", "--run", "run"); err != nil {
		t.Fatalf("calibrate: %v", err)
	}
	var cal2 struct {
		PixelThreshold float64 `json:"pixel_threshold"`
	}
	readJSON(t, "run/"+run.CalibrationFile, &cal2)
	if math.Abs(cal2.PixelThreshold-cal.PixelThreshold) > metricTol {
		t.Errorf("calibrate: threshold %v, the fixture's %v", cal2.PixelThreshold, cal.PixelThreshold)
	}

	if _, err := runCLI(t, "train", "--resume", "run/checkpoints/last", "training.trainer.max_epochs=2"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	var res run.Result
	readJSON(t, "run/"+run.MetricsFile, &res)
	if res.Epochs != 2 || len(res.History) != 3 {
		t.Fatalf("resumed run: %d epochs, %d history entries; want 2 and 3 (epoch 0 to 2)", res.Epochs, len(res.History))
	}
	// the second epoch continues the optimizer state the first left: its validation loss is
	// the one LibTorch 1.13 reaches from this checkpoint (0.934360; 2.11: 0.934274, 9e-5
	// apart; with the optimizer state not loaded, a fresh AdamW: 0.943191, 9.5e-3 apart)
	const epoch2ValLoss = 0.934360146522522
	if got := float64(res.History[2].ValLoss); math.Abs(got-epoch2ValLoss) > 5e-4*epoch2ValLoss {
		t.Errorf("resumed epoch 2: validation loss %v, LibTorch 1.13 resumes to %v (is the optimizer state restored?)", got, epoch2ValLoss)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func npy32(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	a, err := dataset.ReadNPY(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return a.Data, a.Shape
}
