package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSceneRunResumesExactly: a run on a labelled scene (train --scene, the whole-scene
// pixel split) interrupted after 2 epochs and resumed to 3 ends as an uninterrupted 3-epoch
// run does: the last checkpoint's and the published weights byte for byte, the optimizer
// state value for value, the last epoch and the test metrics. The resume reads the scene,
// its variables and the split back from the run's config.yaml.
func TestSceneRunResumesExactly(t *testing.T) {
	py := testpy.Python()
	if _, err := exec.LookPath(py); err != nil {
		t.Fatalf("%s not found: the scene generator needs numpy (make deps installs it)", py)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "scene.npz")
	if b, err := exec.Command(py, filepath.Join("..", "..", "scene", "testdata", "gen_scene.py"), path, "40", "40", "23", "10", fmt.Sprint(os.Getpid()%1000)).CombinedOutput(); err != nil {
		t.Fatalf("gen_scene.py (numpy): %v\n%s", err, b)
	}
	args := func(out, epochs string) []string {
		return []string{"train", "--variant", "drcnn", "--scene", path, "--cube-var", "cube", "--gt-var", "gt", "--out", out,
			"training.trainer.max_epochs=" + epochs, "+pipeline.detector.image_size=32", "training.threads=1",
			"training.trainer.enable_progress_bar=false"}
	}
	a, c := filepath.Join(dir, "a"), filepath.Join(dir, "c")
	mustRun(t, args(a, "3")...)
	mustRun(t, args(c, "2")...)
	mustRun(t, "train", "--resume", filepath.Join(c, "checkpoints", "last"), "training.trainer.max_epochs=3")
	ma, mc := readMetrics(t, a), readMetrics(t, c)
	ha, hc := ma["history"].([]any), mc["history"].([]any)
	if len(ha) != 4 || len(hc) != 4 { // epoch 0 (the initialisation) and 3 training epochs
		t.Fatalf("history lengths %d and %d, want 4", len(ha), len(hc))
	}
	if !sameJSON(ha[3].(map[string]any)["val"], hc[3].(map[string]any)["val"]) || ha[3].(map[string]any)["train_loss"] != hc[3].(map[string]any)["train_loss"] || hc[3].(map[string]any)["epoch"] != 3.0 {
		t.Errorf("resumed epoch 3 differs:\n%v\n%v", ha[3], hc[3])
	}
	// the resume trained epoch 3 only, from the checkpoint
	var res []struct {
		Checkpoint string `json:"checkpoint"`
	}
	if b, err := os.ReadFile(filepath.Join(c, "resume.json")); err != nil || json.Unmarshal(b, &res) != nil || len(res) != 1 || res[0].Checkpoint != "checkpoints/last" {
		t.Fatalf("resume.json: %v %+v", err, res)
	}
	// the last checkpoint's weights (epoch 3) and the published weights (the best epoch's)
	// are the same bytes
	for _, f := range []string{"checkpoints/last/weights.pt", "pipeline.weights.pt"} {
		wa, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		wc, err := os.ReadFile(filepath.Join(c, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wa, wc) {
			t.Errorf("%s of the resumed run differs from the uninterrupted run's (%d vs %d bytes)", f, len(wa), len(wc))
		}
	}
	// the optimizer state by value: LibTorch keys it by tensor addresses, so its bytes differ
	// between processes (scripts/optim_state.py pairs the states by parameter order)
	oa, oc := filepath.Join(a, "checkpoints", "last", "optim.pt"), filepath.Join(c, "checkpoints", "last", "optim.pt")
	if b, err := exec.Command(py, "-c", "import torch").CombinedOutput(); err != nil {
		t.Logf("optimizer state not compared: %s has no torch: %v %s", py, err, b)
	} else if b, err := exec.Command(py, filepath.Join("..", "..", "scripts", "optim_state.py"), oa, oc).CombinedOutput(); err != nil {
		t.Errorf("optimizer state of the resumed run differs from the uninterrupted run's: %v %s", err, b)
	}
	if !sameJSON(ma["test"], mc["test"]) {
		t.Errorf("test metrics differ:\n%v\n%v", ma["test"], mc["test"])
	}
}
