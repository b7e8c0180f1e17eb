package detect

import (
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

const benchB, benchH, benchW = 4, 256, 256

func benchSetup(b *testing.B) (*AdaCLIP, []float32) {
	cachingAllocator(b)
	d := newDetector(b, nil)
	return d, randomImages(1, benchB, benchH, benchW)
}

// BenchmarkDetector runs the built-in detector node on [4,256,256,3] (S = 224).
func BenchmarkDetector(b *testing.B) {
	d, data := benchSetup(b)
	s := torch.NewScope()
	defer s.Close()
	ctx := &nodes.Context{Scope: s}
	for b.Loop() {
		x := s.FromFloat32(data, benchB, benchH, benchW, 3)
		if _, err := d.Forward(ctx, map[string]any{"rgb_image": x}); err != nil {
			b.Fatal(err)
		}
		s.Reset()
	}
	b.ReportMetric(float64(benchB*b.N)/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkDetectorPreprocess(b *testing.B) {
	d, data := benchSetup(b)
	s := torch.NewScope()
	defer s.Close()
	for b.Loop() {
		s.NoGrad(func() {
			if _, err := d.Preprocess(s, s.FromFloat32(data, benchB, benchH, benchW, 3)); err != nil {
				b.Fatal(err)
			}
		})
		s.Reset()
	}
}

func BenchmarkDetectorModule(b *testing.B) {
	d, data := benchSetup(b)
	s := torch.NewScope()
	defer s.Close()
	var x *torch.Tensor
	s.NoGrad(func() { x, _ = d.Preprocess(s, s.FromFloat32(data, benchB, benchH, benchW, 3)) })
	s.Keep(x)
	defer x.Free()
	for b.Loop() {
		s.NoGrad(func() {
			if _, _, err := d.RunModule(s, x); err != nil {
				b.Fatal(err)
			}
		})
		s.Reset()
	}
}

func BenchmarkDetectorPostprocess(b *testing.B) {
	d, _ := benchSetup(b)
	s := torch.NewScope()
	defer s.Close()
	pix := s.Rand([]int64{benchB, 224, 224}, torch.Float32, torch.CPU, nil)
	s.Keep(pix)
	defer pix.Free()
	for b.Loop() {
		s.NoGrad(func() {
			if _, err := d.Postprocess(s, pix, benchH, benchW); err != nil {
				b.Fatal(err)
			}
		})
		s.Reset()
	}
}

// BenchmarkDetectorGrad is a training step's detector part: forward with gradients on and
// backward to the input.
func BenchmarkDetectorGrad(b *testing.B) {
	cachingAllocator(b)
	d := newDetector(b, map[string]any{"enable_gradients": true})
	data := randomImages(1, benchB, benchH, benchW)
	s := torch.NewScope()
	defer s.Close()
	for b.Loop() {
		x := s.FromFloat32(data, benchB, benchH, benchW, 3)
		x.SetRequiresGrad(true)
		out, err := d.Forward(&nodes.Context{Scope: s}, map[string]any{"rgb_image": x})
		if err != nil {
			b.Fatal(err)
		}
		s.Backward(s.Sum(out["scores"].(*torch.Tensor), false), nil, false)
		if err := s.Err(); err != nil {
			b.Fatal(err)
		}
		s.Reset()
	}
}

func BenchmarkRXABUSize(b *testing.B) {
	data := make([]float32, 100*100*205)
	for i := range data {
		data[i] = float32(i%977) * 0.001
	}
	for b.Loop() {
		if _, err := RX(data, 100, 100, 205); err != nil {
			b.Fatal(err)
		}
	}
}

// cachingAllocator turns on the caching CPU allocator the program uses (fresh large
// allocations cost page faults here) and turns it off when the benchmark ends.
func cachingAllocator(b *testing.B) {
	if err := torch.SetCachingAllocator(true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { torch.SetCachingAllocator(false) })
}
