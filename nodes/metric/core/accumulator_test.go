package metriccore

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/stat"
)

// dataset is one fresh random test case: float32 scores in score units, labels, and decisions.
type dataset struct {
	scores    []float32
	labels    []bool
	decisions []bool
}

func (d dataset) float64s() []float64 {
	out := make([]float64, len(d.scores))
	for i, s := range d.scores {
		out[i] = float64(s)
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// overlapping draws n pixels, a fraction posFrac of them anomalous, with logits N(-1,1) for
// normal and N(mu,1) for anomalous pixels, mapped through a sigmoid (probability-like scores).
func overlapping(r *rand.Rand, n int, posFrac, mu float64) dataset {
	d := dataset{make([]float32, n), make([]bool, n), make([]bool, n)}
	for i := range n {
		d.labels[i] = r.Float64() < posFrac
		m := -1.0
		if d.labels[i] {
			m = mu
		}
		d.scores[i] = float32(sigmoid(m + r.NormFloat64()))
		d.decisions[i] = d.scores[i] > 0.6 || r.Float64() < 0.01
	}
	return d
}

// structured simulates anomaly maps: smooth spatially varying background scores with noise, and
// a few elliptical anomalies whose scores are raised by a blob-shaped bump, so that anomalous and
// normal scores overlap near blob edges like in real maps.
func structured(r *rand.Rand, images, h, w int) dataset {
	n := images * h * w
	d := dataset{make([]float32, 0, n), make([]bool, 0, n), make([]bool, 0, n)}
	for range images {
		fx, fy, ph := 1+3*r.Float64(), 1+3*r.Float64(), 2*math.Pi*r.Float64()
		type blob struct{ cx, cy, rx, ry float64 }
		var blobs []blob
		for range 1 + r.IntN(3) {
			blobs = append(blobs, blob{r.Float64() * float64(w), r.Float64() * float64(h), 2 + 4*r.Float64(), 2 + 4*r.Float64()})
		}
		for y := range h {
			for x := range w {
				u, v := float64(x)/float64(w), float64(y)/float64(h)
				s := 0.25 + 0.1*math.Sin(2*math.Pi*fx*u+ph)*math.Cos(2*math.Pi*fy*v) + 0.06*r.NormFloat64()
				inside := false
				for _, b := range blobs {
					q := math.Pow((float64(x)-b.cx)/b.rx, 2) + math.Pow((float64(y)-b.cy)/b.ry, 2)
					if q <= 1 {
						inside = true
					}
					s += 0.35 * math.Exp(-q)
				}
				s = math.Max(0, math.Min(1, s))
				d.scores = append(d.scores, float32(s))
				d.labels = append(d.labels, inside)
				d.decisions = append(d.decisions, s > 0.5)
			}
		}
	}
	return d
}

// gonumAUROC is the independent reference from spec §1(g): stat.ROC on sorted scores, integrated
// with the trapezoid rule.
func gonumAUROC(scores []float64, labels []bool) float64 {
	y := slices.Clone(scores)
	c := slices.Clone(labels)
	stat.SortWeightedLabeled(y, c, nil)
	tpr, fpr, _ := stat.ROC(nil, y, c, nil)
	return integrate.Trapezoidal(fpr, tpr)
}

func addAll(t testing.TB, a *Accumulator, d dataset) {
	t.Helper()
	if err := a.Add(d.scores, d.labels, d.decisions); err != nil {
		t.Fatal(err)
	}
}

func TestBinnedMatchesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	tests := []struct {
		name string
		d    dataset
	}{
		{"overlap n=1000 30%", overlapping(r, 1000, 0.3, 0.5)},
		{"overlap n=20000 1%", overlapping(r, 20000, 0.01, 1.5)},
		{"overlap n=300000 1%", overlapping(r, 300000, 0.01, 1)},
		{"overlap n=300000 0.2%", overlapping(r, 300000, 0.002, 2)},
		{"structured 8x64x64", structured(r, 8, 64, 64)},
		{"structured 32x96x96", structured(r, 32, 96, 96)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator(0)
			addAll(t, a, tc.d)
			m := a.Result()
			s := tc.d.float64s()
			exAUC, exAP, gAUC := ExactAUROC(s, tc.d.labels), ExactAP(s, tc.d.labels), gonumAUROC(s, tc.d.labels)
			if math.Abs(exAUC-gAUC) > 1e-9 {
				t.Errorf("ExactAUROC %.12f vs gonum %.12f", exAUC, gAUC)
			}
			if math.Abs(m.AUROC-gAUC) > 1e-3 {
				t.Errorf("binned AUROC %.6f vs gonum %.6f (diff %.2g)", m.AUROC, gAUC, m.AUROC-gAUC)
			}
			if math.Abs(m.AveragePrecision-exAP) > 1e-3 {
				t.Errorf("binned AP %.6f vs exact %.6f (diff %.2g)", m.AveragePrecision, exAP, m.AveragePrecision-exAP)
			}
			// Guard against a degenerate case that would make the comparison meaningless.
			if exAUC < 0.55 || exAUC > 0.999 || exAP < 0.02 {
				t.Errorf("test data not informative: AUROC %.4f AP %.4f", exAUC, exAP)
			}
			t.Logf("AUROC binned %.6f exact %.6f | AP binned %.6f exact %.6f", m.AUROC, exAUC, m.AveragePrecision, exAP)
		})
	}
}

// TestExactAgainstBruteForce checks the sort-based references with O(N²) definitions: AUROC as
// the fraction of (positive, negative) pairs ranked correctly (ties ½), and AP as the mean over
// positives of the precision at that positive's score.
func TestExactAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{2, 17, 300, 1500} {
		s := make([]float64, n)
		l := make([]bool, n)
		for i := range n {
			s[i] = math.Round(r.Float64()*40) / 40 // coarse grid: many ties
			l[i] = r.Float64() < 0.2+0.5*s[i]
		}
		l[0], l[1] = true, false
		var pairs, good float64
		var apSum, p float64
		for i := range n {
			if !l[i] {
				continue
			}
			p++
			var ge, geP float64
			for j := range n {
				if s[j] >= s[i] {
					ge++
					if l[j] {
						geP++
					}
				}
				if !l[j] {
					pairs++
					switch {
					case s[i] > s[j]:
						good++
					case s[i] == s[j]:
						good += 0.5
					}
				}
			}
			apSum += geP / ge
		}
		if got, want := ExactAUROC(s, l), good/pairs; math.Abs(got-want) > 1e-12 {
			t.Errorf("n=%d: ExactAUROC %.15f, brute force %.15f", n, got, want)
		}
		if got, want := ExactAP(s, l), apSum/p; math.Abs(got-want) > 1e-12 {
			t.Errorf("n=%d: ExactAP %.15f, brute force %.15f", n, got, want)
		}
	}
}

func TestHandComputed(t *testing.T) {
	tests := []struct {
		name    string
		scores  []float32
		labels  []bool
		ap, auc float64
	}{
		// sklearn's documented example: AP = 0.5·1 + 0.5·(2/3) = 0.8333…; AUROC = 3/4.
		{"sklearn doc", []float32{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}, 0.5 + 0.5*2.0/3, 0.75},
		// Tie at 0.5 between a positive and a negative: AP = 0.5·(1/2) + 0.5·(2/3); AUROC from
		// the pairs (0.5P, 0.5N) = ½ and (0.2P, 0.5N) = 0, so ¼.
		{"tie", []float32{0.5, 0.5, 0.2}, []bool{true, false, true}, 0.25 + 0.5*2.0/3, 0.25},
		// spec §1(g) tie example: AUC 0.25.
		{"spec ties", []float32{0.1, 0.35, 0.4, 0.4, 0.8}, []bool{true, false, true, false, false}, 0, 0.25},
	}
	// AP of the spec example by hand: order 0.8N, {0.4P,0.4N}, 0.35N, 0.1P → 0.5·(1/3) + 0.5·(2/5).
	tests[2].ap = 0.5/3 + 0.5*2/5
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator(1000)
			if err := a.Add(tc.scores, tc.labels, nil); err != nil {
				t.Fatal(err)
			}
			m := a.Result()
			s := make([]float64, len(tc.scores))
			for i, v := range tc.scores {
				s[i] = float64(v)
			}
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"binned AP", m.AveragePrecision, tc.ap},
				{"exact AP", ExactAP(s, tc.labels), tc.ap},
				{"binned AUROC", m.AUROC, tc.auc},
				{"exact AUROC", ExactAUROC(s, tc.labels), tc.auc},
			} {
				if math.Abs(c.got-c.want) > 1e-12 {
					t.Errorf("%s = %.15f, want %.15f", c.what, c.got, c.want)
				}
			}
		})
	}
}

// TestQuantizedScoresExact uses scores on a 1/256 grid, which 4096 bins separate exactly, so the
// binned metrics must equal the sort-based ones up to rounding.
func TestQuantizedScoresExact(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	n := 50000
	d := dataset{make([]float32, n), make([]bool, n), nil}
	for i := range n {
		d.labels[i] = r.Float64() < 0.03
		mu := 0.3
		if d.labels[i] {
			mu = 0.55
		}
		v := math.Max(0, math.Min(1, mu+0.15*r.NormFloat64()))
		d.scores[i] = float32(math.Round(v*255) / 256)
	}
	a := NewAccumulator(4096)
	addAll(t, a, d)
	m := a.Result()
	s := d.float64s()
	if got, want := m.AUROC, ExactAUROC(s, d.labels); math.Abs(got-want) > 1e-12 {
		t.Errorf("AUROC %.15f, exact %.15f", got, want)
	}
	if got, want := m.AveragePrecision, ExactAP(s, d.labels); math.Abs(got-want) > 1e-12 {
		t.Errorf("AP %.15f, exact %.15f", got, want)
	}
	// The ROC curve integrates (trapezoid, independent of the Mann–Whitney sum) to the same AUROC.
	fpr, tpr := a.ROCCurve()
	if got := integrate.Trapezoidal(fpr, tpr); math.Abs(got-m.AUROC) > 1e-12 {
		t.Errorf("trapezoid of ROCCurve %.15f, AUROC %.15f", got, m.AUROC)
	}
	// The PR curve's step sum Σ ΔR·P reproduces AP.
	rec, prec := a.PRCurve()
	ap := 0.0
	for i := 1; i < len(rec); i++ {
		ap += (rec[i] - rec[i-1]) * prec[i]
	}
	if math.Abs(ap-m.AveragePrecision) > 1e-12 {
		t.Errorf("step sum of PRCurve %.15f, AP %.15f", ap, m.AveragePrecision)
	}
	if fpr[0] != 0 || tpr[0] != 0 || fpr[len(fpr)-1] != 1 || tpr[len(tpr)-1] != 1 || rec[0] != 0 || prec[0] != 1 || rec[len(rec)-1] != 1 {
		t.Errorf("curve end points: roc (%v,%v)…(%v,%v), pr starts (%v,%v)", fpr[0], tpr[0], fpr[len(fpr)-1], tpr[len(tpr)-1], rec[0], prec[0])
	}
}

func TestThresholdedCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	d := structured(r, 4, 40, 50)
	for _, withDecisions := range []bool{true, false} {
		t.Run(fmt.Sprintf("decisions=%v", withDecisions), func(t *testing.T) {
			a := NewAccumulator(0)
			dec := d.decisions
			if !withDecisions {
				dec = nil
			}
			if err := a.Add(d.scores, d.labels, dec); err != nil {
				t.Fatal(err)
			}
			var tp, fp, fn, tn float64
			for i, l := range d.labels {
				p := float64(d.scores[i]) > 0.5
				if withDecisions {
					p = d.decisions[i]
				}
				switch {
				case l && p:
					tp++
				case !l && p:
					fp++
				case l && !p:
					fn++
				default:
					tn++
				}
			}
			m := a.Result()
			if float64(m.TP) != tp || float64(m.FP) != fp || float64(m.FN) != fn || float64(m.TN) != tn {
				t.Fatalf("counts %d/%d/%d/%d, want %v/%v/%v/%v", m.TP, m.FP, m.FN, m.TN, tp, fp, fn, tn)
			}
			if tp == 0 || fp == 0 || fn == 0 {
				t.Fatalf("degenerate test data: tp %v fp %v fn %v", tp, fp, fn)
			}
			want := map[string]float64{
				"precision":         tp / (tp + fp),
				"recall":            tp / (tp + fn),
				"f1_score":          2 * (tp / (tp + fp)) * (tp / (tp + fn)) / (tp/(tp+fp) + tp/(tp+fn)),
				"iou":               tp / (tp + fp + fn),
				"average_precision": ExactAP(d.float64s(), d.labels),
				"auroc":             gonumAUROC(d.float64s(), d.labels),
			}
			got := m.Map()
			// a histogram states its error bounds beside the values
			want["auroc_max_error"], want["average_precision_max_error"] = m.AUROCMaxError, m.APMaxError
			if len(got) != len(want) {
				t.Errorf("Map has %d keys, want %d", len(got), len(want))
			}
			for k, w := range want {
				tol := 1e-12
				if k == "average_precision" || k == "auroc" {
					tol = 1e-3
				}
				if g, ok := got[k]; !ok || math.Abs(g-w) > tol {
					t.Errorf("%s = %v, want %v", k, g, w)
				}
			}
		})
	}
}

func TestZeroDivision(t *testing.T) {
	// Threshold-free ranking metrics are undefined (NaN, null in JSON) when a class they rank
	// is absent, as sklearn warns; thresholded ratios with a zero denominator are 0, as in
	// torchmetrics.
	a := NewAccumulator(16)
	if err := a.Add([]float32{0.1, 0.2, 0.3}, []bool{false, false, false}, []bool{false, false, false}); err != nil {
		t.Fatal(err)
	}
	for k, v := range a.Result().Map() {
		undefined := k == "auroc" || k == "average_precision"
		if undefined != math.IsNaN(v) || (!undefined && v != 0) {
			t.Errorf("%s = %v with no positives, want %s", k, v, map[bool]string{true: "NaN (undefined)", false: "0"}[undefined])
		}
	}
	if f, tp := a.ROCCurve(); f != nil || tp != nil {
		t.Error("ROCCurve without positives should be nil")
	}
	if thr, f1 := a.BestF1Threshold(); !math.IsNaN(thr) || f1 != 0 {
		t.Errorf("BestF1Threshold = %v, %v; want NaN, 0", thr, f1)
	}
	empty := NewAccumulator(16).Result()
	if !math.IsNaN(empty.AUROC) || !math.IsNaN(empty.AveragePrecision) || empty.F1 != 0 {
		t.Errorf("empty accumulator result %+v, want undefined AUROC/AP and zero F1", empty)
	}
	// all anomalous: AUROC is undefined, AP is 1 (every threshold has precision 1)
	b := NewAccumulator(16)
	if err := b.Add([]float32{0.1, 0.7}, []bool{true, true}, []bool{true, true}); err != nil {
		t.Fatal(err)
	}
	if m := b.Result(); !math.IsNaN(m.AUROC) || m.AveragePrecision != 1 {
		t.Errorf("all positives: AUROC %v, AP %v; want NaN, 1", m.AUROC, m.AveragePrecision)
	}
	if !math.IsNaN(ExactAUROC([]float64{1, 2}, []bool{false, false})) || !math.IsNaN(ExactAP([]float64{1, 2}, []bool{false, false})) {
		t.Error("ExactAUROC/ExactAP without positives should be NaN")
	}
}

func TestPoolingAndMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	d := overlapping(r, 30000, 0.05, 1)
	whole := NewAccumulator(512)
	addAll(t, whole, d)

	pooled := NewAccumulator(512)
	parts := []*Accumulator{NewAccumulator(512), NewAccumulator(512)}
	for i, lo := 0, 0; lo < len(d.scores); i++ {
		hi := min(len(d.scores), lo+1+r.IntN(5000))
		chunk := dataset{d.scores[lo:hi], d.labels[lo:hi], d.decisions[lo:hi]}
		addAll(t, pooled, chunk)
		addAll(t, parts[i%2], chunk)
		lo = hi
	}
	if err := parts[0].Merge(parts[1]); err != nil {
		t.Fatal(err)
	}
	want := whole.Result()
	for name, acc := range map[string]*Accumulator{"pooled": pooled, "merged": parts[0]} {
		if got := acc.Result(); got != want {
			t.Errorf("%s: %+v\nwant %+v", name, got, want)
		}
		f1, t1 := acc.ROCCurve()
		f2, t2 := whole.ROCCurve()
		if !slices.Equal(f1, f2) || !slices.Equal(t1, t2) {
			t.Errorf("%s: ROC curves differ", name)
		}
	}
	if pooled.Count() != int64(len(d.scores)) {
		t.Errorf("Count = %d, want %d", pooled.Count(), len(d.scores))
	}
	pooled.Reset()
	if m := pooled.Result(); pooled.Count() != 0 || m.TP+m.FP+m.FN+m.TN != 0 || !math.IsNaN(m.AUROC) || !math.IsNaN(m.AveragePrecision) {
		t.Errorf("after Reset: %+v", pooled.Result())
	}
	if err := whole.Merge(NewAccumulator(256)); err == nil {
		t.Error("merge of different bin counts accepted")
	}
}

func TestMappings(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	n := 100000
	logits := dataset{make([]float32, n), make([]bool, n), nil}
	for i := range n {
		logits.labels[i] = r.Float64() < 0.02
		m := -1.5
		if logits.labels[i] {
			m = 0.5
		}
		logits.scores[i] = float32(m + r.NormFloat64())
	}
	exAUC, exAP := ExactAUROC(logits.float64s(), logits.labels), ExactAP(logits.float64s(), logits.labels)
	tests := []struct {
		name string
		opt  Options
	}{
		{"sigmoid", Options{Mapping: MapSigmoid}},
		{"range", Options{Mapping: MapRange, Lo: -6, Hi: 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAccumulatorOptions(tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			addAll(t, a, logits)
			m := a.Result()
			if math.Abs(m.AUROC-exAUC) > 1e-3 || math.Abs(m.AveragePrecision-exAP) > 1e-3 {
				t.Errorf("AUROC %.5f (exact %.5f), AP %.5f (exact %.5f)", m.AUROC, exAUC, m.AveragePrecision, exAP)
			}
			// Without decisions the threshold is the mapped 0.5: logit 0 for both mappings here.
			var tp int64
			for i, s := range logits.scores {
				if s > 0 && logits.labels[i] {
					tp++
				}
			}
			if m.TP != tp {
				t.Errorf("TP %d, want %d (raw score > 0)", m.TP, tp)
			}
		})
	}
}

// TestBestF1Threshold checks that the returned threshold, applied to the raw scores with >=,
// reproduces the returned F1 exactly, and that no threshold over the exact data does better than
// the bin resolution allows.
func TestBestF1Threshold(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	d := structured(r, 6, 64, 64)
	a := NewAccumulator(0)
	addAll(t, a, d)
	thr, f1 := a.BestF1Threshold()
	f1At := func(th float64) float64 {
		var tp, fp, fn float64
		for i, s := range d.scores {
			p := float64(s) >= th
			switch {
			case p && d.labels[i]:
				tp++
			case p:
				fp++
			case d.labels[i]:
				fn++
			}
		}
		return 2 * tp / (2*tp + fp + fn)
	}
	if got := f1At(thr); math.Abs(got-f1) > 1e-12 {
		t.Errorf("F1 at threshold %v = %.12f, reported %.12f", thr, got, f1)
	}
	// Exhaustive sweep over every distinct score as a threshold (sort-based, exact).
	idx := make([]int, len(d.scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int { return -cmp.Compare(d.scores[i], d.scores[j]) })
	var p float64
	for _, l := range d.labels {
		if l {
			p++
		}
	}
	best, tp, fp := 0.0, 0.0, 0.0
	for i := 0; i < len(idx); {
		j := i
		for ; j < len(idx) && d.scores[idx[j]] == d.scores[idx[i]]; j++ {
			if d.labels[idx[j]] {
				tp++
			} else {
				fp++
			}
		}
		best = math.Max(best, 2*tp/(2*tp+fp+(p-tp)))
		i = j
	}
	if best > f1+2e-3 || f1 > best+1e-12 {
		t.Errorf("exhaustive best F1 %.6f, binned %.6f", best, f1)
	}
}

func TestBadInput(t *testing.T) {
	a := NewAccumulator(8)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"targets length", a.Add([]float32{0.1, 0.2}, []bool{true}, nil), "2 scores but 1 targets"},
		{"decisions length", a.Add([]float32{0.1}, []bool{true}, []bool{true, false}), "1 scores but 2 decisions"},
		{"nan", a.Add([]float32{0.1, float32(math.NaN())}, []bool{true, false}, nil), "score 1 is NaN"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, tc.err, tc.want)
		}
	}
	if a.Count() != 0 {
		t.Errorf("failed Adds left %d pixels behind", a.Count())
	}
	for _, o := range []Options{{Bins: -1}, {Bins: MaxBins + 1}, {Mapping: MapRange, Lo: 1, Hi: 1}, {Mapping: 7}} {
		if _, err := NewAccumulatorOptions(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if ExactAUROC([]float64{1}, nil) == ExactAUROC([]float64{1}, nil) {
		t.Error("ExactAUROC with mismatched lengths should be NaN")
	}
}

// TestFixedMemory adds 10M pixels and requires zero allocations per Add: the accumulator's state
// is the fixed histogram, whatever the number of pixels.
func TestFixedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 60 MB of input")
	}
	const n = 10_000_000
	scores := make([]float32, n)
	targets := make([]bool, n)
	decisions := make([]bool, n)
	r := rand.New(rand.NewPCG(51, 52))
	for i := range scores {
		scores[i] = r.Float32()
		targets[i] = r.UintN(100) == 0
		decisions[i] = scores[i] > 0.9
	}
	a := NewAccumulator(0)
	for _, dec := range [][]bool{decisions, nil} {
		allocs := testing.AllocsPerRun(2, func() {
			if err := a.Add(scores, targets, dec); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Add of %d pixels (decisions nil: %v) made %v allocations, want 0", n, dec == nil, allocs)
		}
	}
	if len(a.counts) != 2*DefaultBins {
		t.Errorf("histogram grew to %d entries", len(a.counts))
	}
	if a.Count() != 6*n {
		t.Errorf("Count = %d, want %d", a.Count(), 6*n)
	}
}

// With an exact buffer, every ranking result is the sorted computation's: AUROC and AP equal
// ExactAUROC/ExactAP (and gonum's AUROC), the best-F1 threshold is the brute-force one over
// every distinct score, and the curves run from (0,0) to (1,1) monotonically.
func TestExactBuffer(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	d := overlapping(r, 20000, 0.07, 1.3)
	for i := range d.scores { // unbounded and tied
		d.scores[i] = float32(math.Round(float64(d.scores[i])*300) * 7)
	}
	a, err := NewAccumulatorOptions(Options{Mapping: MapAdaptive, ExactLimit: len(d.scores)})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 4; k++ {
		lo, hi := k*5000, (k+1)*5000
		if err := a.Add(d.scores[lo:hi], d.labels[lo:hi], nil); err != nil {
			t.Fatal(err)
		}
	}
	m := a.Result()
	sc := d.float64s()
	if !m.Exact || !a.Exact() || m.AUROCMaxError != 0 || m.APMaxError != 0 {
		t.Fatalf("not exact: %+v", m)
	}
	if math.Abs(m.AUROC-ExactAUROC(sc, d.labels)) > 1e-12 || math.Abs(m.AUROC-gonumAUROC(sc, d.labels)) > 1e-9 || math.Abs(m.AveragePrecision-ExactAP(sc, d.labels)) > 1e-12 {
		t.Errorf("auroc %v (exact %v, gonum %v), ap %v (exact %v)", m.AUROC, ExactAUROC(sc, d.labels), gonumAUROC(sc, d.labels), m.AveragePrecision, ExactAP(sc, d.labels))
	}
	if _, ok := m.Map()["auroc_max_error"]; ok {
		t.Error("exact metrics state an error bound")
	}
	// brute-force best F1 over "score >= thr" for every distinct score
	var p float64
	for _, l := range d.labels {
		if l {
			p++
		}
	}
	bestF, bestT := -1.0, 0.0
	distinct := slices.Clone(sc)
	slices.Sort(distinct)
	distinct = slices.Compact(distinct)
	for i := len(distinct) - 1; i >= 0; i-- {
		thr := distinct[i]
		var tp, fp float64
		for j, s := range sc {
			if s >= thr {
				if d.labels[j] {
					tp++
				} else {
					fp++
				}
			}
		}
		if f := 2 * tp / (2*tp + fp + (p - tp)); f > bestF {
			bestF, bestT = f, thr
		}
	}
	thr, f1 := a.BestF1Threshold()
	if thr != bestT || math.Abs(f1-bestF) > 1e-12 {
		t.Errorf("best F1 threshold %v (F1 %v), brute force %v (%v)", thr, f1, bestT, bestF)
	}
	for _, c := range [][2][]float64{func() (o [2][]float64) { o[0], o[1] = a.ROCCurve(); return }(), func() (o [2][]float64) { o[0], o[1] = a.PRCurve(); return }()} {
		x, y := c[0], c[1]
		if len(x) < 10 || len(x) > 2100 || x[len(x)-1] != 1 || !slices.IsSorted(x) {
			t.Errorf("curve with %d points, last x %v, sorted %v", len(x), x[len(x)-1], slices.IsSorted(x))
		}
		_ = y
	}
}

// The adaptive histogram widens its range for later scores far outside the first ones and
// for ±Inf, and stays within its stated bounds of the exact values (here wide: the first
// quarter's scores end up in a few bins of the ×1000 final range); merging exact buffers
// equals adding everything to one.
func TestAdaptiveRangeAndMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	d := overlapping(r, 30000, 0.05, 1.0)
	for i := range d.scores {
		d.scores[i] = float32(float64(d.scores[i]) * math.Pow(10, float64(i/7500))) // ×1 … ×1000
	}
	d.scores[5], d.scores[6], d.scores[7] = float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Inf(1))
	d.labels[5] = true
	a, err := NewAccumulatorOptions(Options{Mapping: MapAdaptive, Bins: 2048, ExactLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 30; k++ {
		if err := a.Add(d.scores[k*1000:(k+1)*1000], d.labels[k*1000:(k+1)*1000], d.decisions[k*1000:(k+1)*1000]); err != nil {
			t.Fatal(err)
		}
	}
	m := a.Result()
	sc := d.float64s()
	ea, ep := ExactAUROC(sc, d.labels), ExactAP(sc, d.labels)
	if m.Exact || math.Abs(m.AUROC-ea) > m.AUROCMaxError || math.Abs(m.AveragePrecision-ep) > m.APMaxError || m.AUROCMaxError > 0.05 {
		t.Errorf("adaptive: auroc %v ±%v (exact %v), ap %v ±%v (exact %v)", m.AUROC, m.AUROCMaxError, ea, m.AveragePrecision, m.APMaxError, ep)
	}
	if m.TP+m.FP+m.FN+m.TN != 30000 {
		t.Errorf("counts lost: %+v", m)
	}
	// exact buffers merge
	x, _ := NewAccumulatorOptions(Options{Mapping: MapAdaptive, ExactLimit: 30000})
	y, _ := NewAccumulatorOptions(Options{Mapping: MapAdaptive, ExactLimit: 30000})
	if err := x.Add(d.scores[:12000], d.labels[:12000], nil); err != nil {
		t.Fatal(err)
	}
	if err := y.Add(d.scores[12000:], d.labels[12000:], nil); err != nil {
		t.Fatal(err)
	}
	if err := x.Merge(y); err != nil {
		t.Fatal(err)
	}
	if mx := x.Result(); !mx.Exact || math.Abs(mx.AUROC-ea) > 1e-12 || math.Abs(mx.AveragePrecision-ep) > 1e-12 {
		t.Errorf("merged exact: %v %v, want %v %v", mx.AUROC, mx.AveragePrecision, ea, ep)
	}
	// adaptive histograms do not merge
	if err := a.Merge(a); err == nil {
		t.Error("adaptive histograms merged")
	}
}
