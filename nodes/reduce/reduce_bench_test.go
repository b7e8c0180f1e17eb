package reduce

import (
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

const benchB, benchH, benchW, benchC = 4, 256, 256, 61

func benchCube(b *testing.B) []float32 {
	rng := rand.New(rand.NewPCG(1, 1))
	v := make([]float32, benchB*benchH*benchW*benchC)
	for i := range v {
		v[i] = rng.Float32()
	}
	b.Logf("torch threads: %d", torch.NumThreads())
	return v
}

func benchNode(b *testing.B, typ string, params map[string]any, backward bool, stage nodes.Stage) {
	v := benchCube(b)
	node, err := nodes.Builtins.New(typ, "n", params)
	if err != nil {
		b.Fatal(err)
	}
	defer node.(nodes.Closer).Close()
	keep := torch.NewScope()
	defer keep.Close()
	x := keep.FromFloat32(v, benchB, benchH, benchW, benchC)
	if f, ok := node.(nodes.Fitter); ok && f.RequiresFit() {
		_ = f.FitReset()
		if err := f.FitBatch(&nodes.Context{Scope: keep}, map[string]any{"data": x}); err != nil {
			b.Fatal(err)
		}
		if err := f.FitFinish(); err != nil {
			b.Fatal(err)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	ctx := &nodes.Context{Stage: stage, Scope: s}
	b.SetBytes(int64(len(v) * 4))
	for b.Loop() {
		s.Reset()
		if !backward {
			s.SetGradEnabled(false)
		}
		out, err := node.Forward(ctx, map[string]any{"data": x})
		if err != nil {
			b.Fatal(err)
		}
		if backward {
			rgb := out["rgb"].(*torch.Tensor)
			s.Backward(s.Mean(rgb, false), nil, false)
			for _, p := range node.(nodes.Trainable).Parameters() {
				_ = p.Tensor.ZeroGrad(true)
			}
		}
		if err := s.Err(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPCAForward(b *testing.B) {
	benchNode(b, "TrainablePCA", map[string]any{"n_components": 3}, false, nodes.StageVal)
}

func BenchmarkMixerForward(b *testing.B) {
	benchNode(b, "LearnableChannelMixer", map[string]any{"input_channels": benchC, "output_channels": 3, "reduction_scheme": []any{61, 16, 8, 3}, "leaky_relu_negative_slope": 0.1}, false, nodes.StageVal)
}

func BenchmarkMixerForwardBackward(b *testing.B) {
	benchNode(b, "LearnableChannelMixer", map[string]any{"input_channels": benchC, "output_channels": 3, "reduction_scheme": []any{61, 16, 8, 3}, "leaky_relu_negative_slope": 0.1}, true, nodes.StageTrain)
}

func BenchmarkSelectorForward(b *testing.B) {
	benchNode(b, "ConcreteBandSelector", map[string]any{"input_channels": benchC}, false, nodes.StageVal)
}

func BenchmarkSelectorForwardBackward(b *testing.B) {
	benchNode(b, "ConcreteBandSelector", map[string]any{"input_channels": benchC}, true, nodes.StageTrain)
}

// BenchmarkPCAFit reports the fit's throughput over the cube's bytes (MB/s).
func BenchmarkPCAFit(b *testing.B) {
	v := benchCube(b)
	node, _ := nodes.Builtins.New("TrainablePCA", "n", map[string]any{"n_components": 3})
	defer node.(nodes.Closer).Close()
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(v, benchB, benchH, benchW, benchC)
	f := node.(nodes.Fitter)
	b.SetBytes(int64(len(v) * 4))
	for b.Loop() {
		_ = f.FitReset()
		if err := f.FitBatch(&nodes.Context{Scope: s}, map[string]any{"data": x}); err != nil {
			b.Fatal(err)
		}
		if err := f.FitFinish(); err != nil {
			b.Fatal(err)
		}
	}
}
