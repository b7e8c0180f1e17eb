// Package metric holds the anomaly-detection metrics node; the pooled accumulator itself
// lives in metric/core.
package metric

import (
	"fmt"

	"github.com/spectraclip/spectraclip/nodes"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{Name: "AnomalyMetrics",
		Aliases: []string{"cuvis_ai.node.metrics.AnomalyDetectionMetrics"},
		Factory: NewAnomalyMetrics,
		Doc:     "pixel-level precision, recall, F1, IoU (and AP, AUROC from logits) pooled over an epoch"})
}

// AnomalyMetrics pools pixel-level metrics over every batch of a val/test epoch.
//
// The reference computed torchmetrics values per batch and let Lightning average them
// (batch-size weighted), and its exact average precision kept every prediction, leaking
// memory until OOM. Here the thresholded metrics come from pooled integer counts, and AUROC
// and AP from the raw scores (no squashing, so unbounded scores such as RX distances keep
// their order): exact, sorted, while the epoch's pixels fit under exact_max_pixels (8 bytes
// each), then from a histogram of `bins` bins whose range is found in the epoch's own scores,
// with the approximation bound reported as auroc_max_error and average_precision_max_error.
// The epoch value equals the value over one big batch.
type AnomalyMetrics struct {
	nodes.Base
	params   map[string]any
	Bins     int
	Mapping  string
	Exact    int
	acc      *metriccore.Accumulator
	scores   []float32
	targets  []bool
	dec      []bool
	valid    []bool
	hasScore bool
	stage    nodes.Stage
	epoch    int
	started  bool
}

// NewAnomalyMetrics is the registry factory. exact_max_pixels bounds the pixels kept for the
// exact ranking metrics (0 = histogram only). score_mapping chooses the fallback histogram's
// binning: adaptive (the default: the range of the epoch's own scores), sigmoid (the
// reference's, for logits) or clamp (scores known to lie in [0,1]).
func NewAnomalyMetrics(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &AnomalyMetrics{Base: nodes.Base{NodeName: name, TypeName: "AnomalyMetrics"}}
	n.Bins = p.Int("bins", metriccore.DefaultBins)
	n.Mapping = p.String("score_mapping", "adaptive", "adaptive", "sigmoid", "clamp")
	n.Exact = p.Int("exact_max_pixels", metriccore.DefaultExactLimit)
	p.Check(n.Bins >= 1 && n.Bins <= metriccore.MaxBins, "bins", "must be in 1..%d, got %d", metriccore.MaxBins, n.Bins)
	p.Check(n.Exact >= 0 && n.Exact <= 1<<30, "exact_max_pixels", "must be in 0..%d, got %d", 1<<30, n.Exact)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	acc, err := metriccore.NewAccumulatorOptions(n.options())
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	n.acc = acc
	return n, nil
}

func (n *AnomalyMetrics) options() metriccore.Options {
	m := metriccore.MapAdaptive
	switch n.Mapping {
	case "sigmoid":
		m = metriccore.MapSigmoid
	case "clamp":
		m = metriccore.MapClamp
	}
	return metriccore.Options{Bins: n.Bins, Mapping: m, ExactLimit: n.Exact}
}

// Inputs declares decisions, targets and the optional logits.
func (n *AnomalyMetrics) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "decisions", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "targets", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "logits", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("B", "H", "W", "1"), Optional: true},
		{Name: "valid", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1"), Optional: true, Doc: "pixels pooled (a whole-scene split); absent = all"},
	}
}

// Outputs declares the metrics value (map[string]float64 pooled so far).
func (n *AnomalyMetrics) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "metrics", Kind: nodes.KindValue, Doc: "map[string]float64 pooled over the epoch so far"}}
}

// Stages: val and test only, as the reference.
func (n *AnomalyMetrics) Stages() []nodes.Stage {
	return []nodes.Stage{nodes.StageVal, nodes.StageTest}
}

// Params returns the constructor parameters with defaults filled in.
func (n *AnomalyMetrics) Params() map[string]any { return n.params }

// Reset forgets the pooled pixels (the trainer calls it at the start of an epoch; Forward
// also resets by itself when the stage or epoch changes).
func (n *AnomalyMetrics) Reset() {
	n.acc.Reset()
	n.hasScore = false
	n.started = false
}

// Take returns the accumulator that holds what was pooled since the last reset (for curves
// and threshold calibration) and gives the node a fresh one, so that a later epoch does not
// change what the caller holds.
func (n *AnomalyMetrics) Take() *metriccore.Accumulator {
	acc := n.acc
	n.acc, _ = metriccore.NewAccumulatorOptions(n.options())
	n.hasScore = false
	n.started = false
	return acc
}

// HasScores reports whether logits were pooled (AUROC and AP are reported only then).
func (n *AnomalyMetrics) HasScores() bool { return n.hasScore }

// Count returns the number of pixels pooled.
func (n *AnomalyMetrics) Count() int64 { return n.acc.Count() }

// Result returns the pooled metrics under bare names (precision, recall, f1_score, iou and,
// when logits were seen, average_precision and auroc); the trainer prefixes the node name.
func (n *AnomalyMetrics) Result() map[string]float64 {
	m := n.acc.Result().Map()
	if !n.hasScore {
		for _, k := range []string{"average_precision", "auroc", "average_precision_max_error", "auroc_max_error"} {
			delete(m, k)
		}
	}
	return m
}

func grow[E any](b []E, n int) []E {
	if cap(b) < n {
		return make([]E, n)
	}
	return b[:n]
}

// Forward pools one batch.
func (n *AnomalyMetrics) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	get := func(port string, optional bool) (*torch.Tensor, error) {
		v, ok := in[port]
		if !ok || v == nil {
			if optional {
				return nil, nil
			}
			return nil, fmt.Errorf("node %q: input %q is missing", n.Name(), port)
		}
		t, ok := v.(*torch.Tensor)
		if !ok || !t.Valid() {
			return nil, fmt.Errorf("node %q: input %q: want a tensor, got %T", n.Name(), port, v)
		}
		return t, nil
	}
	d, err := get("decisions", false)
	if err != nil {
		return nil, err
	}
	t, err := get("targets", false)
	if err != nil {
		return nil, err
	}
	l, err := get("logits", true)
	if err != nil {
		return nil, err
	}
	num := int(d.Numel())
	if int(t.Numel()) != num || (l != nil && int(l.Numel()) != num) {
		return nil, fmt.Errorf("node %q: decisions %v, targets %v and logits differ in size", n.Name(), d.Shape(), t.Shape())
	}
	if n.started && (ctx.Stage != n.stage || ctx.Epoch != n.epoch) {
		n.Reset()
	}
	n.started, n.stage, n.epoch = true, ctx.Stage, ctx.Epoch
	n.dec = grow(n.dec, num)
	n.targets = grow(n.targets, num)
	if err := torch.CopyTo(d, n.dec); err != nil {
		return nil, fmt.Errorf("node %q: decisions: %w", n.Name(), err)
	}
	if err := torch.CopyTo(t, n.targets); err != nil {
		return nil, fmt.Errorf("node %q: targets: %w", n.Name(), err)
	}
	n.scores = grow(n.scores, num)
	if l != nil {
		if err := torch.CopyTo(l, n.scores); err != nil {
			return nil, fmt.Errorf("node %q: logits: %w", n.Name(), err)
		}
		n.hasScore = true
	} else {
		// Without logits the decisions stand in as scores; the ranking metrics are then
		// left out of Result.
		for i, b := range n.dec {
			n.scores[i] = 0
			if b {
				n.scores[i] = 1
			}
		}
	}
	v, err := get("valid", true)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if int(v.Numel()) != num {
			return nil, fmt.Errorf("node %q: valid %v and decisions %v differ in size", n.Name(), v.Shape(), d.Shape())
		}
		n.valid = grow(n.valid, num)
		if err := torch.CopyTo(v, n.valid); err != nil {
			return nil, fmt.Errorf("node %q: valid: %w", n.Name(), err)
		}
		k := 0
		for i, ok := range n.valid {
			if ok {
				n.scores[k], n.targets[k], n.dec[k] = n.scores[i], n.targets[i], n.dec[i]
				k++
			}
		}
		n.scores, n.targets, n.dec = n.scores[:k], n.targets[:k], n.dec[:k]
	}
	if err := n.acc.Add(n.scores, n.targets, n.dec); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"metrics": n.Result()}, nil
}
