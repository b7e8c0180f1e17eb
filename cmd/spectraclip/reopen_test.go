package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every variant's finished run can be opened again: eval, infer and calibrate load the saved
// pipeline, including the state that nodes gain only in the statistical fit (PCA components,
// running min-max statistics, a PCA-initialised mixer), and eval reproduces the run's own
// test metrics.
func TestReopenEveryVariant(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustRun(t, "synth", "--out", data, "--frames", "8", "--height", "32", "--width", "32", "--seed", "11")
	for _, variant := range []string{"pca", "drcnn", "concrete"} {
		t.Run(variant, func(t *testing.T) {
			runDir := filepath.Join(dir, "run_"+variant)
			args := []string{"train", "--variant", variant, "--out", runDir, "data.root=" + data,
				"+pipeline.detector.image_size=32", "training.threads=1"}
			if variant != "pca" {
				args = append(args, "training.trainer.max_epochs=1")
			}
			mustRun(t, args...)
			out := mustRun(t, "eval", "--run", runDir, "--split", "test")
			var ev map[string]any
			if err := json.Unmarshal([]byte(out), &ev); err != nil {
				t.Fatalf("eval output %q: %v", out, err)
			}
			test, ok := readMetrics(t, runDir)["test"].(map[string]any)
			if !ok {
				t.Fatal("metrics.json has no test block")
			}
			for _, k := range []string{"iou", "auroc", "average_precision"} {
				got, _ := ev[k].(float64)
				want, _ := test[k].(float64)
				if math.Abs(got-want) > 1e-12 {
					t.Errorf("eval %s = %v, the training run reported %v", k, ev[k], test[k])
				}
			}
			mustRun(t, "calibrate", "--run", runDir)
			if _, err := os.Stat(filepath.Join(runDir, "calibration.json")); err != nil {
				t.Error(err)
			}
			inf := filepath.Join(dir, "infer_"+variant)
			out = mustRun(t, "infer", "--run", runDir, "--input", data, "--out", inf)
			if !strings.Contains(out, "wrote 8 frames") {
				t.Errorf("infer: %q", out)
			}
		})
	}
}
