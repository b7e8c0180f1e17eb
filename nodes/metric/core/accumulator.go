// Package metriccore pools binary anomaly-detection metrics over a whole epoch in fixed memory.
//
// The reference node (cuvis-ai AnomalyDetectionMetrics) fed every pixel to torchmetrics' exact
// average precision, which keeps all predictions and ran out of memory after a few epochs. Here
// thresholded metrics (precision, recall, F1, IoU) come from exact integer counts. The ranking
// metrics (average precision, AUROC) are exact (sorted scores, ties grouped as sklearn does)
// while the pixels seen fit under Options.ExactLimit; beyond it, or with ExactLimit 0, they come
// from two fixed-size score histograms, one for positive and one for negative pixels, so memory
// is bounded. The histogram's error is not hidden: Result states a bound for each ranking metric
// from the positive/negative pixels that share a bin.
package metriccore

import (
	"fmt"
	"math"
	"sort"
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
	// MapAdaptive bins raw scores over the range found in the data itself: the range of the
	// pixels kept for the exact metrics (or of the first batch), widened by merging pairs of
	// bins whenever a later score falls outside. ±Inf scores get groups of their own.
	MapAdaptive
)

// DefaultExactLimit is the number of pixels kept for exact ranking metrics by the metrics node
// (8 bytes each: 128 MiB); 16.7 M pixels are 1024 frames of 128×128.
const DefaultExactLimit = 1 << 24

func (m Mapping) String() string {
	switch m {
	case MapClamp:
		return "clamp"
	case MapRange:
		return "range"
	case MapSigmoid:
		return "sigmoid"
	case MapAdaptive:
		return "adaptive"
	}
	return fmt.Sprintf("Mapping(%d)", int(m))
}

// Options configure an Accumulator. The zero value means DefaultBins bins, MapClamp and no
// exact buffer.
type Options struct {
	Bins    int
	Mapping Mapping
	Lo, Hi  float64 // MapRange only; Lo < Hi
	// ExactLimit is how many pixels are kept (8 bytes each) for exact sort-based ranking
	// metrics; once more are added, the kept ones are binned and the histogram takes over.
	// 0 = histogram only.
	ExactLimit int
}

// scored is one kept pixel of the exact buffer.
type scored struct {
	s   float32
	pos bool
}

// Accumulator pools pixel-level binary metrics over any number of Add calls. It is not safe for
// concurrent use; give each goroutine its own and Merge them.
type Accumulator struct {
	opt    Options
	scale  float64 // MapRange: 1/(Hi-Lo)
	counts []int64 // counts[2*b+1] positives, counts[2*b] negatives in bin b
	tp, fp int64
	fn, tn int64

	exact   []scored // the pixels while they fit under ExactLimit (binned = false)
	binned  bool     // the histogram holds the ranking data
	sorted  bool     // exact is sorted by descending score
	lo, w   float64  // MapAdaptive: bin b covers [lo+b·w, lo+(b+1)·w)
	haveRng bool     // MapAdaptive: lo, w are set
	inf     [4]int64 // MapAdaptive: −Inf negatives, −Inf positives, +Inf negatives, +Inf positives
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
	if o.ExactLimit < 0 {
		return nil, fmt.Errorf("metriccore: exact limit %d must be >= 0", o.ExactLimit)
	}
	a := &Accumulator{opt: o, binned: o.ExactLimit == 0}
	switch o.Mapping {
	case MapClamp, MapSigmoid, MapAdaptive:
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
	a.exact = a.exact[:0]
	a.binned = a.opt.ExactLimit == 0
	a.sorted = false
	a.haveRng = false
	a.inf = [4]int64{}
}

// Exact reports whether the ranking metrics are exact (every pixel since Reset is kept).
func (a *Accumulator) Exact() bool { return !a.binned }

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
	targets = targets[:len(scores)]
	if !a.binned && len(a.exact)+len(scores) <= a.opt.ExactLimit {
		for i, s := range scores {
			a.exact = append(a.exact, scored{s, targets[i]})
		}
		a.sorted = false
	} else {
		a.spill()
		a.bin(scores, targets)
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

// spill moves the exact buffer into the histogram (once the buffer would overflow); with
// MapAdaptive the histogram's range starts as the buffer's range.
func (a *Accumulator) spill() {
	if a.binned {
		return
	}
	a.binned = true
	if len(a.exact) == 0 {
		return
	}
	sc := make([]float32, 0, 4096)
	tg := make([]bool, 0, 4096)
	for len(a.exact) > 0 {
		k := min(len(a.exact), 4096)
		sc, tg = sc[:0], tg[:0]
		for _, e := range a.exact[:k] {
			sc, tg = append(sc, e.s), append(tg, e.pos)
		}
		if !a.haveRng && a.opt.Mapping == MapAdaptive {
			a.initRange(a.exact)
		}
		a.bin(sc, tg)
		a.exact = a.exact[k:]
	}
	a.exact = nil
}

// initRange sets the adaptive histogram over the finite range of the given pixels.
func (a *Accumulator) initRange(px []scored) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, e := range px {
		v := float64(e.s)
		if math.IsInf(v, 0) {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if lo > hi {
		return // only infinities so far
	}
	w := (hi - lo) / float64(a.opt.Bins) * (1 + 1e-9)
	if !(w > 0) {
		w = math.Max(math.Abs(lo), 1) * 1e-9
	}
	a.lo, a.w, a.haveRng = lo, w, true
}

// grow doubles the adaptive bin width until x lies inside the range, merging pairs of bins.
func (a *Accumulator) grow(x float64) {
	bins := a.opt.Bins
	c := a.counts
	for {
		hi := a.lo + a.w*float64(bins)
		switch {
		case x >= hi: // keep lo; old bin i goes to i/2
			for i := 0; i < bins; i++ {
				n, p := c[2*i], c[2*i+1]
				c[2*i], c[2*i+1] = 0, 0
				c[2*(i/2)] += n
				c[2*(i/2)+1] += p
			}
		case x < a.lo: // the old range becomes the upper half: old bin i goes to (i+bins)/2
			for i := bins - 1; i >= 0; i-- {
				n, p := c[2*i], c[2*i+1]
				c[2*i], c[2*i+1] = 0, 0
				j := (i + bins) / 2
				c[2*j] += n
				c[2*j+1] += p
			}
			a.lo -= a.w * float64(bins)
		default:
			return
		}
		a.w *= 2
	}
}

// bin adds scores to the histogram.
func (a *Accumulator) bin(scores []float32, targets []bool) {
	bins := a.opt.Bins
	fb := float64(bins)
	counts := a.counts[:2*bins]
	switch a.opt.Mapping {
	case MapAdaptive:
		if !a.haveRng {
			px := make([]scored, len(scores))
			for i, s := range scores {
				px[i] = scored{s, targets[i]}
			}
			a.initRange(px)
		}
		for i, s := range scores {
			v := float64(s)
			if math.IsInf(v, 0) {
				a.inf[2*b2i(v > 0)+b2i(targets[i])]++
				continue
			}
			if v < a.lo || v >= a.lo+a.w*fb {
				a.grow(v)
			}
			counts[2*binOf((v-a.lo)/a.w, bins)+b2i(targets[i])]++
		}
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
}

// countThreshold counts decisions "mapped score > 0.5", i.e. raw > 0.5, > 0 or > the range
// midpoint, depending on the mapping (raw > 0.5 for MapAdaptive).
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

// Merge adds everything o pooled; o must have the same configuration, so that per-worker
// accumulators can be pooled. Exact buffers are concatenated while they fit under ExactLimit;
// adaptive-range histograms cannot be merged (their bins differ), fixed-mapping ones can.
func (a *Accumulator) Merge(o *Accumulator) error {
	if o == nil {
		return fmt.Errorf("metriccore: merge of nil accumulator")
	}
	if a.opt != o.opt {
		return fmt.Errorf("metriccore: merge of accumulators with different options (%+v vs %+v)", a.opt, o.opt)
	}
	switch {
	case !a.binned && !o.binned && len(a.exact)+len(o.exact) <= a.opt.ExactLimit:
		a.exact = append(a.exact, o.exact...)
		a.sorted = false
	case a.opt.Mapping == MapAdaptive:
		return fmt.Errorf("metriccore: cannot merge adaptive-range histograms (raise the exact limit so that both fit, %d pixels)", len(a.exact)+len(o.exact))
	default:
		a.spill()
		for i, c := range o.counts {
			a.counts[i] += c
		}
		if !o.binned {
			sc := make([]float32, len(o.exact))
			tg := make([]bool, len(o.exact))
			for i, e := range o.exact {
				sc[i], tg[i] = e.s, e.pos
			}
			a.bin(sc, tg)
		}
	}
	a.tp += o.tp
	a.fp += o.fp
	a.fn += o.fn
	a.tn += o.tn
	return nil
}

// Metrics holds pooled results. Ratios with a zero denominator are 0, as in torchmetrics;
// AUROC (either class absent) and AveragePrecision (no positives) are then undefined: NaN,
// which JSON writers turn into null and reports into "undefined".
type Metrics struct {
	TP, FP, FN, TN   int64
	Precision        float64
	Recall           float64
	F1               float64
	IoU              float64 // Jaccard index TP/(TP+FP+FN)
	AveragePrecision float64
	AUROC            float64
	// Exact is true when AUROC and AP come from every pixel's score; otherwise they come from
	// the histogram and differ from the exact values by at most AUROCMaxError and APMaxError
	// (positives and negatives that share a bin may be ordered either way).
	Exact         bool
	AUROCMaxError float64
	APMaxError    float64
}

// Map returns the metrics under the names the reference node logs, plus
// auroc_max_error and average_precision_max_error when they are approximate.
func (m Metrics) Map() map[string]float64 {
	out := map[string]float64{
		"precision":         m.Precision,
		"recall":            m.Recall,
		"f1_score":          m.F1,
		"iou":               m.IoU,
		"average_precision": m.AveragePrecision,
		"auroc":             m.AUROC,
	}
	if !m.Exact {
		out["auroc_max_error"] = m.AUROCMaxError
		out["average_precision_max_error"] = m.APMaxError
	}
	return out
}

func ratio(num, den float64) float64 {
	if den == 0 {
		return 0
	}
	return num / den
}

// Result computes the metrics of everything added since the last Reset.
func (a *Accumulator) Result() Metrics {
	m := Metrics{TP: a.tp, FP: a.fp, FN: a.fn, TN: a.tn, Exact: !a.binned}
	tp, fp, fn := float64(a.tp), float64(a.fp), float64(a.fn)
	m.Precision = ratio(tp, tp+fp)
	m.Recall = ratio(tp, tp+fn)
	m.F1 = ratio(2*tp, 2*tp+fp+fn)
	m.IoU = ratio(tp, tp+fp+fn)
	m.AveragePrecision, m.APMaxError = a.averagePrecision()
	m.AUROC, m.AUROCMaxError = a.auroc()
	return m
}

// groups calls fn for each group of pixels that the ranking metrics cannot tell apart, from
// the highest scores to the lowest: with the exact buffer, pixels with equal scores; with the
// histogram, the pixels of one bin. thr is the raw-score threshold "score >= thr" that admits
// the group and every group before it.
func (a *Accumulator) groups(fn func(thr, neg, pos float64)) {
	if !a.binned {
		if !a.sorted {
			sort.Slice(a.exact, func(i, j int) bool { return a.exact[i].s > a.exact[j].s })
			a.sorted = true
		}
		e := a.exact
		for i := 0; i < len(e); {
			var pos, neg float64
			j := i
			for ; j < len(e) && e[j].s == e[i].s; j++ {
				if e[j].pos {
					pos++
				} else {
					neg++
				}
			}
			fn(float64(e[i].s), neg, pos)
			i = j
		}
		return
	}
	adaptive := a.opt.Mapping == MapAdaptive
	if adaptive && a.inf[2]+a.inf[3] > 0 {
		fn(math.Inf(1), float64(a.inf[2]), float64(a.inf[3]))
	}
	for b := a.opt.Bins - 1; b >= 0; b-- {
		neg, pos := a.counts[2*b], a.counts[2*b+1]
		if neg == 0 && pos == 0 {
			continue
		}
		var thr float64
		switch {
		case adaptive:
			thr = a.lo + float64(b)*a.w
		case b == 0:
			thr = math.Inf(-1) // bin 0 also holds clamped scores below the range
		default:
			thr = a.unmap(float64(b) / float64(a.opt.Bins))
		}
		fn(thr, float64(neg), float64(pos))
	}
	if adaptive && a.inf[0]+a.inf[1] > 0 {
		fn(math.Inf(-1), float64(a.inf[0]), float64(a.inf[1]))
	}
}

func (a *Accumulator) totals() (p, n float64) {
	if !a.binned {
		for _, e := range a.exact {
			if e.pos {
				p++
			} else {
				n++
			}
		}
		return p, n
	}
	var ip, in int64
	for b := 0; b < a.opt.Bins; b++ {
		in += a.counts[2*b]
		ip += a.counts[2*b+1]
	}
	in += a.inf[0] + a.inf[2]
	ip += a.inf[1] + a.inf[3]
	return float64(ip), float64(in)
}

// auroc is the Mann–Whitney statistic over the groups: a positive beats every negative in lower
// groups and ties (½) with those in its own. Exact with the exact buffer (sklearn's
// roc_auc_score); over bins it is the trapezoid under the ROC curve through the bin
// boundaries, within ½·Σ pos_b·neg_b/(P·N) of the exact value (the bound returned). NaN
// (undefined) when either class is absent.
func (a *Accumulator) auroc() (auc, maxErr float64) {
	p, n := a.totals()
	if p == 0 || n == 0 {
		return math.NaN(), 0
	}
	var above, sum, shared float64
	a.groups(func(_, neg, pos float64) {
		above += neg
		sum += pos * (n - above + 0.5*neg)
		shared += pos * neg
	})
	if !a.binned {
		shared = 0
	}
	return sum / (p * n), 0.5 * shared / (p * n)
}

// averagePrecision is sklearn's AP, Σ (R_n − R_{n−1}) P_n, with the thresholds taken from high
// to low at the groups. Over bins, every positive of a bin is credited, in the exact value,
// a precision between that of the worst order (the bin's negatives first, then its positives
// one by one) and that of the best (all its positives tied, before its negatives); the larger
// distance of those two sums from the binned value is returned as the bound. NaN
// (undefined) without positives.
func (a *Accumulator) averagePrecision() (ap, maxErr float64) {
	p, _ := a.totals()
	if p == 0 {
		return math.NaN(), 0
	}
	var tp, fp, hi, lo float64
	a.groups(func(_, neg, pos float64) {
		if pos > 0 {
			ap += pos / p * (tp + pos) / (tp + pos + fp + neg)
			if a.binned {
				hi += pos / p * (tp + pos) / (tp + pos + fp)
				for i := 1.0; i <= pos; i++ {
					lo += (tp + i) / (tp + fp + neg + i) / p
				}
			}
		}
		tp += pos
		fp += neg
	})
	if a.binned {
		maxErr = math.Max(0, math.Max(hi-ap, ap-lo))
	}
	return ap, maxErr
}

// curveStep is the smallest change of either coordinate between two points that ROCCurve and
// PRCurve keep, so that an exact curve over millions of distinct scores stays plottable.
const curveStep = 1e-3

// ROCCurve returns ROC points at the group boundaries (exact curves thinned to steps of about
// 1e-3), from
// (0,0) to (1,1), with fpr ascending, for plotting. Both are nil when either class is absent.
func (a *Accumulator) ROCCurve() (fpr, tpr []float64) {
	p, n := a.totals()
	if p == 0 || n == 0 {
		return nil, nil
	}
	fpr, tpr = []float64{0}, []float64{0}
	var tp, fp float64
	a.groups(func(_, neg, pos float64) {
		tp += pos
		fp += neg
		x, y := fp/n, tp/p
		if a.binned || x-fpr[len(fpr)-1] >= curveStep || y-tpr[len(tpr)-1] >= curveStep || (tp == p && fp == n) {
			fpr = append(fpr, x)
			tpr = append(tpr, y)
		}
	})
	return fpr, tpr
}

// PRCurve returns precision–recall points with recall non-decreasing: first sklearn's
// (recall 0, precision 1) anchor, then one point per group from the highest threshold down
// (exact curves thinned to steps of about 1e-3). Both are nil without positives.
func (a *Accumulator) PRCurve() (recall, precision []float64) {
	p, n := a.totals()
	if p == 0 {
		return nil, nil
	}
	recall, precision = []float64{0}, []float64{1}
	var tp, fp float64
	a.groups(func(_, neg, pos float64) {
		tp += pos
		fp += neg
		r, pr := tp/p, tp/(tp+fp)
		if a.binned || r-recall[len(recall)-1] >= curveStep || math.Abs(pr-precision[len(precision)-1]) >= curveStep || (tp == p && fp == n) {
			recall = append(recall, r)
			precision = append(precision, pr)
		}
	})
	return recall, precision
}

// BestF1Threshold scans the group boundaries and returns the raw-score threshold thr (predict
// anomalous when score >= thr) with the highest F1, and that F1; on ties the highest threshold
// wins. It exists to calibrate a fixed decider from a validation epoch. With the exact buffer
// thr is a score that occurs; over bins it is a bin's lower edge in raw units, and -Inf when
// predicting every pixel anomalous is best. Without positives it returns (NaN, 0).
func (a *Accumulator) BestF1Threshold() (thr, f1 float64) {
	p, _ := a.totals()
	if p == 0 {
		return math.NaN(), 0
	}
	var tp, fp float64
	best := -1.0
	a.groups(func(t, neg, pos float64) {
		tp += pos
		fp += neg
		if f := 2 * tp / (2*tp + fp + (p - tp)); f > best {
			best, thr = f, t
		}
	})
	return thr, best
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
