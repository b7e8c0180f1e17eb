package trainer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/testpy"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/run"
)

// numpyRanking runs nodes/metric/testdata/ranking.py: AUROC (Mann–Whitney with average ranks)
// and sklearn's average precision, computed in numpy.
func numpyRanking(t *testing.T, scores []float64, labels []bool) (auroc, ap float64) {
	t.Helper()
	dir := t.TempDir()
	sb := make([]byte, 8*len(scores))
	lb := make([]byte, len(labels))
	for i, s := range scores {
		binary.LittleEndian.PutUint64(sb[8*i:], math.Float64bits(s))
		if labels[i] {
			lb[i] = 1
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "s.bin"), sb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "l.bin"), lb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testpy.Python(), filepath.Join("..", "nodes", "metric", "testdata", "ranking.py"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	var r struct{ AUROC, AP float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("numpy output %q: %v", out, err)
	}
	return r.AUROC, r.AP
}

// rxRun prepares a run whose detector is global RX (unbounded squared Mahalanobis distances)
// on a small synthetic set, with the metrics node configured by metricParams.
func rxRun(t *testing.T, metricParams map[string]any, adjust ...func(*config.Config)) *Run {
	t.Helper()
	dir := t.TempDir()
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "pca", Overrides: []string{"data.root=" + filepath.Join(dir, "data"), "training.threads=1"}})
	if err != nil {
		t.Fatal(err)
	}
	sc := dataset.DefaultSynthConfig()
	sc.Frames, sc.Height, sc.Width = 12, 32, 32
	if err := dataset.EnsureSynthetic(cfg.Data.Root, sc); err != nil {
		t.Fatal(err)
	}
	metrics := map[string]any{"type": "AnomalyMetrics"}
	for k, v := range metricParams {
		metrics[k] = v
	}
	cfg.Pipeline = map[string]map[string]any{
		"data_node":       {"type": "LentilsAnomalyDataNode", "normal_class_ids": []any{0, 1, 2, 4}, "anomaly_class_ids": []any{3}},
		"detector":        {"type": "RXDetector"},
		"decider":         {"type": "QuantileBinaryDecider", "quantile": 0.99},
		"metrics_anomaly": metrics,
	}
	cfg.Connections = []string{
		"data_node.cube -> detector.cube",
		"detector.scores -> decider.logits",
		"decider.decisions -> metrics_anomaly.decisions",
		"data_node.mask -> metrics_anomaly.targets",
		"detector.scores -> metrics_anomaly.logits",
	}
	cfg.Evaluation = config.EvalConfig{Scores: "detector.scores", Decisions: "decider.decisions", Targets: "data_node.mask"}
	for _, f := range adjust {
		f(cfg)
	}
	r, err := Prepare(cfg, Options{OutDir: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// splitScores runs the pipeline over a split and returns the detector's scores and the mask.
func splitScores(t *testing.T, r *Run, split string) ([]float64, []bool) {
	t.Helper()
	var scores []float64
	var labels []bool
	err := r.forEachBatch(split, 0, "", func(ctx *nodes.Context, batch map[string]any) error {
		ctx.Stage = nodes.StageInference
		ctx.Scope.SetGradEnabled(false)
		out, err := r.Pipeline.Run(ctx, batch, nodes.RunOptions{})
		if err != nil {
			return err
		}
		st, err := out.Tensor("detector", "scores")
		if err != nil {
			return err
		}
		s, err := st.Float32s()
		if err != nil {
			return err
		}
		for _, v := range s {
			scores = append(scores, float64(v))
		}
		mask, err := out.Tensor("data_node", "mask")
		if err != nil {
			return err
		}
		m, err := mask.Bools()
		if err != nil {
			return err
		}
		labels = append(labels, m...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return scores, labels
}

// Evaluate takes its metrics from the configured metrics node, exactly, for unbounded
// scores: with RX in the pipeline, AUROC and AP equal numpy's on the same scores (the old
// evaluator clamped them into [0,1] and reported AUROC 0.5).
func TestEvaluateRXExactAgainstNumpy(t *testing.T) {
	r := rxRun(t, nil)
	ev, err := r.Evaluate("test", nodes.StageTest, 0)
	if err != nil {
		t.Fatal(err)
	}
	scores, labels := splitScores(t, r, "test")
	hi := 0.0
	for _, s := range scores {
		hi = math.Max(hi, s)
	}
	if hi < 10 {
		t.Fatalf("RX scores reach only %g: the test needs scores far outside [0,1]", hi)
	}
	auc, ap := numpyRanking(t, scores, labels)
	if math.Abs(ev.Metrics["auroc"]-auc) > 1e-9 || math.Abs(ev.Metrics["average_precision"]-ap) > 1e-9 {
		t.Errorf("Evaluate: auroc %.12f AP %.12f; numpy %.12f %.12f", ev.Metrics["auroc"], ev.Metrics["average_precision"], auc, ap)
	}
	if _, ok := ev.Metrics["auroc_max_error"]; ok {
		t.Errorf("exact metrics state an error bound: %v", ev.Metrics)
	}
	// the node's own settings act: a 64-bin histogram fallback states its bound, and holds it
	r2 := rxRun(t, map[string]any{"exact_max_pixels": 0, "bins": 64})
	ev2, err := r2.Evaluate("test", nodes.StageTest, 0)
	if err != nil {
		t.Fatal(err)
	}
	ea, ep := ev2.Metrics["auroc_max_error"], ev2.Metrics["average_precision_max_error"]
	if !(ea > 0) || !(ep > 0) || math.Abs(ev2.Metrics["auroc"]-auc) > ea || math.Abs(ev2.Metrics["average_precision"]-ap) > ep {
		t.Errorf("histogram fallback: auroc %.6f ±%.2g, AP %.6f ±%.2g; numpy %.6f %.6f", ev2.Metrics["auroc"], ea, ev2.Metrics["average_precision"], ep, auc, ap)
	}
	t.Logf("RX test split: auroc %.4f AP %.4f (numpy %.4f %.4f); 64 bins: auroc %.4f ±%.4f AP %.4f ±%.4f",
		ev.Metrics["auroc"], ev.Metrics["average_precision"], auc, ap, ev2.Metrics["auroc"], ea, ev2.Metrics["average_precision"], ep)
}

// calibrate on a validation split without any anomaly pixel: there is no F1-optimal
// threshold, and calibration.json says so (null) instead of being left empty by an ignored
// JSON error.
func TestCalibrateWithoutAnomalies(t *testing.T) {
	r := rxRun(t, nil, func(cfg *config.Config) {
		ds, err := dataset.Open(cfg.Data.Root)
		if err != nil {
			t.Fatal(err)
		}
		var clean, rest []int
		for _, f := range ds.Frames {
			smp, err := ds.Load(f.ID)
			if err != nil {
				t.Fatal(err)
			}
			stone := false
			for _, c := range smp.ClassIDs {
				stone = stone || c == 3
			}
			if stone {
				rest = append(rest, f.ID)
			} else {
				clean = append(clean, f.ID)
			}
		}
		if len(clean) == 0 || len(rest) < 2 {
			t.Fatalf("synthetic set has %d stone-free and %d other frames", len(clean), len(rest))
		}
		cfg.Data.TrainIDs, cfg.Data.ValIDs, cfg.Data.TestIDs = rest[:len(rest)-1], clean, rest[len(rest)-1:]
	})
	if err := r.Pipeline.Save(filepath.Join(r.Dir, "pipeline.yaml")); err != nil {
		t.Fatal(err)
	}
	dir := r.Dir
	r.Close()
	c, err := Calibrate(dir, ReopenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "calibration.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("calibration.json %q: %v", b, err)
	}
	if v, ok := back["pixel_threshold"]; !ok || v != nil || !math.IsNaN(float64(c.PixelThreshold)) {
		t.Errorf("pixel_threshold %v (returned %v), want null/NaN without anomaly pixels", v, c.PixelThreshold)
	}
}

// The local (dual-window) RX detector sits in a trainrun like global RX, on the same pixels,
// and its metrics are exact against numpy.
func TestEvaluateLocalRXInATrainrun(t *testing.T) {
	r := rxRun(t, nil, func(cfg *config.Config) {
		cfg.Pipeline["detector"] = map[string]any{"type": "LocalRXDetector", "components": 5, "inner": 1, "outer": 4}
	})
	ev, err := r.Evaluate("test", nodes.StageTest, 0)
	if err != nil {
		t.Fatal(err)
	}
	scores, labels := splitScores(t, r, "test")
	auc, ap := numpyRanking(t, scores, labels)
	if math.Abs(ev.Metrics["auroc"]-auc) > 1e-9 || math.Abs(ev.Metrics["average_precision"]-ap) > 1e-9 {
		t.Errorf("local RX: auroc %.12f AP %.12f; numpy %.12f %.12f", ev.Metrics["auroc"], ev.Metrics["average_precision"], auc, ap)
	}
	t.Logf("local RX test split: auroc %.4f AP %.4f", ev.Metrics["auroc"], ev.Metrics["average_precision"])
}

// TestCalibrateRespectsTheRunLock: calibrate writes calibration.json into the run directory,
// so it takes the run's lock like any writer; while another process (here: another open file
// description, which flock treats the same way) holds it, calibrate fails naming the holder and
// writes nothing.
func TestCalibrateRespectsTheRunLock(t *testing.T) {
	r := rxRun(t, nil)
	if err := r.Pipeline.Save(filepath.Join(r.Dir, "pipeline.yaml")); err != nil {
		t.Fatal(err)
	}
	dir := r.Dir
	r.Close()
	l, err := run.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Calibrate(dir, ReopenOptions{})
	if !errors.Is(err, run.ErrLocked) {
		t.Fatalf("calibrate with the run locked by another writer: err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "pid ") {
		t.Errorf("error does not name the holder: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "calibration.json")); !os.IsNotExist(serr) {
		t.Fatalf("calibration.json written while the run was locked (stat: %v)", serr)
	}
	l.Release()
	if _, err := Calibrate(dir, ReopenOptions{}); err != nil {
		t.Fatalf("calibrate after the lock was released: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "calibration.json")); err != nil {
		t.Fatal(err)
	}
}
