package metriccore

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWireMergeEqualsPooled: two accumulators (two ranks' shards) sent through
// MarshalBinary/UnmarshalBinary and merged give the counts of one accumulator over all
// pixels, and an AUROC equal to the float64 sort-based ExactAUROC (1e-12).
func TestWireMergeEqualsPooled(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 2))
	n := 5000
	scores := make([]float32, n)
	targets := make([]bool, n)
	s64 := make([]float64, n)
	for i := range scores {
		targets[i] = r.Float64() < 0.1
		scores[i] = float32(r.Float64()*0.8 + 0.2*boolF(targets[i]))
		s64[i] = float64(scores[i])
	}
	opt := Options{Mapping: MapAdaptive, ExactLimit: 1 << 20}
	all, _ := NewAccumulatorOptions(opt)
	if err := all.Add(scores, targets, nil); err != nil {
		t.Fatal(err)
	}
	cut := r.IntN(n)
	merged, _ := NewAccumulatorOptions(opt)
	for _, part := range [][2]int{{0, cut}, {cut, n}} {
		a, _ := NewAccumulatorOptions(opt)
		if err := a.Add(scores[part[0]:part[1]], targets[part[0]:part[1]], nil); err != nil {
			t.Fatal(err)
		}
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		back := new(Accumulator)
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := merged.Merge(back); err != nil {
			t.Fatal(err)
		}
	}
	got, want := merged.Result(), all.Result()
	if got.TP != want.TP || got.FP != want.FP || got.FN != want.FN || got.TN != want.TN || !got.Exact {
		t.Fatalf("seed %d: merged %+v, pooled %+v", seed, got, want)
	}
	if ref := ExactAUROC(s64, targets); math.Abs(got.AUROC-ref) > 1e-12 || math.Abs(got.AveragePrecision-want.AveragePrecision) > 1e-12 {
		t.Fatalf("seed %d: AUROC %v (float64 reference %v), AP %v vs %v", seed, got.AUROC, ref, got.AveragePrecision, want.AveragePrecision)
	}
	if err := new(Accumulator).UnmarshalBinary([]byte("junk")); err == nil {
		t.Fatal("junk decoded")
	}
}

func boolF(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
