package metric

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// With a valid mask the node pools only those pixels: the same metrics as the masked pixels
// fed alone, and counts checked against a plain count.
func TestValidRestrictsPooling(t *testing.T) {
	const h, w = 9, 11
	rng := rand.New(rand.NewPCG(5, 8))
	sc := make([]float32, h*w)
	tg, dec, valid := make([]bool, h*w), make([]bool, h*w), make([]bool, h*w)
	var ss []float32
	var ts, ds []bool
	tp := 0
	for i := range sc {
		sc[i] = float32(rng.NormFloat64())
		tg[i] = rng.Float64() < 0.3
		dec[i] = sc[i] > 0.5
		valid[i] = rng.Float64() < 0.4
		if valid[i] {
			ss, ts, ds = append(ss, sc[i]), append(ts, tg[i]), append(ds, dec[i])
			if tg[i] && dec[i] {
				tp++
			}
		}
	}
	s := torch.NewScope()
	defer s.Close()
	a, _ := nodes.Builtins.New("AnomalyMetrics", "a", nil)
	out, err := a.Forward(&nodes.Context{Stage: nodes.StageTest, Scope: s}, map[string]any{"decisions": s.FromBool(dec, 1, h, w, 1),
		"targets": s.FromBool(tg, 1, h, w, 1), "logits": s.FromFloat32(sc, 1, h, w, 1), "valid": s.FromBool(valid, 1, h, w, 1)})
	if err != nil {
		t.Fatal(err)
	}
	got := out["metrics"].(map[string]float64)
	n := int64(len(ss))
	if c := a.(*AnomalyMetrics).Count(); c != n {
		t.Fatalf("pooled %d pixels, want the %d valid ones", c, n)
	}
	b, _ := nodes.Builtins.New("AnomalyMetrics", "b", nil)
	out, err = b.Forward(&nodes.Context{Stage: nodes.StageTest, Scope: s}, map[string]any{"decisions": s.FromBool(ds, 1, 1, n, 1),
		"targets": s.FromBool(ts, 1, 1, n, 1), "logits": s.FromFloat32(ss, 1, 1, n, 1)})
	if err != nil {
		t.Fatal(err)
	}
	want := out["metrics"].(map[string]float64)
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Fatalf("%s = %v with the mask, %v on the masked pixels alone", k, got[k], v)
		}
	}
	pos := 0
	for i := range ts {
		if ts[i] {
			pos++
		}
	}
	if r := float64(tp) / float64(pos); math.Abs(got["recall"]-r) > 1e-12 {
		t.Fatalf("recall %v, want %d/%d", got["recall"], tp, pos)
	}
}
