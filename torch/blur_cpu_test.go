package torch

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The direct float32 CPU blur (zero padding) against the float64 convolution path, forward
// and backward, on fresh random maps of odd sizes and with radii wider than the map.
func TestGaussianBlurFloat32Direct(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, c := range []struct {
		n, h, w int
		sigma   float64
		radius  int64
	}{{3, 17, 23, 2, 0}, {1, 5, 4, 4, 0}, {2, 30, 9, 0.7, 3}} {
		total := c.n * c.h * c.w
		x := make([]float64, total)
		cw := make([]float64, total)
		for i := range x {
			x[i] = rng.Float64()
			cw[i] = rng.NormFloat64()
		}
		run := func(dt DType) (y, g []float64) {
			s := NewScope()
			defer s.Close()
			tx := s.ToDType(s.FromFloat64(x, int64(c.n), int64(c.h), int64(c.w)), dt)
			tx = s.Detach(tx)
			if err := tx.SetRequiresGrad(true); err != nil {
				t.Fatal(err)
			}
			out := s.GaussianBlur(tx, c.sigma, c.radius, BlurZero)
			w := s.ToDType(s.FromFloat64(cw, int64(c.n), int64(c.h), int64(c.w)), dt)
			s.Backward(s.Sum(s.Mul(out, w), false), nil, false)
			gr := s.Grad(tx)
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			y, _ = Values[float64](s.ToDType(out, Float64))
			g, _ = Values[float64](s.ToDType(gr, Float64))
			return y, g
		}
		y32, g32 := run(Float32)
		y64, g64 := run(Float64)
		for i := range y64 {
			if math.Abs(y32[i]-y64[i]) > 1e-5 || math.Abs(g32[i]-g64[i]) > 1e-5 {
				t.Fatalf("%+v at %d: float32 %g/%g, float64 %g/%g", c, i, y32[i], g32[i], y64[i], g64[i])
			}
		}
	}
}
