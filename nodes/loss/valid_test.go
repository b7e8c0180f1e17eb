package loss

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// A valid mask (the train pixels of a whole-scene run) restricts IoULoss to those pixels: the
// loss equals the float64 IoU of the valid pixels alone, and no gradient reaches the others.
func TestIoULossValidMask(t *testing.T) {
	const b, h, w = 1, 7, 9
	rng := rand.New(rand.NewPCG(7, 3))
	x := make([]float64, b*h*w)
	tg := make([]bool, len(x))
	valid := make([]bool, len(x))
	var xs []float64
	var ts []bool
	for i := range x {
		x[i] = 1.5 * rng.NormFloat64()
		tg[i] = rng.Float64() < 0.3
		valid[i] = rng.Float64() < 0.5
		if valid[i] {
			xs, ts = append(xs, x[i]), append(ts, tg[i])
		}
	}
	for _, m := range []string{"sigmoid", "clamp"} {
		n := build(t, "IoULoss", map[string]any{"normalize_method": m, "weight": 0.7, "smooth": 1e-3})
		s := torch.NewScope()
		xt := s.FromFloat64(x, b, h, w, 1)
		if err := xt.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		out, err := n.Forward(&nodes.Context{Stage: nodes.StageTrain, Scope: s},
			map[string]any{"predictions": xt, "targets": s.FromBool(tg, b, h, w, 1), "valid": s.FromBool(valid, b, h, w, 1)})
		if err != nil {
			t.Fatal(err)
		}
		l := out["loss"].(*torch.Tensor)
		got, _ := l.Item()
		if want := goIoU(xs, ts, m, 1e-3, 0.7); math.Abs(got-want) > 1e-12 {
			t.Fatalf("%s: loss %.15g, want %.15g (IoU of the valid pixels)", m, got, want)
		}
		s.Backward(l, nil, false)
		g, err := s.Grad(xt).Float64s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range g {
			if !valid[i] && g[i] != 0 {
				t.Fatalf("%s: gradient %g reaches pixel %d outside the mask", m, g[i], i)
			}
		}
		s.Close()
	}
}
