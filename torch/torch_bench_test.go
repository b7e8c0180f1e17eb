package torch

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// benchResetEvery is how many ops share a scope before Reset frees their outputs.
const benchResetEvery = 256

// BenchmarkAddOverhead compares the Go → C → LibTorch path for a 16-float add with the
// same loop run entirely in C++ (reported as cxx-ns/op and ratio). On a shared machine both
// drift by 2× over seconds, so the ratio comes from interleaved chunks: 2 000 Go ops, then
// 2 000 C++ ops, repeated, taking the fastest chunk of each (go-min-ns/op, cxx-ns/op).
func BenchmarkAddOverhead(b *testing.B) {
	// add keeps 256 results alive in a scope before freeing them (a step's lifetime);
	// add_free frees each result at once, the lifetime of the C++ loop's temporary.
	for _, mode := range []string{"add", "add_free", "add_out"} {
		useOut := mode == "add_out"
		b.Run(mode, func(b *testing.B) {
			s := NewScope()
			defer s.Close()
			x := s.FromFloat32(make([]float32, 16), 16)
			y := s.FromFloat32(make([]float32, 16), 16)
			out := s.Empty([]int64{16}, Float32, CPU)
			s.Keep(x, y, out)
			defer x.Free()
			defer y.Free()
			defer out.Free()
			n := 0
			step := func() {
				switch mode {
				case "add_out":
					s.AddOut(out, x, y)
				case "add_free":
					s.Add(x, y).Free()
				default:
					s.Add(x, y)
				}
				if n++; n == benchResetEvery {
					s.Reset()
					n = 0
				}
			}
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.StopTimer()
			if err := s.Err(); err != nil {
				b.Fatal(err)
			}
			const chunk = 2000
			goMin, cxxMin := math.Inf(1), math.Inf(1)
			for r := 0; r < 25; r++ {
				t0 := time.Now()
				for i := 0; i < chunk; i++ {
					step()
				}
				goMin = math.Min(goMin, float64(time.Since(t0).Nanoseconds())/chunk)
				cxx, err := BenchAddLoopCxx(x, y, chunk, useOut)
				if err != nil {
					b.Fatal(err)
				}
				cxxMin = math.Min(cxxMin, float64(cxx.Nanoseconds())/chunk)
			}
			b.ReportMetric(goMin, "go-min-ns/op")
			b.ReportMetric(cxxMin, "cxx-ns/op")
			b.ReportMetric(goMin/cxxMin, "ratio")
		})
	}
}

func withAllocator(b *testing.B, fn func(b *testing.B)) {
	for _, cache := range []bool{false, true} {
		b.Run(fmt.Sprintf("cache=%v", cache), func(b *testing.B) {
			if err := SetCachingAllocator(cache); err != nil {
				b.Fatal(err)
			}
			defer SetCachingAllocator(false)
			fn(b)
		})
	}
}

// BenchmarkGumbelSoftmax compares the fused shim with the same computation composed of
// separate ops.
func BenchmarkGumbelSoftmax(b *testing.B) {
	for _, shape := range [][]int64{{3, 61}, {64, 4096}} {
		for _, fused := range []bool{true, false} {
			name := fmt.Sprintf("%dx%d/fused=%v", shape[0], shape[1], fused)
			b.Run(name, func(b *testing.B) {
				withAllocator(b, func(b *testing.B) {
					s := NewScope()
					defer s.Close()
					g, _ := NewGenerator(1, CPU)
					defer g.Free()
					l := s.Randn(shape, Float32, CPU, g)
					_ = l.SetRequiresGrad(true)
					s.Keep(l)
					defer l.Free()
					const eps, tau = 1e-6, 0.5
					for b.Loop() {
						var y *Tensor
						if fused {
							y = s.GumbelSoftmax(l, tau, eps, false, g)
						} else {
							u := s.Rand(shape, Float32, CPU, g)
							gn := s.Neg(s.Log(s.AddScalar(s.Neg(s.Log(s.AddScalar(u, eps))), eps)))
							y = s.Softmax(s.DivScalar(s.Add(l, gn), tau), -1)
						}
						s.Backward(s.Sum(y, false), nil, false)
						s.Reset()
					}
					if err := s.Err(); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkMinMax compares the fused min-max normalisation with composed amin/amax/sub/div
// (forward only, as in inference).
func BenchmarkMinMax(b *testing.B) {
	for _, perImage := range []bool{true, false} {
		for _, fused := range []bool{true, false} {
			b.Run(fmt.Sprintf("perImage=%v/fused=%v", perImage, fused), func(b *testing.B) {
				withAllocator(b, func(b *testing.B) {
					s := NewScope()
					defer s.Close()
					g, _ := NewGenerator(2, CPU)
					defer g.Free()
					x := s.Rand([]int64{4, 256, 256, 61}, Float32, CPU, g)
					s.Keep(x)
					defer x.Free()
					s.SetGradEnabled(false)
					for b.Loop() {
						if fused {
							s.MinMaxNormalize(x, MinMaxOptions{PerImage: perImage, Eps: 1e-6})
						} else {
							var lo, hi *Tensor
							if perImage {
								lo, hi = s.Amin(x, true, 1, 2), s.Amax(x, true, 1, 2)
							} else {
								lo, hi = s.Amin(x, false), s.Amax(x, false)
							}
							s.Div(s.Sub(x, lo), s.ClampMin(s.Sub(hi, lo), 1e-6))
						}
						s.Reset()
						s.SetGradEnabled(false)
					}
					if err := s.Err(); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkLargeAlloc shows the page-fault cost of fresh 64 MB tensors (x - 0.5 on 16M
// floats) with and without the caching CPU allocator.
func BenchmarkLargeAlloc(b *testing.B) {
	withAllocator(b, func(b *testing.B) {
		s := NewScope()
		defer s.Close()
		x := s.Ones([]int64{16 << 20}, Float32, CPU)
		s.Keep(x)
		defer x.Free()
		for b.Loop() {
			s.SubScalar(x, 0.5)
			s.Reset()
		}
		if err := s.Err(); err != nil {
			b.Fatal(err)
		}
	})
}
