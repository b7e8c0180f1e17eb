package scene

import (
	"fmt"
	"math"
	"sort"

	"github.com/spectraclip/spectraclip/config"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
)

// Value is a metric that may be undefined: JSON null, "undefined" in tables, never 0 or NaN.
type Value struct {
	V       float64
	Defined bool
}

// Def returns a defined value, or an undefined one for NaN.
func Def(v float64) Value { return Value{V: v, Defined: !math.IsNaN(v) && !math.IsInf(v, 0)} }

// Undefined is a metric without a value.
var Undefined = Value{}

// float is v as a config.Float, whose JSON and text forms Value shares: NaN when undefined.
func (v Value) float() config.Float {
	if !v.Defined {
		return config.Float(math.NaN())
	}
	return config.Float(v.V)
}

// MarshalJSON writes the number or null.
func (v Value) MarshalJSON() ([]byte, error) { return v.float().MarshalJSON() }

// UnmarshalJSON reads a number or null.
func (v *Value) UnmarshalJSON(b []byte) error {
	var f config.Float
	if err := f.UnmarshalJSON(b); err != nil {
		return err
	}
	if *v = Def(float64(f)); !v.Defined {
		*v = Undefined // null
	}
	return nil
}

func (v Value) String() string { return config.FormatMetric(float64(v.float())) }

// PixelMetrics are a detector's metrics on one split's pixels.
type PixelMetrics struct {
	AUROC Value `json:"auroc"`
	AP    Value `json:"average_precision"`
	IoU   Value `json:"iou"`
	F1    Value `json:"f1_score"`
	// Threshold is the decision threshold (score >= threshold is an anomaly): the F1-best on
	// the validation pixels, or the 0.99 quantile of the scene's scores under split none.
	Threshold Value `json:"threshold"`
	Anomalies int   `json:"anomaly_pixels"`
	Pixels    int   `json:"pixels"`
}

// Evaluate scores a whole-scene score map (H·W) on the test pixels of ps, with the decision
// threshold chosen on the val pixels (F1-best; label-free 0.99 quantile of every score under
// the rule none, where val and test are the same pixels).
func Evaluate(scores []float32, anom []bool, ps *PixelSplit) (PixelMetrics, error) {
	if len(scores) != len(anom) || len(anom) != len(ps.Masks[2]) {
		return PixelMetrics{}, fmt.Errorf("scene metrics: %d scores, %d labels, %d pixels", len(scores), len(anom), len(ps.Masks[2]))
	}
	for i, s := range scores {
		if math.IsNaN(float64(s)) {
			return PixelMetrics{}, fmt.Errorf("scene metrics: score of pixel %d is NaN", i)
		}
	}
	pick := func(mask []bool) ([]float32, []bool) {
		var s []float32
		var l []bool
		for i, m := range mask {
			if m {
				s = append(s, scores[i])
				l = append(l, anom[i])
			}
		}
		return s, l
	}
	thr := math.NaN()
	if ps.Rule == "none" {
		s := append([]float32(nil), scores...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		thr = float64(s[int(math.Floor(0.99*float64(len(s)-1)))])
	} else {
		vs, vl := pick(ps.Masks[1])
		acc, err := metriccore.NewAccumulatorOptions(metriccore.Options{Mapping: metriccore.MapAdaptive, ExactLimit: len(vs) + 1})
		if err != nil {
			return PixelMetrics{}, err
		}
		if err := acc.Add(vs, vl, make([]bool, len(vs))); err != nil {
			return PixelMetrics{}, err
		}
		thr, _ = acc.BestF1Threshold()
	}
	ts, tl := pick(ps.Masks[2])
	dec := make([]bool, len(ts))
	for i, s := range ts {
		dec[i] = !math.IsNaN(thr) && float64(s) >= thr
	}
	acc, err := metriccore.NewAccumulatorOptions(metriccore.Options{Mapping: metriccore.MapAdaptive, ExactLimit: len(ts) + 1})
	if err != nil {
		return PixelMetrics{}, err
	}
	if err := acc.Add(ts, tl, dec); err != nil {
		return PixelMetrics{}, err
	}
	r := acc.Result()
	m := PixelMetrics{Pixels: len(ts), Threshold: Def(thr)}
	for _, l := range tl {
		if l {
			m.Anomalies++
		}
	}
	m.AUROC, m.AP = Def(r.AUROC), Def(r.AveragePrecision)
	if m.Anomalies > 0 && m.Threshold.Defined {
		m.IoU, m.F1 = Def(r.IoU), Def(r.F1)
	}
	if m.Anomalies == 0 || m.Anomalies == len(ts) {
		m.AUROC = Undefined
	}
	if m.Anomalies == 0 {
		m.AP = Undefined
	}
	return m, nil
}
