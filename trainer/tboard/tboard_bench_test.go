package tboard

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkAddScalar(b *testing.B) {
	w, err := NewWriter(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var step int64
	for b.Loop() {
		if err := w.AddScalar("train/loss", 0.25, step); err != nil {
			b.Fatal(err)
		}
		step++
	}
}

func BenchmarkAddHistogram10k(b *testing.B) {
	w, err := NewWriter(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := rand.New(rand.NewPCG(1, 1))
	vals := make([]float64, 10000)
	for i := range vals {
		vals[i] = r.NormFloat64()
	}
	for b.Loop() {
		if err := w.AddHistogram("w", vals, 0); err != nil {
			b.Fatal(err)
		}
	}
}
