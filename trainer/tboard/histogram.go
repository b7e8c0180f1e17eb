package tboard

import (
	"fmt"
	"math"
	"sort"
	"sync"
)

// Histogram mirrors TensorBoard's HistogramProto. Bucket i counts the values v with
// BucketLimit[i-1] < v <= BucketLimit[i]; bucket 0 starts at -math.MaxFloat64, so every finite
// value falls in some bucket as long as the last limit is >= Max.
type Histogram struct {
	Min, Max, Num, Sum, SumSquares float64
	BucketLimit                    []float64
	Bucket                         []float64
}

var (
	defaultLimitsOnce sync.Once
	defaultLimits     []float64
)

// DefaultBucketLimits returns TensorFlow's standard histogram bucket limits: ±1e-12 growing by
// 10% up to 1e20 on both sides of 0, closed by ±DBL_MAX. Values span 60 orders of magnitude
// without a per-histogram range, which is why TensorBoard's own writers use them. The returned
// slice is shared; do not modify it.
func DefaultBucketLimits() []float64 {
	defaultLimitsOnce.Do(func() {
		var pos []float64
		for v := 1e-12; v < 1e20; v *= 1.1 {
			pos = append(pos, v)
		}
		pos = append(pos, math.MaxFloat64)
		lim := make([]float64, 0, 2*len(pos)+1)
		for i := len(pos) - 1; i >= 0; i-- {
			lim = append(lim, -pos[i])
		}
		lim = append(lim, 0)
		lim = append(lim, pos...)
		defaultLimits = lim
	})
	return defaultLimits
}

// NewHistogram bins values into the given ascending bucket limits (whose last element must be
// >= every value) and, like TensorFlow's EncodeToProto, collapses each run of empty buckets into
// one empty bucket ending at the run's last limit, which keeps the proto small.
func NewHistogram(values []float64, limits []float64) (*Histogram, error) {
	if len(values) == 0 {
		return nil, fmt.Errorf("tboard: histogram of zero values")
	}
	if len(limits) == 0 {
		return nil, fmt.Errorf("tboard: histogram needs at least one bucket limit")
	}
	for i := 1; i < len(limits); i++ {
		if !(limits[i] > limits[i-1]) {
			return nil, fmt.Errorf("tboard: histogram bucket limits not strictly ascending at index %d (%g after %g)", i, limits[i], limits[i-1])
		}
	}
	h := &Histogram{Min: math.Inf(1), Max: math.Inf(-1)}
	counts := make([]float64, len(limits))
	last := limits[len(limits)-1]
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("tboard: histogram value %d is %v; only finite values can be binned", i, v)
		}
		if v > last {
			return nil, fmt.Errorf("tboard: histogram value %d (%g) exceeds the last bucket limit %g", i, v, last)
		}
		h.Min = math.Min(h.Min, v)
		h.Max = math.Max(h.Max, v)
		h.Sum += v
		h.SumSquares += v * v
		counts[sort.SearchFloat64s(limits, v)]++
	}
	h.Num = float64(len(values))
	for i := 0; i < len(counts); {
		end, c := limits[i], counts[i]
		i++
		if c == 0 {
			for i < len(counts) && counts[i] == 0 {
				end = limits[i]
				i++
			}
		}
		h.BucketLimit = append(h.BucketLimit, end)
		h.Bucket = append(h.Bucket, c)
	}
	return h, nil
}

// LinearBucketLimits returns bins equal-width limits covering [min(values), max(values)]: the
// smallest value lands in bucket 0 (whose lower edge is -DBL_MAX) and the largest in the last.
// It suits data with a known narrow range, where the exponential default buckets are too coarse.
func LinearBucketLimits(values []float64, bins int) ([]float64, error) {
	if bins < 1 {
		return nil, fmt.Errorf("tboard: linear histogram needs bins >= 1, got %d", bins)
	}
	if len(values) == 0 {
		return nil, fmt.Errorf("tboard: histogram of zero values")
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("tboard: histogram value %d is %v; only finite values can be binned", i, v)
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if lo == hi {
		return []float64{hi}, nil
	}
	width := (hi - lo) / float64(bins)
	lim := make([]float64, 0, bins)
	for i := 1; i < bins; i++ {
		l := lo + float64(i)*width
		if len(lim) > 0 && !(l > lim[len(lim)-1]) {
			continue // range too narrow for float64 to separate every edge
		}
		lim = append(lim, l)
	}
	if len(lim) > 0 && lim[len(lim)-1] >= hi {
		lim = lim[:len(lim)-1]
	}
	return append(lim, hi), nil
}
