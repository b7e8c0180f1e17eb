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
// memory until OOM. Here counts and two score histograms are pooled over the epoch in
// fixed memory (metriccore), so the epoch value equals the value over one big batch; AUROC
// is reported too when logits are connected.
type AnomalyMetrics struct {
	nodes.Base
	params   map[string]any
	Bins     int
	Mapping  string
	acc      *metriccore.Accumulator
	scores   []float32
	targets  []bool
	dec      []bool
	hasScore bool
	stage    nodes.Stage
	epoch    int
	started  bool
}

// NewAnomalyMetrics is the registry factory. score_mapping says how logits are mapped to
// [0,1] for the ranking metrics: sigmoid (as the reference) or clamp (scores already in
// [0,1], e.g. AdaCLIP maps; uses the histogram bins more finely).
func NewAnomalyMetrics(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &AnomalyMetrics{Base: nodes.Base{NodeName: name, TypeName: "AnomalyMetrics"}}
	n.Bins = p.Int("bins", metriccore.DefaultBins)
	n.Mapping = p.String("score_mapping", "sigmoid", "sigmoid", "clamp")
	p.Check(n.Bins >= 1 && n.Bins <= metriccore.MaxBins, "bins", "must be in 1..%d, got %d", metriccore.MaxBins, n.Bins)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	m := metriccore.MapSigmoid
	if n.Mapping == "clamp" {
		m = metriccore.MapClamp
	}
	acc, err := metriccore.NewAccumulatorOptions(metriccore.Options{Bins: n.Bins, Mapping: m})
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	n.acc = acc
	return n, nil
}

// Inputs declares decisions, targets and the optional logits.
func (n *AnomalyMetrics) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "decisions", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "targets", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "logits", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("B", "H", "W", "1"), Optional: true},
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

// Count returns the number of pixels pooled.
func (n *AnomalyMetrics) Count() int64 { return n.acc.Count() }

// Result returns the pooled metrics under bare names (precision, recall, f1_score, iou and,
// when logits were seen, average_precision and auroc); the trainer prefixes the node name.
func (n *AnomalyMetrics) Result() map[string]float64 {
	m := n.acc.Result().Map()
	if !n.hasScore {
		delete(m, "average_precision")
		delete(m, "auroc")
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
	if err := n.acc.Add(n.scores, n.targets, n.dec); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"metrics": n.Result()}, nil
}
