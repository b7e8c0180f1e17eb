package reduce

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// TestGradientFlowThroughFrozenModule feeds each learnable reducer into a frozen
// TorchScript model (the AdaCLIP situation) and checks that a loss on the model's output
// reaches the reducer's parameters but not the model's.
func TestGradientFlowThroughFrozenModule(t *testing.T) {
	const bsz, h, w, c = 2, 6, 6, 8
	rng := rand.New(rand.NewPCG(12, 13))
	x := make([]float32, bsz*h*w*c)
	for i := range x {
		x[i] = rng.Float32()
	}
	for _, tc := range []struct {
		typ    string
		params map[string]any
	}{
		{"LearnableChannelMixer", map[string]any{"input_channels": c, "output_channels": 3, "reduction_scheme": []any{c, 5, 3}}},
		{"ConcreteBandSelector", map[string]any{"input_channels": c, "output_channels": 3}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			m, err := torch.NewModule("frozen")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			s := torch.NewScope()
			defer s.Close()
			if err := m.RegisterParameter("w", s.Randn([]int64{3, 3, 3, 3}, torch.Float32, torch.CPU, nil)); err != nil {
				t.Fatal(err)
			}
			if err := m.RegisterParameter("b", s.Randn([]int64{3}, torch.Float32, torch.CPU, nil)); err != nil {
				t.Fatal(err)
			}
			if err := m.Define(`
def forward(self, x):
    y = torch.conv2d(x.permute(0, 3, 1, 2), self.w, self.b, 1, 1)
    s = torch.sigmoid(y)
    return s.mean(1, keepdim=True).permute(0, 2, 3, 1), s.amax()
`); err != nil {
				t.Fatal(err)
			}
			if err := m.SetRequiresGrad(false); err != nil {
				t.Fatal(err)
			}
			n := mustNode(t, tc.typ, tc.params)
			ctx := newCtx(nodes.StageTrain)
			defer ctx.Scope.Close()
			cs := ctx.Scope
			out, err := n.Forward(ctx, map[string]any{"data": cs.FromFloat32(x, bsz, h, w, c)})
			if err != nil {
				t.Fatal(err)
			}
			res := cs.Forward(m, out["rgb"].(*torch.Tensor))
			if err := cs.Err(); err != nil || len(res) != 2 {
				t.Fatalf("module forward: %v (%d outputs)", err, len(res))
			}
			loss := cs.Mean(cs.Square(cs.SubScalar(res[0], 0.3)), false)
			cs.Backward(loss, nil, false)
			for _, p := range n.(nodes.Trainable).Parameters() {
				g := cs.Grad(p.Tensor)
				if g == nil {
					t.Fatalf("%s: no gradient", p.Name)
				}
				norm := 0.0
				for _, v := range values(t, g) {
					norm += v * v
				}
				// The last bias of the mixer cancels in the per-image min-max, so only
				// weights must carry a non-zero gradient.
				if !strings.HasSuffix(p.Name, "bias") && !(math.Sqrt(norm) > 1e-8) {
					t.Fatalf("%s: zero gradient", p.Name)
				}
			}
			mp, err := m.Parameters()
			if err != nil {
				t.Fatal(err)
			}
			for name, p := range mp {
				if p.RequiresGrad() || cs.Grad(p) != nil {
					t.Fatalf("frozen module parameter %s got a gradient", name)
				}
				p.Free()
			}
			if err := cs.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
