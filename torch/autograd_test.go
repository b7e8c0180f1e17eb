package torch

import (
	"math"
	"path/filepath"
	"slices"
	"testing"
)

// composite is f(x) = Σ sigmoid(w·x) · log(1 + x²) + Σ (x·w)², written in Go float64.
func composite(x, w []float64) float64 {
	f := 0.0
	for i := range x {
		f += 1/(1+math.Exp(-w[i]*x[i]))*math.Log(1+x[i]*x[i]) + (x[i]*w[i])*(x[i]*w[i])
	}
	return f
}

func TestAutogradComposite(t *testing.T) {
	r := newRNG(20)
	s := newScope(t)
	x := randF64(r, 10, -2, 2)
	w := randF64(r, 10, -1, 1)
	tx := s.FromFloat64(x, 10)
	tw := s.FromFloat64(w, 10)
	if tx.RequiresGrad() {
		t.Fatal("fresh tensor requires grad")
	}
	if err := tx.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	if !tx.RequiresGrad() {
		t.Fatal("SetRequiresGrad(true) did not take")
	}
	xw := s.Mul(tx, tw)
	f := s.Add(s.Sum(s.Mul(s.Sigmoid(xw), s.Log1p(s.Square(tx))), false), s.Sum(s.Square(xw), false))
	fv, _ := f.Item()
	if math.Abs(fv-composite(x, w)) > 1e-12 {
		t.Fatalf("forward %v, want %v", fv, composite(x, w))
	}
	if s.Grad(tx) != nil {
		t.Fatal("grad before backward")
	}
	s.Backward(f, nil, false)
	g := vals(t, s, s.Grad(tx))
	if tw.RequiresGrad() || s.Grad(tw) != nil {
		t.Fatal("constant input got a gradient")
	}
	const h = 1e-6
	for i := range x {
		xp, xm := slices.Clone(x), slices.Clone(x)
		xp[i] += h
		xm[i] -= h
		fd := (composite(xp, w) - composite(xm, w)) / (2 * h)
		if math.Abs(fd-g[i]) > 1e-6*(1+math.Abs(fd)) {
			t.Errorf("grad[%d] = %v, finite difference %v", i, g[i], fd)
		}
	}
	// accumulation: a second backward adds the same gradient again
	f2 := s.Sum(s.Square(s.Mul(tx, tw)), false)
	s.Backward(f2, nil, false)
	g2 := vals(t, s, s.Grad(tx))
	for i := range x {
		want := g[i] + 2*x[i]*w[i]*w[i]
		if math.Abs(g2[i]-want) > 1e-12 {
			t.Fatalf("accumulated grad[%d] = %v, want %v", i, g2[i], want)
		}
	}
	if err := tx.ZeroGrad(false); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals(t, s, s.Grad(tx)) {
		if v != 0 {
			t.Fatalf("zero_grad left %v at %d", v, i)
		}
	}
	if err := tx.ZeroGrad(true); err != nil {
		t.Fatal(err)
	}
	if s.Grad(tx) != nil {
		t.Fatal("zero_grad(setToNone) left a gradient")
	}
	// detach and no-grad record nothing
	if s.Detach(s.Mul(tx, tw)).RequiresGrad() {
		t.Error("detached tensor requires grad")
	}
	var ng *Tensor
	s.NoGrad(func() { ng = s.Mul(tx, tw) })
	if ng.RequiresGrad() {
		t.Error("op under NoGrad recorded a graph")
	}
	if !s.GradEnabled() || !s.Mul(tx, tw).RequiresGrad() {
		t.Error("grad mode not restored after NoGrad")
	}
	prev := s.SetGradEnabled(false)
	if !prev || s.Add(tx, tx).RequiresGrad() {
		t.Error("SetGradEnabled(false) did not switch recording off")
	}
	s.SetGradEnabled(true)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

// optRef is a Go float64 implementation of the three optimizers' update rules.
type optRef struct {
	kind                   OptimKind
	lr, b1, b2, eps, wd, m float64
	step                   int
	mom, v, buf            []float64
}

func (o *optRef) update(p, g []float64) {
	o.step++
	if o.mom == nil {
		o.mom, o.v, o.buf = make([]float64, len(p)), make([]float64, len(p)), nil
	}
	for i := range p {
		gi := g[i]
		switch o.kind {
		case SGD:
			gi += o.wd * p[i]
			if o.m != 0 {
				if o.buf == nil {
					o.buf = slices.Clone(g)
					for j := range o.buf {
						o.buf[j] = g[j] + o.wd*p[j]
					}
				} else if i == 0 && o.step > 1 {
					// momentum buffer updated below, element-wise
				}
				if o.step > 1 {
					o.buf[i] = o.m*o.buf[i] + gi
				}
				gi = o.buf[i]
			}
			p[i] -= o.lr * gi
		case Adam, AdamW:
			if o.kind == Adam {
				gi += o.wd * p[i]
			} else {
				p[i] *= 1 - o.lr*o.wd
			}
			o.mom[i] = o.b1*o.mom[i] + (1-o.b1)*gi
			o.v[i] = o.b2*o.v[i] + (1-o.b2)*gi*gi
			mh := o.mom[i] / (1 - math.Pow(o.b1, float64(o.step)))
			vh := o.v[i] / (1 - math.Pow(o.b2, float64(o.step)))
			p[i] -= o.lr * mh / (math.Sqrt(vh) + o.eps)
		}
	}
}

// lossGrad is the gradient of L(p) = Σ c·p + ½ Σ p³/3·... ; here L = Σ c·p + Σ p⁴/4 so
// that the gradient c + p³ changes from step to step.
func lossGrad(p, c []float64) []float64 {
	g := make([]float64, len(p))
	for i := range p {
		g[i] = c[i] + p[i]*p[i]*p[i]
	}
	return g
}

func stepTorch(t *testing.T, o *Optimizer, p *Tensor, c []float64) {
	t.Helper()
	s := NewScope()
	defer s.Close()
	tc := s.FromFloat64(c, int64(len(c)))
	loss := s.Add(s.Sum(s.Mul(tc, p), false), s.DivScalar(s.Sum(s.PowScalar(p, 4), false), 4))
	if err := o.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	s.Backward(loss, nil, false)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if err := o.Step(); err != nil {
		t.Fatal(err)
	}
}

func TestOptimizers(t *testing.T) {
	cases := []struct {
		name string
		kind OptimKind
		cfg  OptimConfig
	}{
		{"sgd", SGD, OptimConfig{LR: 0.05}},
		{"sgd momentum", SGD, OptimConfig{LR: 0.05, Momentum: 0.9}},
		{"sgd momentum wd", SGD, OptimConfig{LR: 0.05, Momentum: 0.8, WeightDecay: 0.01}},
		{"adam", Adam, OptimConfig{LR: 0.01}},
		{"adam wd", Adam, OptimConfig{LR: 0.01, WeightDecay: 0.1, Betas: [2]float64{0.8, 0.99}, Eps: 1e-6}},
		{"adamw", AdamW, OptimConfig{LR: 0.01, WeightDecay: 0.1}},
	}
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRNG(uint64(30 + k))
			p0 := randF64(r, 8, -1, 1)
			cc := randF64(r, 8, -1, 1)
			s := newScope(t)
			p := s.FromFloat64(p0, 8)
			s.Keep(p)
			defer p.Free()
			if err := p.SetRequiresGrad(true); err != nil {
				t.Fatal(err)
			}
			o, err := NewOptimizer(c.kind, []*Tensor{p}, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Free()
			b := c.cfg.Betas
			if b == [2]float64{} {
				b = [2]float64{0.9, 0.999}
			}
			eps := c.cfg.Eps
			if eps == 0 {
				eps = 1e-8
			}
			ref := &optRef{kind: c.kind, lr: c.cfg.LR, b1: b[0], b2: b[1], eps: eps, wd: c.cfg.WeightDecay, m: c.cfg.Momentum}
			pr := slices.Clone(p0)
			for step := 1; step <= 5; step++ {
				ref.update(pr, lossGrad(pr, cc))
				stepTorch(t, o, p, cc)
				got, _ := p.Float64s()
				closeAll(t, "step "+string(rune('0'+step)), got, pr, 1e-12, 1e-12)
			}
			lr, err := o.LR()
			if err != nil || lr != c.cfg.LR {
				t.Fatalf("LR = %v, %v", lr, err)
			}
			if err := o.SetLR(0.5 * c.cfg.LR); err != nil {
				t.Fatal(err)
			}
			if lr, _ := o.LR(); lr != 0.5*c.cfg.LR {
				t.Fatalf("LR after SetLR = %v", lr)
			}
		})
	}
}

func TestOptimizerStateRoundTrip(t *testing.T) {
	for _, kind := range []OptimKind{SGD, Adam, AdamW} {
		t.Run(kind2s(kind), func(t *testing.T) {
			r := newRNG(40)
			p0 := randF64(r, 6, -1, 1)
			cc := randF64(r, 6, -1, 1)
			cfg := OptimConfig{LR: 0.02, WeightDecay: 0.05, Momentum: 0.9}
			s := newScope(t)
			pa := s.FromFloat64(p0, 6)
			_ = pa.SetRequiresGrad(true)
			oa, err := NewOptimizer(kind, []*Tensor{pa}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer oa.Free()
			for i := 0; i < 2; i++ {
				stepTorch(t, oa, pa, cc)
			}
			path := filepath.Join(t.TempDir(), "opt.pt")
			if err := oa.Save(path); err != nil {
				t.Fatal(err)
			}
			mid, _ := pa.Float64s()
			pb := s.FromFloat64(mid, 6)
			_ = pb.SetRequiresGrad(true)
			ob, err := NewOptimizer(kind, []*Tensor{pb}, OptimConfig{LR: 0.3}) // options come from the file
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Free()
			if err := ob.Load(path); err != nil {
				t.Fatal(err)
			}
			if lr, _ := ob.LR(); lr != cfg.LR {
				t.Fatalf("LR after Load = %v, want the saved %v", lr, cfg.LR)
			}
			for i := 0; i < 3; i++ {
				stepTorch(t, oa, pa, cc)
				stepTorch(t, ob, pb, cc)
			}
			a, _ := pa.Float64s()
			b, _ := pb.Float64s()
			if !slices.Equal(a, b) {
				t.Fatalf("loaded optimizer diverged: %v vs %v", b, a)
			}
			if slices.Equal(a, mid) {
				t.Fatal("steps did not move the parameters")
			}
		})
	}
}

func kind2s(k OptimKind) string { return [...]string{"sgd", "adam", "adamw"}[k] }

func TestClipGradNorm(t *testing.T) {
	r := newRNG(50)
	s := newScope(t)
	c1, c2 := randF64(r, 5, -2, 2), randF64(r, 3, -2, 2)
	for _, tc := range []struct {
		maxNorm, normType float64
	}{{0.5, 2}, {100, 2}, {0.3, math.Inf(1)}, {1, 1}} {
		p1, p2 := s.FromFloat64(randF64(r, 5, -1, 1), 5), s.FromFloat64(randF64(r, 3, -1, 1), 3)
		_ = p1.SetRequiresGrad(true)
		_ = p2.SetRequiresGrad(true)
		loss := s.Add(s.Sum(s.Mul(p1, s.FromFloat64(c1, 5)), false), s.Sum(s.Mul(p2, s.FromFloat64(c2, 3)), false))
		s.Backward(loss, nil, false)
		all := append(slices.Clone(c1), c2...)
		total := 0.0
		for _, v := range all {
			switch {
			case math.IsInf(tc.normType, 1):
				total = math.Max(total, math.Abs(v))
			default:
				total += math.Pow(math.Abs(v), tc.normType)
			}
		}
		if !math.IsInf(tc.normType, 1) {
			total = math.Pow(total, 1/tc.normType)
		}
		got, err := ClipGradNorm([]*Tensor{p1, p2}, tc.maxNorm, tc.normType)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-total) > 1e-12 {
			t.Errorf("norm %v, want %v", got, total)
		}
		coef := math.Min(1, tc.maxNorm/(total+1e-6))
		want := make([]float64, len(all))
		for i, v := range all {
			want[i] = v * coef
		}
		gotG := append(vals(t, s, s.Grad(p1)), vals(t, s, s.Grad(p2))...)
		closeAll(t, "clipped grads", gotG, want, 1e-12, 1e-12)
	}
}
