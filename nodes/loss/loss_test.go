package loss

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func build(t *testing.T, typ string, params map[string]any) nodes.Node {
	t.Helper()
	n, err := nodes.Builtins.New(typ, "l", params)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func goIoU(x []float64, tg []bool, method string, smooth, weight float64) float64 {
	p := make([]float64, len(x))
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	for i, v := range x {
		switch method {
		case "sigmoid":
			p[i] = 1 / (1 + math.Exp(-v))
		case "clamp":
			p[i] = math.Min(1, math.Max(0, v))
		case "minmax":
			p[i] = 0.5
			if hi > lo {
				p[i] = (v - lo) / (hi - lo + smooth)
			}
		}
	}
	var in, sp, st float64
	for i := range p {
		if tg[i] {
			in += p[i]
			st++
		}
		sp += p[i]
	}
	return weight * (1 - (in+smooth)/(sp+st-in+smooth))
}

func TestIoULoss(t *testing.T) {
	const b, h, w = 2, 5, 6
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float64, b*h*w)
	tg := make([]bool, len(x))
	for i := range x {
		x[i] = 1.5 * rng.NormFloat64()
		tg[i] = rng.Float64() < 0.3
	}
	for _, m := range []string{"sigmoid", "clamp", "minmax"} {
		n := build(t, "cuvis_ai.node.losses.IoULoss", map[string]any{"normalize_method": m, "weight": 0.7, "smooth": 1e-3})
		s := torch.NewScope()
		xt := s.FromFloat64(x, b, h, w, 1)
		if err := xt.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		out, err := n.Forward(&nodes.Context{Stage: nodes.StageTrain, Scope: s}, map[string]any{"predictions": xt, "targets": s.FromBool(tg, b, h, w, 1)})
		if err != nil {
			t.Fatal(err)
		}
		l := out["loss"].(*torch.Tensor)
		got, _ := l.Item()
		if want := goIoU(x, tg, m, 1e-3, 0.7); math.Abs(got-want) > 1e-12 {
			t.Fatalf("%s: loss %.15g, want %.15g", m, got, want)
		}
		s.Backward(l, nil, false)
		g, err := s.Grad(xt).Float64s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			old := x[i]
			x[i] = old + 1e-6
			up := goIoU(x, tg, m, 1e-3, 0.7)
			x[i] = old - 1e-6
			dn := goIoU(x, tg, m, 1e-3, 0.7)
			x[i] = old
			if fd := (up - dn) / 2e-6; math.Abs(g[i]-fd) > 1e-6 {
				t.Fatalf("%s: grad[%d] = %g, finite difference %g", m, i, g[i], fd)
			}
		}
		s.Close()
	}
	// Constant batch under minmax: p = 0.5 everywhere.
	s := torch.NewScope()
	defer s.Close()
	n := build(t, "IoULoss", map[string]any{"normalize_method": "minmax"})
	c := make([]float64, 8)
	out, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"predictions": s.FromFloat64(c, 1, 2, 4, 1), "targets": s.FromBool(tg[:8], 1, 2, 4, 1)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out["loss"].(*torch.Tensor).Item()
	if want := goIoU(c, tg[:8], "minmax", 1e-6, 1); math.Abs(got-want) > 1e-12 {
		t.Fatalf("constant minmax: %g, want %g", got, want)
	}
	if _, err := nodes.Builtins.New("IoULoss", "l", map[string]any{"normalize_method": "softmax"}); err == nil {
		t.Fatal("unknown normalize_method accepted")
	}
}

func lossOf(t *testing.T, n nodes.Node, s *torch.Scope, port string, v *torch.Tensor) float64 {
	t.Helper()
	out, err := n.Forward(&nodes.Context{Stage: nodes.StageVal, Scope: s}, map[string]any{port: v})
	if err != nil {
		t.Fatal(err)
	}
	x, err := out["loss"].(*torch.Tensor).Item()
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestDistinctness(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	n := build(t, "cuvis_ai.node.losses.DistinctnessLoss", map[string]any{"weight": 0.5})
	// One-hot rows selecting distinct bands: the reference gives NaN, here 0.
	oh := []float64{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1}
	if got := lossOf(t, n, s, "selection_weights", s.FromFloat64(oh, 3, 4)); got != 0 {
		t.Fatalf("orthogonal rows: loss %g, want 0", got)
	}
	// Two identical rows and one orthogonal: cosines 1, 0, 0 → mean over 3 pairs = 1/3.
	two := []float64{2, 1, 0, 0, 4, 2, 0, 0, 0, 0, 3, 0}
	if got := lossOf(t, n, s, "selection_weights", s.FromFloat64(two, 3, 4)); math.Abs(got-0.5/3) > 1e-12 {
		t.Fatalf("loss %g, want %g", got, 0.5/3)
	}
	// Random positive rows against a Go computation.
	rng := rand.New(rand.NewPCG(2, 2))
	k, T := 4, 9
	w := make([]float64, k*T)
	for i := range w {
		w[i] = rng.Float64()
	}
	want, pairs := 0.0, 0.0
	for a := 0; a < k; a++ {
		for b := a + 1; b < k; b++ {
			var d, na, nb float64
			for j := 0; j < T; j++ {
				d += w[a*T+j] * w[b*T+j]
				na += w[a*T+j] * w[a*T+j]
				nb += w[b*T+j] * w[b*T+j]
			}
			want += d / math.Sqrt(na*nb)
			pairs++
		}
	}
	if got := lossOf(t, n, s, "selection_weights", s.FromFloat64(w, int64(k), int64(T))); math.Abs(got-0.5*want/pairs) > 1e-12 {
		t.Fatalf("random rows: %g, want %g", got, 0.5*want/pairs)
	}
	if got := lossOf(t, n, s, "selection_weights", s.FromFloat64(w[:T], 1, int64(T))); got != 0 {
		t.Fatalf("K=1: %g, want 0", got)
	}
}

func TestRegularizersAndBCE(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	rng := rand.New(rand.NewPCG(3, 3))
	w := make([]float64, 10)
	for i := range w {
		w[i] = rng.Float64()
	}
	sum, mean := 0.0, 0.0
	for _, v := range w {
		sum += v
	}
	mean = sum / 10
	H, vr := 0.0, 0.0
	for _, v := range w {
		p := v / (sum + 1e-6)
		H -= p * math.Log(p+1e-6)
		vr += (v - mean) * (v - mean) / 10
	}
	wt := s.FromFloat64(w, 10)
	if got := lossOf(t, build(t, "SelectorEntropyRegularizer", map[string]any{"weight": 0.3}), s, "weights", wt); math.Abs(got+0.3*H) > 1e-12 {
		t.Fatalf("entropy: %g, want %g", got, -0.3*H)
	}
	if got := lossOf(t, build(t, "SelectorEntropyRegularizer", map[string]any{"weight": 0.3, "target_entropy": 1.0}), s, "weights", wt); math.Abs(got-0.3*(H-1)*(H-1)) > 1e-12 {
		t.Fatalf("entropy with target: %g, want %g", got, 0.3*(H-1)*(H-1))
	}
	if got := lossOf(t, build(t, "SelectorDiversityRegularizer", map[string]any{"weight": 0.2}), s, "weights", wt); math.Abs(got+0.2*vr) > 1e-12 {
		t.Fatalf("diversity: %g, want %g", got, -0.2*vr)
	}
	// BCE with pos_weight against the textbook formula.
	x := make([]float64, 12)
	tg := make([]bool, 12)
	want := 0.0
	for i := range x {
		x[i] = 3 * rng.NormFloat64()
		tg[i] = rng.Float64() < 0.4
		sig := 1 / (1 + math.Exp(-x[i]))
		if tg[i] {
			want -= 2.5 * math.Log(sig)
		} else {
			want -= math.Log(1 - sig)
		}
	}
	want = 0.8 * want / 12
	n := build(t, "AnomalyBCEWithLogits", map[string]any{"weight": 0.8, "pos_weight": 2.5})
	out, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"predictions": s.FromFloat64(x, 1, 3, 4, 1), "targets": s.FromBool(tg, 1, 3, 4, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := out["loss"].(*torch.Tensor).Item(); math.Abs(got-want) > 1e-10 {
		t.Fatalf("bce: %g, want %g", got, want)
	}
}
