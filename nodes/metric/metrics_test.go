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

// Unbounded scores (RX distances, raw logits far outside [0,1]) with many ties, pooled over
// several batches: the node's AUROC and AP equal the exact values computed independently in
// numpy (Mann–Whitney with average ranks; sklearn's AP), whatever the score mapping.
func TestUnboundedScoresWithTiesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const batches, b, h, w = 5, 2, 24, 20
	n := batches * b * h * w
	sc := make([]float32, n)
	sc64 := make([]float64, n)
	tg := make([]bool, n)
	dec := make([]bool, n)
	for i := range sc {
		tg[i] = rng.Float64() < 0.04
		mu := 0.0
		if tg[i] {
			mu = 60
		}
		// RX-like: heavy right tail, quantised to quarters so that many scores tie
		v := math.Round((math.Abs(rng.NormFloat64())*40+mu+rng.ExpFloat64()*25)*4) / 4
		if rng.Float64() < 0.05 {
			v = -v // some negative logits too
		}
		sc[i], sc64[i] = float32(v), v
		dec[i] = v > 80
	}
	wantAUC, wantAP := numpyRanking(t, sc64, tg)
	for _, mapping := range []string{"", "sigmoid", "clamp"} {
		params := map[string]any{}
		if mapping != "" {
			params["score_mapping"] = mapping
		}
		node, err := nodes.Builtins.New("AnomalyMetrics", "m", params)
		if err != nil {
			t.Fatal(err)
		}
		per := n / batches
		for k := 0; k < batches; k++ {
			s := torch.NewScope()
			in := map[string]any{
				"decisions": s.FromBool(dec[k*per:(k+1)*per], b, h, w, 1),
				"targets":   s.FromBool(tg[k*per:(k+1)*per], b, h, w, 1),
				"logits":    s.FromFloat32(sc[k*per:(k+1)*per], b, h, w, 1),
			}
			if _, err := node.Forward(&nodes.Context{Stage: nodes.StageTest, Scope: s}, in); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		m := node.(*AnomalyMetrics).Result()
		if math.Abs(m["auroc"]-wantAUC) > 1e-12 || math.Abs(m["average_precision"]-wantAP) > 1e-12 {
			t.Errorf("mapping %q: auroc %.15f ap %.15f, numpy %.15f %.15f", mapping, m["auroc"], m["average_precision"], wantAUC, wantAP)
		}
	}
}

// Past exact_max_pixels the node falls back to a histogram over the score range seen in
// the split; the reported error bounds hold against the exact numpy values and are small.
func TestHistogramFallbackWithinStatedBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const batches, b, h, w = 8, 1, 40, 40
	n := batches * b * h * w
	sc := make([]float32, n)
	sc64 := make([]float64, n)
	tg := make([]bool, n)
	dec := make([]bool, n)
	for i := range sc {
		tg[i] = rng.Float64() < 0.05
		mu := 0.0
		if tg[i] {
			mu = 1.2
		}
		// the later batches reach far beyond the range of the first ones
		v := (mu + rng.NormFloat64()) * float64(1+i/(n/4)) * 300
		sc[i], sc64[i] = float32(v), float64(float32(v))
		dec[i] = v > 500
	}
	wantAUC, wantAP := numpyRanking(t, sc64, tg)
	node, err := nodes.Builtins.New("AnomalyMetrics", "m", map[string]any{"exact_max_pixels": 3000, "bins": 1024})
	if err != nil {
		t.Fatal(err)
	}
	per := n / batches
	for k := 0; k < batches; k++ {
		s := torch.NewScope()
		in := map[string]any{
			"decisions": s.FromBool(dec[k*per:(k+1)*per], b, h, w, 1),
			"targets":   s.FromBool(tg[k*per:(k+1)*per], b, h, w, 1),
			"logits":    s.FromFloat32(sc[k*per:(k+1)*per], b, h, w, 1),
		}
		if _, err := node.Forward(&nodes.Context{Stage: nodes.StageVal, Scope: s}, in); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	m := node.(*AnomalyMetrics).Result()
	ea, ep := m["auroc_max_error"], m["average_precision_max_error"]
	if !(ea > 0 && ea < 5e-3) || !(ep > 0 && ep < 2e-2) {
		t.Fatalf("stated bounds auroc %g ap %g (metrics %v)", ea, ep, m)
	}
	if d := math.Abs(m["auroc"] - wantAUC); d > ea {
		t.Errorf("auroc %.6f differs from numpy %.6f by %g > stated %g", m["auroc"], wantAUC, d, ea)
	}
	if d := math.Abs(m["average_precision"] - wantAP); d > ep {
		t.Errorf("AP %.6f differs from numpy %.6f by %g > stated %g", m["average_precision"], wantAP, d, ep)
	}
	t.Logf("fallback: auroc %.6f (numpy %.6f, bound %.2g), AP %.6f (numpy %.6f, bound %.2g)", m["auroc"], wantAUC, ea, m["average_precision"], wantAP, ep)
}
