package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestDataParallelEqualsOneProcessBitForBit: with one training frame, rank 1's shard is
// rank 0's frame again (the padding), so both ranks compute the same gradient g, and the
// all-reduce mean (g+g)·½ is g bit for bit (doubling and halving are exact in floating
// point): a 2-rank run must end bit for bit as the 1-process run. This holds for any
// optimizer and loss, so the drcnn trainrun runs as it is (AdamW, the IoU loss with min-max
// normalisation, the PCA initialisation, the plateau scheduler), with gradient clipping at
// its default (1.0) and off (0): a gradient scaled ×2 cannot hide under the clipping, and
// AdamW's ε keeps a ×2 visible in the bits. The statistical fit must count the frame once,
// as one process does (a padded repeat is no new data). Compared: both weights files byte
// for byte (parameters, fitted buffers, RNG states), every epoch's training loss bitwise,
// and the val/test metrics within 1e-12 relative (the ranks' validation loss sums are added
// in another order than one process adds its frames'; the pooled pixels give the same
// AUROC, AP and counts).
func TestDataParallelEqualsOneProcessBitForBit(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	for _, clip := range []string{"", "0"} {
		name := "clip_default"
		if clip != "" {
			name = "clip_" + clip
		}
		t.Run(name, func(t *testing.T) {
			args := append([]string{"train", "--variant", "drcnn"}, distTiny(data, "3", 1)...)
			args = append(args, "data.train_ids=[0]")
			if clip != "" {
				args = append(args, "training.trainer.gradient_clip_val="+clip)
			}
			one, two := filepath.Join(dir, name+"_one"), filepath.Join(dir, name+"_two")
			if out, err := spectraclipProc(t, nil, append(args, "--out", one)...); err != nil {
				t.Fatalf("one process: %v\n%s", err, out)
			}
			if out, err := spectraclipProc(t, nil, append(args, "--out", two, "--nproc-per-node", "2")...); err != nil {
				t.Fatalf("two processes: %v\nrank 0:\n%s", err, rankLines(out, 0))
			}
			for _, f := range []string{"pipeline.weights.pt", filepath.Join("checkpoints", "last", "weights.pt")} {
				a, err1 := os.ReadFile(filepath.Join(one, f))
				b, err2 := os.ReadFile(filepath.Join(two, f))
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: %v, %v", f, err1, err2)
				}
				if !bytes.Equal(a, b) {
					wa, wb := loadWeights(t, filepath.Join(one, f)), loadWeights(t, filepath.Join(two, f))
					for k, x := range wa {
						if d := maxDiff(x, wb[k]); d != 0 {
							t.Logf("%s %-36s max |Δ| %.3g", f, k, d)
						}
					}
					t.Errorf("%s: the 2-process run's differs from the one process's", f)
				}
			}
			ma, mb := readMetrics(t, one), readMetrics(t, two)
			ha, _ := ma["history"].([]any)
			hb, _ := mb["history"].([]any)
			if len(ha) != 4 || len(hb) != len(ha) {
				t.Fatalf("history of %d and %d entries, want 4", len(ha), len(hb))
			}
			for i := range ha {
				ea, eb := ha[i].(map[string]any), hb[i].(map[string]any)
				if fmt.Sprint(ea["train_loss"]) != fmt.Sprint(eb["train_loss"]) {
					t.Errorf("epoch %d: training loss %v in one process, %v in two", i, ea["train_loss"], eb["train_loss"])
				}
				closeMetrics(t, fmt.Sprintf("epoch %d val", i), ea["val"], eb["val"])
				if !closeRel(ea["val_loss"], eb["val_loss"]) {
					t.Errorf("epoch %d: val loss %v in one process, %v in two", i, ea["val_loss"], eb["val_loss"])
				}
			}
			closeMetrics(t, "test", ma["test"], mb["test"])
		})
	}
}

// closeRel: two JSON numbers within 1e-12 relative (or both absent, or equal otherwise).
func closeRel(a, b any) bool {
	x, okx := a.(float64)
	y, oky := b.(float64)
	if !okx || !oky {
		return fmt.Sprint(a) == fmt.Sprint(b)
	}
	return math.Abs(x-y) <= 1e-12*math.Max(1, math.Abs(x))
}

func closeMetrics(t *testing.T, what string, a, b any) {
	t.Helper()
	ma, _ := a.(map[string]any)
	mb, _ := b.(map[string]any)
	if len(ma) == 0 || len(ma) != len(mb) {
		t.Errorf("%s metrics: %v and %v", what, a, b)
		return
	}
	for k, v := range ma {
		if !closeRel(v, mb[k]) {
			t.Errorf("%s %s: one process %v, two %v", what, k, v, mb[k])
		}
	}
}
