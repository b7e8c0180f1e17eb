package metriccore

import (
	"math/rand/v2"
	"testing"
)

func benchAdd(b *testing.B, opt Options, withDecisions bool) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(1, 2))
	scores := make([]float32, n)
	targets := make([]bool, n)
	decisions := make([]bool, n)
	for i := range scores {
		scores[i] = r.Float32()
		targets[i] = r.UintN(100) == 0
		decisions[i] = scores[i] > 0.9
	}
	if !withDecisions {
		decisions = nil
	}
	a, err := NewAccumulatorOptions(opt)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n * 4) // score bytes per op
	for b.Loop() {
		if err := a.Add(scores, targets, decisions); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpixels/s")
}

func BenchmarkAddClamp(b *testing.B)            { benchAdd(b, Options{}, true) }
func BenchmarkAddClampNoDecisions(b *testing.B) { benchAdd(b, Options{}, false) }
func BenchmarkAddRange(b *testing.B)            { benchAdd(b, Options{Mapping: MapRange, Lo: -1, Hi: 2}, true) }
func BenchmarkAddSigmoid(b *testing.B)          { benchAdd(b, Options{Mapping: MapSigmoid}, true) }

func BenchmarkResult(b *testing.B) {
	a := NewAccumulator(DefaultBins)
	r := rand.New(rand.NewPCG(3, 4))
	s := make([]float32, 10000)
	tg := make([]bool, len(s))
	for i := range s {
		s[i], tg[i] = r.Float32(), r.UintN(10) == 0
	}
	if err := a.Add(s, tg, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = a.Result()
	}
}
