package trainer

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/run"

	"github.com/spectraclip/spectraclip/config"

	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/torch"
)

// Folding the fitted global min-max normaliser into the reducer (the pipeline's affine
// fusion) gives the same reducer output, detector scores and reducer gradients as running
// the normaliser on its own, for every variant, on fresh random cubes.
func TestAffineFusionMatchesUnfused(t *testing.T) {
	reducer := map[string]string{"pca": "pca.projected", "drcnn": "channel_mixer.rgb", "concrete": "concrete_selector.rgb"}
	for _, v := range config.VariantNames {
		t.Run(v, func(t *testing.T) {
			cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: v, Overrides: []string{"+pipeline.detector.image_size=32"}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := run.BuildPipeline(cfg, nodes.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			rng := rand.New(rand.NewPCG(uint64(len(v)), 99))
			B, H, W, C := 2, 24, 20, 61
			cube := make([]float32, B*H*W*C)
			for i := range cube {
				cube[i] = 0.2 + 3*rng.Float32() // not in [0,1]: the normaliser matters
			}
			ids := make([]int32, B*H*W)
			for i := range ids {
				ids[i] = int32(rng.IntN(5))
			}
			s := torch.NewScope()
			defer s.Close()
			batch := map[string]any{datanode.KeyCube: torch.FromSlice(s, torch.CPU, cube, int64(B), int64(H), int64(W), int64(C)),
				datanode.KeyClassIDs: ids, datanode.KeyFrameIDs: []int{0, 1}, datanode.KeyShape: [4]int{B, H, W, C}}
			for _, n := range p.Nodes() {
				if f, ok := n.(nodes.Fitter); ok && f.RequiresFit() {
					ctx := &nodes.Context{Stage: nodes.StageInference, Scope: s}
					in, err := p.FitInputs(ctx, batch, n.Name())
					if err != nil {
						t.Fatal(err)
					}
					if err := f.FitReset(); err != nil {
						t.Fatal(err)
					}
					if err := f.FitBatch(ctx, in); err != nil {
						t.Fatal(err)
					}
					if err := f.FitFinish(); err != nil {
						t.Fatal(err)
					}
				}
			}
			stage := nodes.StageVal
			if len(cfg.LossNodes) > 0 {
				stage = nodes.StageTrain
			}
			// the Concrete selector draws Gumbel noise in training: replay the same draws
			type genState interface {
				GeneratorState() (*torch.Tensor, error)
				SetGeneratorState(*torch.Tensor) error
			}
			var gen genState
			var g0 *torch.Tensor
			if n, ok := p.Node("concrete_selector"); ok {
				gen = nodes.UnwrapNode(n).(genState)
				if g0, err = gen.GeneratorState(); err != nil {
					t.Fatal(err)
				}
				defer g0.Free()
			}
			run := func(noFusion bool) (red, scores []float32, grads map[string][]float32, hasNorm bool) {
				ctx := &nodes.Context{Stage: stage, Scope: s, Epoch: 3, MaxEpochs: 8}
				p.SetTraining(stage == nodes.StageTrain)
				if gen != nil {
					if err := gen.SetGeneratorState(g0); err != nil {
						t.Fatal(err)
					}
				}
				for _, pr := range p.Parameters() {
					_ = pr.Tensor.ZeroGrad(true)
				}
				out, err := p.Run(ctx, batch, nodes.RunOptions{NoFusion: noFusion})
				if err != nil {
					t.Fatal(err)
				}
				rn, rp := config.PortRef(reducer[v])
				rt, err := out.Tensor(rn, rp)
				if err != nil {
					t.Fatal(err)
				}
				red, _ = rt.Float32s()
				st, _ := out.Tensor("detector", "scores")
				scores, _ = st.Float32s()
				_, hasNorm = out.Get("normalizer", "normalized")
				grads = map[string][]float32{}
				r := &Run{Evaluator: Evaluator{Cfg: cfg}}
				if loss, ok := out.SumLosses(s, r.Cfg.LossNodes); ok {
					s.Backward(loss, nil, false)
					for _, pr := range p.Parameters() {
						if g := s.Grad(pr.Tensor); g != nil {
							grads[pr.Name], _ = g.Float32s()
						}
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				return red, scores, grads, hasNorm
			}
			r1, s1, g1, norm1 := run(true)
			r2, s2, g2, norm2 := run(false)
			if !norm1 || norm2 {
				t.Fatalf("normaliser output present unfused=%v fused=%v: fusion did not happen as expected", norm1, norm2)
			}
			closeTo(t, "reducer output", r1, r2, 2e-4, 0)
			closeTo(t, "detector scores", s1, s2, 2e-4, 0)
			if len(cfg.LossNodes) > 0 && len(g1) == 0 {
				t.Fatal("no gradients reached the reducer")
			}
			// gradients are compared relative to the largest one of the run: some (the last
			// bias, which the per-image min-max cancels) are zero up to rounding
			gscale := 0.0
			for _, a := range g1 {
				for _, v := range a {
					gscale = math.Max(gscale, math.Abs(float64(v)))
				}
			}
			for k, a := range g1 {
				closeTo(t, "gradient "+k, a, g2[k], 2e-3, gscale)
			}
		})
	}
}

func closeTo(t *testing.T, what string, a, b []float32, rel, scale float64) {
	t.Helper()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for _, v := range a {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range a {
		if d := math.Abs(float64(a[i] - b[i])); d > rel*math.Max(scale, 1e-6) {
			t.Fatalf("%s differs at %d: %g vs %g (scale %g)", what, i, a[i], b[i], scale)
		}
	}
}
