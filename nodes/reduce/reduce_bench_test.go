package reduce

import (
	"math/rand/v2"
	"os"
	"strconv"
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

// BenchmarkMixerForms times the DRCNN forward (61→16→8→3, LeakyReLU, no output
// normalisation) on 4×256×256×61 in the forms tried for issue 18, one sub-benchmark each,
// interleaved with -count: conv2d (LibTorch's choice: im2col + BLAS at one thread),
// onednn (Scope.Conv1x1 on the channels-last view), gemm (Linear on the [N,61] view), and
// fused (Scope.MixChain, all layers in one pass; what inference uses). Run at one thread:
//
//	SPECTRACLIP_BENCH_THREADS=1 go test -run '^$' -bench MixerForms -count 2 ./nodes/reduce/
func BenchmarkMixerForms(b *testing.B) {
	if th, err := strconv.Atoi(os.Getenv("SPECTRACLIP_BENCH_THREADS")); err == nil && th > 0 {
		if err := torch.SetNumThreads(th); err != nil {
			b.Fatal(err)
		}
	}
	v := benchCube(b)
	keep := torch.NewScope()
	defer keep.Close()
	x := keep.FromFloat32(v, benchB, benchH, benchW, benchC)
	scheme := []int64{61, 16, 8, 3}
	rng := rand.New(rand.NewPCG(3, 4))
	var ws, bs []*torch.Tensor
	for l := 0; l+1 < len(scheme); l++ {
		wv := make([]float32, scheme[l]*scheme[l+1])
		for i := range wv {
			wv[i] = float32(rng.NormFloat64() * 0.2)
		}
		ws = append(ws, keep.FromFloat32(wv, scheme[l+1], scheme[l], 1, 1))
		bs = append(bs, keep.Zeros([]int64{scheme[l+1]}, torch.Float32, torch.CPU))
	}
	forms := []struct {
		name string
		run  func(s *torch.Scope) *torch.Tensor
	}{
		{"conv2d", func(s *torch.Scope) *torch.Tensor {
			y := s.Permute(x, 0, 3, 1, 2)
			for i := range ws {
				y = s.Conv2d(y, ws[i], bs[i], torch.ConvOptions{})
				if i < len(ws)-1 {
					y = s.LeakyRelu_(y, 0.1)
				}
			}
			return s.Permute(y, 0, 2, 3, 1)
		}},
		{"onednn", func(s *torch.Scope) *torch.Tensor {
			y := s.Permute(x, 0, 3, 1, 2)
			for i := range ws {
				y = s.Conv1x1(y, ws[i], bs[i])
				if i < len(ws)-1 {
					y = s.LeakyRelu_(y, 0.1)
				}
			}
			return s.Permute(y, 0, 2, 3, 1)
		}},
		{"gemm", func(s *torch.Scope) *torch.Tensor {
			y := s.Reshape(x, -1, benchC)
			for i := range ws {
				sh := ws[i].Shape()
				y = s.Linear(y, s.Reshape(ws[i], sh[0], sh[1]), bs[i])
				if i < len(ws)-1 {
					y = s.LeakyRelu_(y, 0.1)
				}
			}
			return s.Reshape(y, benchB, benchH, benchW, 3)
		}},
		{"fused", func(s *torch.Scope) *torch.Tensor {
			return s.MixChain(x, ws, bs, 0.1, true, false)
		}},
	}
	for _, f := range forms {
		b.Run(f.name, func(b *testing.B) {
			s := torch.NewScope()
			defer s.Close()
			b.SetBytes(int64(len(v) * 4))
			for b.Loop() {
				s.Reset()
				s.SetGradEnabled(false)
				f.run(s)
				if err := s.Err(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*benchB)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
