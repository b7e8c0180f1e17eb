// Package metriccore pools binary anomaly-detection metrics over a whole epoch in fixed memory.
//
// The reference node (cuvis-ai AnomalyDetectionMetrics) fed every pixel to torchmetrics' exact
// average precision, which keeps all predictions and ran out of memory after a few epochs. Here
// thresholded metrics (precision, recall, F1, IoU) come from exact integer counts, and the
// ranking metrics (average precision, AUROC) from two fixed-size score histograms, one for
// positive and one for negative pixels. Memory is O(bins), independent of the pixels seen, and
// the binning error is bounded by the fraction of positive/negative pairs that share a bin.
package metriccore

import (
	"fmt"
	"math"
)

// DefaultBins is the histogram resolution used when none is given: with scores spread over
// [0,1] it keeps AUROC and AP within about 1e-3 of the exact sort-based values.
const DefaultBins = 4096

// MaxBins caps the histogram size (2 × 8 bytes per bin) so a typo cannot allocate gigabytes.
const MaxBins = 1 << 24

// Mapping says how raw scores are mapped to [0,1] before binning.
type Mapping int

const (
	// MapClamp assumes scores already lie in [0,1] (probabilities, min-max normalised maps);
	// values outside are clamped to the end bins.
	MapClamp Mapping = iota
	// MapRange maps the fixed range [Lo,Hi] linearly onto [0,1] and clamps values outside.
	MapRange
	// MapSigmoid applies the logistic function, for unbounded logits (as torchmetrics does).
	MapSigmoid
)

func (m Mapping) String() string {
	switch m {
	case MapClamp:
		return "clamp"
	case MapRange:
		return "range"
	case MapSigmoid:
		return "sigmoid"
	}
	return fmt.Sprintf("Mapping(%d)", int(m))
}

// Options configure an Accumulator. The zero value means DefaultBins bins and MapClamp.
type Options struct {
	Bins    int
	Mapping Mapping
	Lo, Hi  float64 // MapRange only; Lo < Hi
}

// Accumulator pools pixel-level binary metrics over any number of Add calls. It is not safe for
// concurrent use; give each goroutine its own and Merge them.
type Accumulator struct {
	opt    Options
	scale  float64 // MapRange: 1/(Hi-Lo)
	counts []int64 // counts[2*b+1] positives, counts[2*b] negatives in bin b
	tp, fp int64
	fn, tn int64
}

// NewAccumulator returns an accumulator with bins histogram bins over [0,1] and MapClamp.
// bins <= 0 selects DefaultBins; bins > MaxBins is capped at MaxBins.
func NewAccumulator(bins int) *Accumulator {
	if bins <= 0 {
		bins = DefaultBins
	}
	bins = min(bins, MaxBins)
	a, _ := NewAccumulatorOptions(Options{Bins: bins})
	return a
}

// NewAccumulatorOptions returns an accumulator configured by o, or an error for an unknown
// mapping, an empty or reversed range, or a bin count outside [1, MaxBins] (0 means default).
func NewAccumulatorOptions(o Options) (*Accumulator, error) {
	if o.Bins == 0 {
		o.Bins = DefaultBins
	}
	if o.Bins < 1 || o.Bins > MaxBins {
		return nil, fmt.Errorf("metriccore: bins = %d, want 1..%d", o.Bins, MaxBins)
	}
	a := &Accumulator{opt: o}
	switch o.Mapping {
	case MapClamp, MapSigmoid:
	case MapRange:
		if !(o.Lo < o.Hi) || math.IsInf(o.Lo, 0) || math.IsInf(o.Hi, 0) {
			return nil, fmt.Errorf("metriccore: score range [%g,%g] must be finite with lo < hi", o.Lo, o.Hi)
		}
		a.scale = 1 / (o.Hi - o.Lo)
	default:
		return nil, fmt.Errorf("metriccore: unknown score mapping %d", int(o.Mapping))
	}
	a.counts = make([]int64, 2*o.Bins)
	return a, nil
}

// Options returns the configuration the accumulator was built with (defaults filled in).
func (a *Accumulator) Options() Options { return a.opt }

// Reset forgets everything added, keeping the configuration and the memory.
func (a *Accumulator) Reset() {
	clear(a.counts)
	a.tp, a.fp, a.fn, a.tn = 0, 0, 0, 0
}

// Count returns the number of pixels added since the last Reset.
func (a *Accumulator) Count() int64 { return a.tp + a.fp + a.fn + a.tn }

// Add pools one batch of flattened pixels. targets[i] is true for anomalous pixels. decisions[i]
// is the binary prediction used for precision/recall/F1/IoU; when decisions is nil, a pixel
// counts as predicted anomalous when its mapped score is > 0.5 (torchmetrics' default
// threshold). Scores must not be NaN. On error nothing is added.
func (a *Accumulator) Add(scores []float32, targets []bool, decisions []bool) error {
	if len(targets) != len(scores) {
		return fmt.Errorf("metriccore: %d scores but %d targets", len(scores), len(targets))
	}
	if decisions != nil && len(decisions) != len(scores) {
		return fmt.Errorf("metriccore: %d scores but %d decisions", len(scores), len(decisions))
	}
	for i, s := range scores {
		if s != s {
			return fmt.Errorf("metriccore: score %d is NaN", i)
		}
	}
	bins := a.opt.Bins
	fb := float64(bins)
	counts := a.counts[:2*bins]
	targets = targets[:len(scores)]
	switch a.opt.Mapping {
	case MapClamp:
		for i, s := range scores {
			counts[2*binOf(float64(s)*fb, bins)+b2i(targets[i])]++
		}
	case MapRange:
		lo, sc := a.opt.Lo, a.scale*fb
		for i, s := range scores {
			counts[2*binOf((float64(s)-lo)*sc, bins)+b2i(targets[i])]++
		}
	case MapSigmoid:
		for i, s := range scores {
			counts[2*binOf(fb/(1+math.Exp(-float64(s))), bins)+b2i(targets[i])]++
		}
	}
	if decisions == nil {
		a.countThreshold(scores, targets)
		return nil
	}
	decisions = decisions[:len(scores)]
	var tp, fp, fn int64
	for i, t := range targets {
		d := decisions[i]
		tp += b2i64(t && d)
		fp += b2i64(!t && d)
		fn += b2i64(t && !d)
	}
	a.tp += tp
	a.fp += fp
	a.fn += fn
	a.tn += int64(len(scores)) - tp - fp - fn
	return nil
}

// countThreshold counts decisions "mapped score > 0.5", i.e. raw > 0.5, > 0 or > the range
// midpoint, depending on the mapping.
func (a *Accumulator) countThreshold(scores []float32, targets []bool) {
	thr := 0.5
	switch a.opt.Mapping {
	case MapSigmoid:
		thr = 0
	case MapRange:
		thr = a.opt.Lo + 0.5*(a.opt.Hi-a.opt.Lo)
	}
	var tp, fp, fn int64
	for i, s := range scores {
		d, t := float64(s) > thr, targets[i]
		tp += b2i64(t && d)
		fp += b2i64(!t && d)
		fn += b2i64(t && !d)
	}
	a.tp += tp
	a.fp += fp
	a.fn += fn
	a.tn += int64(len(scores)) - tp - fp - fn
}

// binOf returns floor(x) clamped to [0, bins-1]; x is the mapped score times bins.
func binOf(x float64, bins int) int {
	if !(x > 0) {
		return 0
	}
	if x >= float64(bins) {
		return bins - 1
	}
	return int(x)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func b2i64(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Merge adds the counts of o, which must have the same configuration, so that per-worker
// accumulators can be pooled.
func (a *Accumulator) Merge(o *Accumulator) error {
	if o == nil {
		return fmt.Errorf("metriccore: merge of nil accumulator")
	}
	if a.opt != o.opt {
		return fmt.Errorf("metriccore: merge of accumulators with different options (%+v vs %+v)", a.opt, o.opt)
	}
	for i, c := range o.counts {
		a.counts[i] += c
	}
	a.tp += o.tp
	a.fp += o.fp
	a.fn += o.fn
	a.tn += o.tn
	return nil
}

// Metrics holds pooled results. Ratios with a zero denominator are 0, as in torchmetrics.
type Metrics struct {
	TP, FP, FN, TN   int64
	Precision        float64
	Recall           float64
	F1               float64
	IoU              float64 // Jaccard index TP/(TP+FP+FN)
	AveragePrecision float64
	AUROC            float64
}

// Map returns the metrics under the names the reference node logs.
func (m Metrics) Map() map[string]float64 {
	return map[string]float64{
		"precision":         m.Precision,
		"recall":            m.Recall,
		"f1_score":          m.F1,
		"iou":               m.IoU,
		"average_precision": m.AveragePrecision,
		"auroc":             m.AUROC,
	}
}

func ratio(num, den float64) float64 {
	if den == 0 {
		return 0
	}
	return num / den
}

// Result computes the metrics of everything added since the last Reset.
func (a *Accumulator) Result() Metrics {
	m := Metrics{TP: a.tp, FP: a.fp, FN: a.fn, TN: a.tn}
	tp, fp, fn := float64(a.tp), float64(a.fp), float64(a.fn)
	m.Precision = ratio(tp, tp+fp)
	m.Recall = ratio(tp, tp+fn)
	m.F1 = ratio(2*tp, 2*tp+fp+fn)
	m.IoU = ratio(tp, tp+fp+fn)
	m.AveragePrecision = a.averagePrecision()
	m.AUROC = a.auroc()
	return m
}

func (a *Accumulator) totals() (p, n float64) {
	var ip, in int64
	for b := 0; b < a.opt.Bins; b++ {
		in += a.counts[2*b]
		ip += a.counts[2*b+1]
	}
	return float64(ip), float64(in)
}

// auroc is the Mann–Whitney statistic over bins: a positive beats every negative in lower bins
// and ties (½) with those in its own bin. This equals the trapezoid under the ROC curve whose
// points are the bin boundaries. 0 when either class is absent.
func (a *Accumulator) auroc() float64 {
	p, n := a.totals()
	if p == 0 || n == 0 {
		return 0
	}
	var below, sum float64
	for b := 0; b < a.opt.Bins; b++ {
		neg, pos := float64(a.counts[2*b]), float64(a.counts[2*b+1])
		sum += pos * (below + 0.5*neg)
		below += neg
	}
	return sum / (p * n)
}

// averagePrecision is sklearn's AP, Σ (R_n − R_{n−1}) P_n, with the thresholds taken from high
// to low at the bins, each bin acting as one group of tied scores. 0 without positives.
func (a *Accumulator) averagePrecision() float64 {
	p, _ := a.totals()
	if p == 0 {
		return 0
	}
	var tp, fp, ap float64
	for b := a.opt.Bins - 1; b >= 0; b-- {
		neg, pos := float64(a.counts[2*b]), float64(a.counts[2*b+1])
		tp += pos
		fp += neg
		if pos > 0 {
			ap += pos / p * tp / (tp + fp)
		}
	}
	return ap
}

// ROCCurve returns the ROC points at the boundaries of non-empty bins, from (0,0) to (1,1), with
// fpr ascending, for plotting. Both are nil when either class is absent.
func (a *Accumulator) ROCCurve() (fpr, tpr []float64) {
	p, n := a.totals()
	if p == 0 || n == 0 {
		return nil, nil
	}
	fpr, tpr = []float64{0}, []float64{0}
	var tp, fp float64
	for b := a.opt.Bins - 1; b >= 0; b-- {
		neg, pos := a.counts[2*b], a.counts[2*b+1]
		if neg == 0 && pos == 0 {
			continue
		}
		tp += float64(pos)
		fp += float64(neg)
		fpr = append(fpr, fp/n)
		tpr = append(tpr, tp/p)
	}
	return fpr, tpr
}

// PRCurve returns precision–recall points with recall non-decreasing: first sklearn's
// (recall 0, precision 1) anchor, then one point per non-empty bin from the highest threshold
// down. Both are nil without positives.
func (a *Accumulator) PRCurve() (recall, precision []float64) {
	p, _ := a.totals()
	if p == 0 {
		return nil, nil
	}
	recall, precision = []float64{0}, []float64{1}
	var tp, fp float64
	for b := a.opt.Bins - 1; b >= 0; b-- {
		neg, pos := a.counts[2*b], a.counts[2*b+1]
		if neg == 0 && pos == 0 {
			continue
		}
		tp += float64(pos)
		fp += float64(neg)
		recall = append(recall, tp/p)
		precision = append(precision, tp/(tp+fp))
	}
	return recall, precision
}

// BestF1Threshold scans the bin boundaries and returns the raw-score threshold thr (predict
// anomalous when score >= thr) with the highest F1, and that F1; on ties the highest threshold
// wins. It exists to calibrate a fixed decider from a validation epoch. thr is converted back
// through the mapping; when predicting every pixel anomalous is best, thr is -Inf. Without
// positives it returns (NaN, 0).
func (a *Accumulator) BestF1Threshold() (thr, f1 float64) {
	p, _ := a.totals()
	if p == 0 {
		return math.NaN(), 0
	}
	var tp, fp float64
	best, bestBin := -1.0, 0
	for b := a.opt.Bins - 1; b >= 0; b-- {
		tp += float64(a.counts[2*b+1])
		fp += float64(a.counts[2*b])
		if f := 2 * tp / (2*tp + fp + (p - tp)); f > best {
			best, bestBin = f, b
		}
	}
	if bestBin == 0 {
		// Bin 0 also holds clamped scores below the range: only -Inf admits them all.
		return math.Inf(-1), best
	}
	return a.unmap(float64(bestBin) / float64(a.opt.Bins)), best
}

// unmap converts a point of [0,1] back to raw score units.
func (a *Accumulator) unmap(u float64) float64 {
	switch a.opt.Mapping {
	case MapRange:
		return a.opt.Lo + u*(a.opt.Hi-a.opt.Lo)
	case MapSigmoid:
		return math.Log(u / (1 - u))
	}
	return u
}
