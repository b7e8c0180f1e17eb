package normalize

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func TestMinMaxNormalizer(t *testing.T) {
	const b, h, w, c = 3, 4, 5, 6
	rng := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, b*h*w*c)
	for i := range v {
		v[i] = float32(100 + 40*rng.NormFloat64())
	}
	s := torch.NewScope()
	defer s.Close()
	ctx := &nodes.Context{Stage: nodes.StageTrain, Scope: s}
	node, err := nodes.Builtins.New("cuvis_ai.node.normalization.MinMaxNormalizer", "norm", nil)
	if err != nil {
		t.Fatal(err)
	}
	n := node.(*MinMaxNormalizer)
	defer n.Close()
	x := s.FromFloat32(v, b, h, w, c)
	if _, err := n.Forward(ctx, map[string]any{"data": x}); err == nil || !strings.Contains(err.Error(), "not fitted") {
		t.Fatalf("unfitted forward: %v", err)
	}
	// Stream the fit image by image; one global scalar min and max over everything.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
	}
	_ = n.FitReset()
	per := h * w * c
	for i := 0; i < b; i++ {
		if err := n.FitBatch(ctx, map[string]any{"data": s.FromFloat32(v[i*per:(i+1)*per], 1, h, w, c)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.FitFinish(); err != nil {
		t.Fatal(err)
	}
	if gl, gh := n.Stats(); gl != lo || gh != hi {
		t.Fatalf("stats %g %g, want %g %g", gl, gh, lo, hi)
	}
	out, err := n.Forward(ctx, map[string]any{"data": x})
	if err != nil {
		t.Fatal(err)
	}
	y, _ := out["normalized"].(*torch.Tensor).Float32s()
	for i := range v {
		if want := (float64(v[i]) - lo) / (hi - lo); math.Abs(float64(y[i])-want) > 1e-6 {
			t.Fatalf("running-stats y[%d] = %g, want %g", i, y[i], want)
		}
	}
	// Per-image, per-channel mode (and the per_image fallback).
	for _, p := range []map[string]any{{"use_running_stats": false}, {"fallback": "per_image"}} {
		pn, err := nodes.Builtins.New("MinMaxNormalizer", "p", p)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pn.Forward(ctx, map[string]any{"data": x})
		if err != nil {
			t.Fatal(err)
		}
		y, _ := out["normalized"].(*torch.Tensor).Float32s()
		for img := 0; img < b; img++ {
			for ch := 0; ch < c; ch++ {
				mn, mx := math.Inf(1), math.Inf(-1)
				for p := 0; p < h*w; p++ {
					x := float64(v[(img*h*w+p)*c+ch])
					mn, mx = math.Min(mn, x), math.Max(mx, x)
				}
				for p := 0; p < h*w; p++ {
					i := (img*h*w+p)*c + ch
					if want := (float64(v[i]) - mn) / (mx - mn); math.Abs(float64(y[i])-want) > 1e-5 {
						t.Fatalf("%v: y[%d] = %g, want %g", p, i, y[i], want)
					}
				}
			}
		}
	}
	// State round trip.
	m, _ := nodes.Builtins.New("MinMaxNormalizer", "m", nil)
	st := map[string]*torch.Tensor{}
	for _, nt := range n.State() {
		st[nt.Name] = nt.Tensor
	}
	if err := m.(nodes.Stateful).LoadState(st); err != nil || !m.(nodes.Fitter).Fitted() {
		t.Fatalf("load state: %v", err)
	}
	if _, err := nodes.Builtins.New("MinMaxNormalizer", "m", map[string]any{"fallback": "silent"}); err == nil {
		t.Fatal("bad fallback accepted")
	}
}
