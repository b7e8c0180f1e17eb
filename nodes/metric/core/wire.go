package metriccore

import (
	"bytes"
	"encoding/gob"
	"fmt"
)

// wireAccumulator is an Accumulator's state in exported fields, for encoding/gob.
type wireAccumulator struct {
	Opt            Options
	Scale          float64
	Counts         []int64
	TP, FP, FN, TN int64
	Scores         []float32
	Pos            []bool
	Binned         bool
	Lo, W          float64
	HaveRng        bool
	Inf            [4]int64
}

// MarshalBinary encodes everything the accumulator pooled, so that the accumulators of
// several processes (the ranks of a data-parallel run) can be merged in one of them.
func (a *Accumulator) MarshalBinary() ([]byte, error) {
	w := wireAccumulator{Opt: a.opt, Scale: a.scale, Counts: a.counts, TP: a.tp, FP: a.fp, FN: a.fn, TN: a.tn,
		Binned: a.binned, Lo: a.lo, W: a.w, HaveRng: a.haveRng, Inf: a.inf}
	w.Scores = make([]float32, len(a.exact))
	w.Pos = make([]bool, len(a.exact))
	for i, e := range a.exact {
		w.Scores[i], w.Pos[i] = e.s, e.pos
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&w); err != nil {
		return nil, fmt.Errorf("metriccore: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalBinary restores an accumulator written by MarshalBinary.
func (a *Accumulator) UnmarshalBinary(b []byte) error {
	var w wireAccumulator
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return fmt.Errorf("metriccore: decode: %w", err)
	}
	if len(w.Scores) != len(w.Pos) || len(w.Counts) != 2*w.Opt.Bins {
		return fmt.Errorf("metriccore: decode: inconsistent accumulator (%d scores, %d labels, %d counts for %d bins)", len(w.Scores), len(w.Pos), len(w.Counts), w.Opt.Bins)
	}
	*a = Accumulator{opt: w.Opt, scale: w.Scale, counts: w.Counts, tp: w.TP, fp: w.FP, fn: w.FN, tn: w.TN,
		binned: w.Binned, lo: w.Lo, w: w.W, haveRng: w.HaveRng, inf: w.Inf}
	a.exact = make([]scored, len(w.Scores))
	for i := range w.Scores {
		a.exact[i] = scored{s: w.Scores[i], pos: w.Pos[i]}
	}
	return nil
}
