package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUndefinedMetricsAreSaidSo: a test split without anomaly pixels (a stone-free synthetic
// frame) has no AUROC or AP. train prints "undefined", metrics.json holds null (not 0, and
// the write does not fail on NaN), and eval reports null as well.
func TestUndefinedMetricsAreSaidSo(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	// 8 frames: train 0-3 with stone-free frames 1 and 3, val 4-5, test 6-7; test on frame 1
	args := append([]string{"train", "--variant", "drcnn", "--out", runDir}, tiny(dir, "1")...)
	out := mustRun(t, append(args, "data.train_ids=[0,2,3]", "data.val_ids=[4,5]", "data.test_ids=[1]")...)
	if !strings.Contains(out, "AP undefined") || !strings.Contains(out, "AUROC undefined") {
		t.Errorf("train output does not say AP and AUROC are undefined:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(runDir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Test map[string]*float64 `json:"test"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"auroc", "average_precision"} {
		if v, ok := m.Test[k]; !ok || v != nil {
			t.Errorf("metrics.json test.%s = %v (present %v), want null", k, v, ok)
		}
	}
	if v := m.Test["iou"]; v == nil || *v != 0 {
		t.Errorf("metrics.json test.iou = %v, want 0 (no anomaly pixels to overlap)", v)
	}
	ev := mustRun(t, "eval", "--run", runDir, "--split", "test")
	if !strings.Contains(strings.ReplaceAll(ev, " ", ""), `"auroc":null`) {
		t.Errorf("eval output lacks \"auroc\": null:\n%s", ev)
	}
}
