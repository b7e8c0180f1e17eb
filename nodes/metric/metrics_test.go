package metric

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/torch"
)

func TestPooledEqualsOneBatch(t *testing.T) {
	const b, h, w = 6, 16, 16
	rng := rand.New(rand.NewPCG(1, 2))
	n := b * h * w
	logit := make([]float32, n)
	tg := make([]bool, n)
	dec := make([]bool, n)
	sc := make([]float64, n)
	for i := range logit {
		tg[i] = rng.Float64() < 0.1
		mu := 0.0
		if tg[i] {
			mu = 1.5
		}
		logit[i] = float32(mu + rng.NormFloat64())
		dec[i] = logit[i] > 1
		sc[i] = float64(logit[i])
	}
	run := func(batches int) map[string]float64 {
		node, err := nodes.Builtins.New("cuvis_ai.node.metrics.AnomalyDetectionMetrics", "m", nil)
		if err != nil {
			t.Fatal(err)
		}
		per := n / batches
		var out map[string]any
		for k := 0; k < batches; k++ {
			s := torch.NewScope()
			bb := int64(b / batches)
			in := map[string]any{
				"decisions": s.FromBool(dec[k*per:(k+1)*per], bb, h, w, 1),
				"targets":   s.FromBool(tg[k*per:(k+1)*per], bb, h, w, 1),
				"logits":    s.FromFloat32(logit[k*per:(k+1)*per], bb, h, w, 1),
			}
			out, err = node.Forward(&nodes.Context{Stage: nodes.StageVal, Scope: s}, in)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		m := node.(*AnomalyMetrics).Result()
		if om := out["metrics"].(map[string]float64); om["iou"] != m["iou"] {
			t.Fatalf("Forward output %v differs from Result %v", om, m)
		}
		return m
	}
	one, six := run(1), run(6)
	for k, v := range one {
		if six[k] != v {
			t.Fatalf("%s: pooled over 6 batches %g, one batch %g", k, six[k], v)
		}
	}
	// Thresholded metrics from exact counts; ranking metrics within 1e-3 of exact.
	var tp, fp, fn float64
	for i := range dec {
		switch {
		case dec[i] && tg[i]:
			tp++
		case dec[i]:
			fp++
		case tg[i]:
			fn++
		}
	}
	for name, want := range map[string]float64{
		"precision": tp / (tp + fp), "recall": tp / (tp + fn), "f1_score": 2 * tp / (2*tp + fp + fn), "iou": tp / (tp + fp + fn),
		"average_precision": metriccore.ExactAP(sc, tg), "auroc": metriccore.ExactAUROC(sc, tg),
	} {
		if math.Abs(one[name]-want) > 1e-3 {
			t.Fatalf("%s = %g, want %g", name, one[name], want)
		}
	}
}

func TestResetOnNewEpochAndNoLogits(t *testing.T) {
	node, _ := nodes.Builtins.New("AnomalyMetrics", "m", map[string]any{"bins": 256})
	s := torch.NewScope()
	defer s.Close()
	in := map[string]any{"decisions": s.FromBool([]bool{true, false, true, false}, 1, 2, 2, 1), "targets": s.FromBool([]bool{true, true, false, false}, 1, 2, 2, 1)}
	if _, err := node.Forward(&nodes.Context{Stage: nodes.StageVal, Epoch: 0, Scope: s}, in); err != nil {
		t.Fatal(err)
	}
	out, err := node.Forward(&nodes.Context{Stage: nodes.StageVal, Epoch: 1, Scope: s}, in)
	if err != nil {
		t.Fatal(err)
	}
	m := out["metrics"].(map[string]float64)
	if node.(*AnomalyMetrics).Count() != 4 || m["precision"] != 0.5 || m["iou"] != 1.0/3 {
		t.Fatalf("after epoch change: count %d metrics %v", node.(*AnomalyMetrics).Count(), m)
	}
	if _, ok := m["average_precision"]; ok {
		t.Fatal("average_precision reported without logits")
	}
	if _, err := node.Forward(&nodes.Context{Stage: nodes.StageVal, Scope: s}, map[string]any{"decisions": in["decisions"]}); err == nil {
		t.Fatal("missing targets accepted")
	}
}
