package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer/tboard"
)

// Issue 26.11: the initialised pipeline is validated as epoch 0 before training and is a
// top-k candidate. A run whose training makes validation worse (lr 1, the largest the config
// allows, with AdamW) ends with epoch 0's checkpoint chosen, and the weights it publishes
// equal the initialisation, which is taken independently from a run of the same config with
// max_epochs 0 (statistical fit only, no gradient code at all): same weights and the same
// validation metrics as the history's epoch 0. The history opens with epoch 0 (validation
// metrics, train loss null), TensorBoard has epoch 0's validation scalars at step 0 and no
// train loss there, and training epochs are numbered 1, 2, … after it.
func TestEpochZeroIsACheckpointCandidate(t *testing.T) {
	dir := t.TempDir()
	initRun, runDir := filepath.Join(dir, "init"), filepath.Join(dir, "run")
	args := func(out, epochs string) []string {
		return append([]string{"train", "--variant", "drcnn", "--out", out}, append(tiny(dir, epochs),
			"training.optimizer.lr=1", "training.callbacks.checkpoint.monitor=metrics_anomaly/average_precision",
			"training.callbacks.checkpoint.mode=max")...)
	}
	mustRun(t, args(initRun, "0")...)
	mustRun(t, args(runDir, "2")...)

	h := history(t, runDir)
	if len(h) != 3 {
		t.Fatalf("history of a 2-epoch run has %d entries, want 3 (epoch 0, the initialisation, then 1 and 2): %v", len(h), h)
	}
	for i, e := range h {
		if got := int(e["epoch"].(float64)); got != i {
			t.Errorf("history entry %d is epoch %d, want %d", i, got, i)
		}
	}
	if tl, ok := h[0]["train_loss"]; !ok || tl != nil {
		t.Errorf("epoch 0's train_loss is %v (present %v), want null: no training step ran", tl, ok)
	}
	for _, e := range h[1:] {
		if _, ok := e["train_loss"].(float64); !ok {
			t.Errorf("epoch %v has no train loss: %v", e["epoch"], e["train_loss"])
		}
	}
	// epoch 0's validation metrics are those of the initialisation, evaluated by the run that
	// never trained
	initVal := readMetrics(t, initRun)["val"].(map[string]any)
	val0 := h[0]["val"].(map[string]any)
	for _, k := range []string{"average_precision", "auroc", "iou", "f1_score"} {
		if !sameJSON(val0[k], initVal[k]) {
			t.Errorf("epoch 0 val %s = %v, the untrained run's val %s = %v", k, val0[k], k, initVal[k])
		}
	}
	ap0 := val0["average_precision"].(float64)
	for _, e := range h[1:] {
		if ap := e["val"].(map[string]any)["average_precision"].(float64); ap >= ap0 {
			t.Fatalf("precondition: lr 1 should make validation worse, but epoch %v has val AP %v >= epoch 0's %v", e["epoch"], ap, ap0)
		}
	}
	m := readMetrics(t, runDir)
	if got, _ := m["checkpoint"].(string); filepath.ToSlash(got) != "checkpoints/epoch=00" {
		t.Errorf("metrics.json checkpoint %q, want checkpoints/epoch=00 (the initialisation is best on validation)", got)
	}
	if ce, ok := m["checkpoint_epoch"].(float64); !ok || ce != 0 {
		t.Errorf("metrics.json checkpoint_epoch %v, want 0", m["checkpoint_epoch"])
	}
	if m["epochs"] != 2.0 || m["trained"] != true {
		t.Errorf("metrics.json epochs %v trained %v, want 2 training epochs and trained true", m["epochs"], m["trained"])
	}
	// the published weights (the chosen checkpoint's) are the initialisation's
	a, err := torch.LoadTensors(filepath.Join(initRun, "pipeline.weights.pt"), torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(a)
	b, err := torch.LoadTensors(filepath.Join(runDir, "pipeline.weights.pt"), torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(b)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("weights: %d tensors against %d", len(b), len(a))
	}
	mixer := 0
	for k, ta := range a {
		tb, ok := b[k]
		if !ok {
			t.Errorf("weights lack %s", k)
			continue
		}
		x, y := floats(t, ta), floats(t, tb)
		if len(x) != len(y) {
			t.Errorf("%s: %d values against %d", k, len(y), len(x))
			continue
		}
		for i := range x {
			if x[i] != y[i] && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
				t.Errorf("%s[%d] = %v, the initialisation's %v", k, i, y[i], x[i])
				break
			}
		}
		if strings.Contains(k, "channel_mixer") {
			mixer++
		}
	}
	if mixer == 0 {
		t.Errorf("no channel_mixer tensor among the weights %v", keysT(a))
	}
	// the last checkpoint did train: its mixer differs from the initialisation
	last, err := torch.LoadTensors(filepath.Join(runDir, "checkpoints", "last", "weights.pt"), torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(last)
	differs := false
	for k, ta := range a {
		if tl, ok := last[k]; ok && strings.Contains(k, "channel_mixer") && !sameJSON(floats(t, ta), floats(t, tl)) {
			differs = true
		}
	}
	if !differs {
		t.Error("precondition: the last checkpoint's mixer equals the initialisation; training did not move it")
	}
	// TensorBoard: epoch 0's validation scalars at step 0, no train loss at step 0
	files, err := tboard.EventFiles(filepath.Join(runDir, "tb"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no event files: %v", err)
	}
	evs, err := tboard.ReadEvents(files[0])
	if err != nil {
		t.Fatal(err)
	}
	at0 := map[string]float32{}
	for _, e := range evs {
		for _, v := range e.Values {
			if e.Step == 0 && v.Kind == tboard.KindScalar {
				at0[v.Tag] = v.Scalar
			}
		}
	}
	if got, ok := at0["metrics_anomaly/average_precision"]; !ok || float64(got) != float64(float32(ap0)) {
		t.Errorf("TensorBoard metrics_anomaly/average_precision at step 0: %v (present %v), want epoch 0's %v", got, ok, ap0)
	}
	for _, tag := range []string{"val/loss", "lr-adamw"} {
		if _, ok := at0[tag]; !ok {
			t.Errorf("TensorBoard has no %s at step 0 (have %v)", tag, at0)
		}
	}
	if _, ok := at0["train/epoch_loss"]; ok {
		t.Error("TensorBoard has a train/epoch_loss at step 0: epoch 0 trained nothing")
	}
}

// Epoch 0 does not step the LR schedule: with an exponential schedule (gamma 0.5) training
// epoch N runs at lr·0.5^(N-1), as without epoch 0, and epoch 0 records the base lr.
func TestEpochZeroDoesNotStepTheSchedule(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "drcnn", "--out", runDir}, append(tiny(dir, "3"),
		"training.optimizer.lr=0.01", "training.scheduler.name=exponential", "training.scheduler.gamma=0.5")...)...)
	h := history(t, runDir)
	if len(h) != 4 {
		t.Fatalf("history of a 3-epoch run has %d entries, want 4", len(h))
	}
	for _, e := range h {
		n := int(e["epoch"].(float64))
		want := 0.01
		if n > 1 {
			want = 0.01 * math.Pow(0.5, float64(n-1))
		}
		if lr := e["lr"].(float64); math.Abs(lr-want) > 1e-15 {
			t.Errorf("epoch %d lr %v, want %v", n, lr, want)
		}
	}
}

func floats(t *testing.T, x *torch.Tensor) []float64 {
	t.Helper()
	out, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keysT(m map[string]*torch.Tensor) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A checkpoint written before epoch 0 existed numbered its training epochs from 0 (state
// epoch 1 = two epochs done, no epoch-0 entry, no epoch_zero). Resuming one renumbers it:
// it trains the third epoch only, which equals an uninterrupted run's epoch 3, and its
// history reads 1, 2, 3. The old checkpoint is made from a new one by undoing the
// numbering in its state.json (and its manifest's checksum).
func TestResumeCheckpointNumberedFromZero(t *testing.T) {
	dir := t.TempDir()
	a, c := filepath.Join(dir, "a"), filepath.Join(dir, "c")
	args := func(out, epochs string) []string {
		return append([]string{"train", "--variant", "drcnn", "--out", out}, tiny(dir, epochs)...)
	}
	mustRun(t, args(a, "3")...)
	mustRun(t, args(c, "2")...)
	last := filepath.Join(c, "checkpoints", "last")
	sb, err := os.ReadFile(filepath.Join(last, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(sb, &st); err != nil {
		t.Fatal(err)
	}
	if st["epoch_zero"] != true || st["epoch"] != 2.0 {
		t.Fatalf("state.json of a 2-epoch run: epoch %v epoch_zero %v", st["epoch"], st["epoch_zero"])
	}
	delete(st, "epoch_zero")
	st["epoch"] = 1.0
	h := st["history"].([]any)[1:] // no epoch 0 then
	for _, e := range h {
		e.(map[string]any)["epoch"] = e.(map[string]any)["epoch"].(float64) - 1
	}
	st["history"] = h
	var best []any
	for _, b := range st["best"].([]any) {
		if bm := b.(map[string]any); bm["epoch"].(float64) > 0 {
			bm["epoch"] = bm["epoch"].(float64) - 1
			best = append(best, bm)
		}
	}
	st["best"] = best
	nb, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(last, "state.json"), nb, 0o644); err != nil {
		t.Fatal(err)
	}
	var man run.Manifest
	mb, err := os.ReadFile(filepath.Join(last, run.ManifestName))
	if err != nil || json.Unmarshal(mb, &man) != nil {
		t.Fatalf("manifest: %v", err)
	}
	sum := sha256.Sum256(nb)
	man.Files["state.json"] = run.FileHash{Size: int64(len(nb)), SHA256: hex.EncodeToString(sum[:])}
	man.Epoch = 1
	mb, _ = json.MarshalIndent(man, "", "  ")
	if err := os.WriteFile(filepath.Join(last, run.ManifestName), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, append(args(c, "3"), "--resume", last)...)
	ha, hc := history(t, a), history(t, c)
	var got []int
	for _, e := range hc {
		got = append(got, int(e["epoch"].(float64)))
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("resumed history epochs %v, want [1 2 3]", got)
	}
	if len(ha) != 4 || !sameJSON(ha[3]["val"], hc[2]["val"]) || ha[3]["train_loss"] != hc[2]["train_loss"] {
		t.Errorf("resumed epoch 3 differs from the uninterrupted run's:\n%v\n%v", ha[len(ha)-1], hc[2])
	}
	if m := readMetrics(t, c); m["epochs"] != 3.0 {
		t.Errorf("metrics.json epochs %v, want 3", m["epochs"])
	}
}
