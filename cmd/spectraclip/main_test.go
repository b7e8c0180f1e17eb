package main

import (
	"bytes"
	"encoding/json"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer/tboard"
)

// runCLI executes the CLI in-process and returns stdout and the error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewRootCmd(&out, &errOut)
	cmd.SetArgs(append([]string{"--log-level", "warn"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("spectraclip %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// tiny are overrides that make a run take seconds: a small synthetic set generated into
// dir, a detector at 32 px, two epochs.
func tiny(dir string, epochs string) []string {
	return []string{
		"data.root=" + filepath.Join(dir, "data"), "data.generate_if_missing=true", "data.synth.frames=8", "data.synth.height=32", "data.synth.width=32",
		"training.trainer.max_epochs=" + epochs, "+pipeline.detector.image_size=32", "training.threads=1",
	}
}

func readMetrics(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVersion(t *testing.T) {
	out := mustRun(t, "version")
	for _, w := range []string{"spectraclip", "libtorch 1.", "devices cpu"} {
		if !strings.Contains(out, w) && !strings.Contains(out, "libtorch 2.") {
			t.Errorf("version output %q lacks %q", out, w)
		}
	}
}

func TestTrainWritesRunDirectory(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	out := mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", runDir}, tiny(dir, "2")...)...)
	if !strings.Contains(out, "test: iou") {
		t.Errorf("train output: %q", out)
	}
	for _, f := range []string{"config.yaml", "metrics.json", "report.md", "pipeline.yaml", "pipeline.weights.pt",
		"checkpoints/last/weights.pt", "checkpoints/last/optim.pt", "checkpoints/last/state.json", "checkpoints/last/manifest.json", "loss.png", "roc.png", "pr.png", "maps.png"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err != nil {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	m := readMetrics(t, runDir)
	test, ok := m["test"].(map[string]any)
	if !ok {
		t.Fatalf("metrics.json has no test block: %v", m)
	}
	for _, k := range []string{"iou", "precision", "recall", "f1_score", "average_precision", "auroc"} {
		v, ok := test[k].(float64)
		if !ok || v < 0 || v > 1 {
			t.Errorf("test.%s = %v", k, test[k])
		}
	}
	if m["variant"] != "drcnn" || m["detector"] != "builtin-mahalanobis" {
		t.Errorf("variant %v detector %v", m["variant"], m["detector"])
	}
	// TensorBoard events decode, with the reference's tags.
	files, err := tboard.EventFiles(filepath.Join(runDir, "tb"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no event files: %v", err)
	}
	evs, err := tboard.ReadEvents(files[0])
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	for _, e := range evs {
		for _, v := range e.Values {
			tags[v.Tag] = true
		}
	}
	for _, want := range []string{"train/loss", "val/loss", "metrics_anomaly/iou", "metrics_anomaly/average_precision", "lr-adamw",
		"val/hsi_input_sample_0", "val/mixer_output_adaclip_input_sample_0", "val/ground_truth_mask_sample_0", "val/adaclip_scores_heatmap_sample_0", "config"} {
		if !tags[want] {
			t.Errorf("TensorBoard tag %q missing (have %v)", want, keys(tags))
		}
	}
	// eval, calibrate and infer on the finished run
	out = mustRun(t, "eval", "--run", runDir, "--split", "test")
	var ev map[string]float64
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("eval output %q: %v", out, err)
	}
	if got, want := ev["iou"], test["iou"].(float64); got != want {
		t.Errorf("eval iou %v, training run reported %v", got, want)
	}
	mustRun(t, "calibrate", "--run", runDir)
	if _, err := os.Stat(filepath.Join(runDir, "calibration.json")); err != nil {
		t.Error(err)
	}
	inf := filepath.Join(dir, "infer")
	out = mustRun(t, "infer", "--run", runDir, "--input", filepath.Join(dir, "data"), "--out", inf)
	if !strings.Contains(out, "wrote 8 frames") {
		t.Errorf("infer: %q", out)
	}
	for _, f := range []string{"results.json", "frame_000_scores.png", "frame_000_scores.npy", "frame_000_decisions.png", "frame_000_decisions.npy"} {
		if _, err := os.Stat(filepath.Join(inf, f)); err != nil {
			t.Errorf("infer output lacks %s", f)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Same seed, same metrics; and a run resumed from its epoch-2 checkpoint ends exactly where
// an uninterrupted 3-epoch run ends.
func TestDeterminismAndResume(t *testing.T) {
	for _, variant := range []string{"concrete", "drcnn"} {
		t.Run(variant, func(t *testing.T) {
			dir := t.TempDir()
			a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
			// the temperature schedule depends on max_epochs: pin it so that stopping early
			// does not change the first epochs
			args := func(out, epochs string) []string {
				a := append([]string{"train", "--variant", variant, "--out", out}, tiny(dir, epochs)...)
				if variant == "concrete" {
					a = append(a, "+pipeline.concrete_selector.max_epochs=3")
				}
				return a
			}
			mustRun(t, args(a, "3")...)
			mustRun(t, args(b, "3")...)
			ma, mb := readMetrics(t, a), readMetrics(t, b)
			if !sameJSON(ma["test"], mb["test"]) || !sameJSON(ma["val"], mb["val"]) {
				t.Fatalf("same seed, different metrics:\n%v\n%v", ma["test"], mb["test"])
			}
			// interrupted after 2 epochs, resumed to 3
			mustRun(t, args(c, "2")...)
			mustRun(t, append(args(c, "3"), "--resume", filepath.Join(c, "checkpoints", "last"))...)
			mc := readMetrics(t, c)
			ha, hc := ma["history"].([]any), mc["history"].([]any)
			if len(ha) != 4 || len(hc) != 4 { // epoch 0 (the initialisation) and 3 training epochs
				t.Fatalf("history lengths %d and %d, want 4", len(ha), len(hc))
			}
			if !sameJSON(ha[3].(map[string]any)["val"], hc[3].(map[string]any)["val"]) || ha[3].(map[string]any)["train_loss"] != hc[3].(map[string]any)["train_loss"] || hc[3].(map[string]any)["epoch"] != 3.0 {
				t.Errorf("resumed epoch 3 differs:\n%v\n%v", ha[3], hc[3])
			}
		})
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestSynthCommandIsReadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "syn")
	mustRun(t, "synth", "--out", dir, "--frames", "6", "--height", "32", "--width", "24", "--seed", "5")
	ds, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Frames) != 6 || ds.Bands != 61 || ds.Frames[0].H != 32 || ds.Frames[0].W != 24 {
		t.Errorf("synth wrote %d frames of %d×%d×%d", len(ds.Frames), ds.Frames[0].H, ds.Frames[0].W, ds.Bands)
	}
}

func TestGraphExportAndPlugins(t *testing.T) {
	dir := t.TempDir()
	out := mustRun(t, "graph", "--variant", "pca")
	for _, w := range []string{"pca (TrainablePCA)", "detector (AdaCLIPDetector)", "<- normalizer.normalized"} {
		if !strings.Contains(out, w) {
			t.Errorf("graph output lacks %q:\n%s", w, out)
		}
	}
	dot := filepath.Join(dir, "g.dot")
	mustRun(t, "graph", "--variant", "concrete", "--dot", dot)
	if b, err := os.ReadFile(dot); err != nil || !strings.HasPrefix(string(b), "digraph") {
		t.Errorf("dot file: %v %q", err, b)
	}
	det := filepath.Join(dir, "builtin.pt")
	mustRun(t, "export-detector", "--builtin", "--out", det, "--image-size", "64")
	if st, err := os.Stat(det); err != nil || st.Size() == 0 {
		t.Errorf("export-detector: %v", err)
	}
	out = mustRun(t, "plugins", "list")
	if !strings.Contains(out, "cuvis_ai.node.normalization.MinMaxNormalizer") {
		t.Errorf("plugins list lacks the reference names:\n%s", out)
	}
}

func TestDetectRXOnABU(t *testing.T) {
	p := filepath.Join("..", "..", "..", "shared", "data", "real", "abu-airport-1.mat")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("ABU scene not available at %s: %v", p, err)
	}
	out := mustRun(t, "detect", "--input", p, "--detector", "rx", "--json")
	var r struct {
		AUROC     float64 `json:"pixel_roc_auc"`
		Anomalies int     `json:"anomaly_pixels"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Anomalies != 144 || r.AUROC < 0.8211 || r.AUROC > 0.8231 {
		t.Errorf("RX on ABU airport-1: %d anomalies, AUROC %.4f (published 0.8221)", r.Anomalies, r.AUROC)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	// a finished run must not be overwritten by a new one
	existing := filepath.Join(dir, "run")
	if err := os.MkdirAll(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(existing, "config.yaml"), []byte("name: keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--variant", "svm"}, "unknown variant"},
		{[]string{"train", "--variant", "drcnn", "training.optimizer.lrr=1"}, "training.optimizer.lrr"},
		{[]string{"train", "--variant", "drcnn", "pipeline.channel_mixer.init_method=magic"}, "init_method"},
		{[]string{"train", "-c", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"eval", "--run", filepath.Join(dir, "norun")}, "norun"},
		{[]string{"detect", "--input", filepath.Join(dir, "x.cu3s")}, "x.cu3s"},
		{[]string{"bench", "--size", "12"}, "HxW"},
		{[]string{"--log-format", "xml", "version"}, "log-format"},
		// a folder with a config.yaml that no run wrote (no .lock) is not taken over
		{[]string{"train", "--variant", "pca", "--out", existing}, "no spectraclip run wrote"},
	}
	for _, c := range cases {
		args := c.args
		if args[0] == "train" {
			// never generate data inside the source tree
			args = append(args, "data.root="+filepath.Join(dir, "data"), "data.generate_if_missing=true", "data.synth.height=32", "data.synth.width=32", "data.synth.frames=8")
		}
		_, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("spectraclip %v: error %v, want mention of %q", c.args, err, c.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(existing, "config.yaml")); string(b) != "name: keep\n" {
		t.Errorf("the existing run's config.yaml was changed: %q", b)
	}
}

func TestCompareAndBench(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	out := mustRun(t, append([]string{"compare", "--out", filepath.Join(dir, "cmp")}, tiny(dir, "1")...)...)
	for _, w := range []string{"| pca |", "| drcnn |", "| concrete |", "AUROC"} {
		if !strings.Contains(out, w) {
			t.Errorf("comparison lacks %q:\n%s", w, out)
		}
	}
	for _, f := range []string{"comparison.json", "comparison.md"} {
		if _, err := os.Stat(filepath.Join(dir, "cmp", f)); err != nil {
			t.Error(err)
		}
	}
	out = mustRun(t, "bench", "--batch", "1", "--size", "32x32", "--iters", "1", "--train-iters", "1", "--json", "--device", "cpu")
	var r struct {
		Variants []struct {
			Variant string             `json:"variant"`
			FPS     float64            `json:"fps"`
			Stages  map[string]float64 `json:"stages"`
		} `json:"variants"`
		Threads int `json:"threads"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench json %q: %v", out, err)
	}
	if len(r.Variants) != 3 || r.Threads < 1 {
		t.Fatalf("bench: %+v", r)
	}
	for _, v := range r.Variants {
		if v.FPS <= 0 || len(v.Stages) != 6 {
			t.Errorf("bench %s: fps %v stages %v", v.Variant, v.FPS, v.Stages)
		}
	}
}

// A --tiny AdaCLIP export (the real architecture, small) runs end to end in the DRCNN
// pipeline on the CPU, and gradients through it reach the mixer.
func TestTrainThroughTinyAdaCLIP(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	if _, err := os.Stat(testpy.Python()); err != nil {
		t.Skip("/usr/bin/python3 not available")
	}
	if err := exec.Command(testpy.Python(), "-c", "import torch").Run(); err != nil {
		t.Skip("python3-torch not available")
	}
	dir := t.TempDir()
	det := filepath.Join(dir, "tiny_adaclip.pt")
	if b, err := exec.Command(testpy.Python(), filepath.Join("..", "..", "scripts", "export_adaclip.py"), "--tiny", "--attention", "math", "--out", det).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}
	runDir := filepath.Join(dir, "run")
	args := append([]string{"train", "--variant", "drcnn", "--out", runDir}, tiny(dir, "2")...)
	args = append(args, "pipeline.detector.detector_path="+det, "+pipeline.detector.image_size=0")
	mustRun(t, args...)
	m := readMetrics(t, runDir)
	if d, _ := m["detector"].(string); d == "" || d == "builtin-mahalanobis" {
		t.Errorf("detector recorded as %q", d)
	}
	first, err := torch.LoadTensors(filepath.Join(runDir, "checkpoints", "epoch=00", "weights.pt"), torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(first)
	second, err := torch.LoadTensors(filepath.Join(runDir, "checkpoints", "epoch=01", "weights.pt"), torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(second)
	a, _ := first["channel_mixer/convs.0.weight"].Float32s()
	b, _ := second["channel_mixer/convs.0.weight"].Float32s()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("mixer weights missing from checkpoints (%d, %d)", len(a), len(b))
	}
	changed := 0
	for i := range a {
		if a[i] != b[i] {
			changed++
		}
	}
	if changed == 0 {
		t.Error("the mixer's first layer did not change between epochs: no gradient reached it through the detector")
	}
}
