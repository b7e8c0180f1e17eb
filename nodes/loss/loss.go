// Package loss holds the loss and regulariser nodes of the workflow. Each outputs a scalar
// `loss` that the trainer sums for backpropagation; all run only in train, val and test.
package loss

import (
	"fmt"
	"math"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{Name: "IoULoss", Aliases: []string{"cuvis_ai.node.losses.IoULoss"},
		Factory: NewIoULoss, Doc: "1 − soft IoU over the whole batch"})
	nodes.Register(nodes.TypeInfo{Name: "DistinctnessLoss", Aliases: []string{"cuvis_ai.node.losses.DistinctnessLoss"},
		Factory: NewDistinctnessLoss, Doc: "mean cosine similarity between selector rows"})
	nodes.Register(nodes.TypeInfo{Name: "SelectorEntropyRegularizer", Aliases: []string{"cuvis_ai.node.losses.SelectorEntropyRegularizer"},
		Factory: NewSelectorEntropyRegularizer, Doc: "entropy of a selection weight vector"})
	nodes.Register(nodes.TypeInfo{Name: "SelectorDiversityRegularizer", Aliases: []string{"cuvis_ai.node.losses.SelectorDiversityRegularizer"},
		Factory: NewSelectorDiversityRegularizer, Doc: "−variance of selection weights"})
	nodes.Register(nodes.TypeInfo{Name: "AnomalyBCEWithLogits", Aliases: []string{"cuvis_ai.node.losses.AnomalyBCEWithLogits"},
		Factory: NewAnomalyBCEWithLogits, Doc: "binary cross-entropy on anomaly logits"})
}

var lossStages = []nodes.Stage{nodes.StageTrain, nodes.StageVal, nodes.StageTest}

var lossOut = []nodes.PortSpec{{Name: "loss", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape()}}

type base struct {
	nodes.Base
	params map[string]any
}

func (b *base) Stages() []nodes.Stage     { return lossStages }
func (b *base) Params() map[string]any    { return b.params }
func (b *base) Outputs() []nodes.PortSpec { return lossOut }
func (b *base) wrap(err error) error      { return fmt.Errorf("node %q: %w", b.Name(), err) }
func newBase(name, typ string) base       { return base{Base: nodes.Base{NodeName: name, TypeName: typ}} }

// ---- IoU ----

// IoULoss is weight·(1 − soft IoU) computed once over the whole batch (not a per-image
// mean), after mapping the predictions to [0,1] by sigmoid, clamping, or one global
// min-max over the batch (p = 0.5 everywhere when the batch is constant).
type IoULoss struct {
	base
	Weight, Smooth float64
	Method         string
}

// NewIoULoss is the registry factory.
func NewIoULoss(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &IoULoss{base: newBase(name, "IoULoss")}
	n.Weight = p.Float("weight", 1)
	n.Smooth = p.Float("smooth", 1e-6)
	n.Method = p.String("normalize_method", "sigmoid", "sigmoid", "clamp", "minmax")
	p.Check(n.Smooth >= 0, "smooth", "must be >= 0, got %g", n.Smooth)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares predictions and targets.
func (n *IoULoss) Inputs() []nodes.PortSpec {
	return append(predictionTargetPorts(), nodes.PortSpec{Name: "valid", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1"), Optional: true,
		Doc: "pixels the loss counts (the train pixels of a whole-scene run); absent = all"})
}

// Forward computes the loss.
func (n *IoULoss) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	x, t, err := predictionsAndTargets(n.Name(), in)
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	var p *torch.Tensor
	switch n.Method {
	case "sigmoid":
		p = s.Sigmoid(x)
	case "clamp":
		p = s.Clamp(x, 0, 1)
	case "minmax":
		mn, mx := s.Amin(x, false), s.Amax(x, false)
		if err := s.Err(); err != nil {
			return nil, n.wrap(err)
		}
		lo, err1 := mn.Item()
		hi, err2 := mx.Item()
		if err1 != nil || err2 != nil {
			return nil, n.wrap(fmt.Errorf("min/max: %v %v", err1, err2))
		}
		if hi > lo {
			p = s.Div(s.Sub(x, mn), s.AddScalar(s.Sub(mx, mn), n.Smooth))
		} else {
			p = s.FullLike(x, 0.5)
		}
	}
	tf := s.ToDType(s.Reshape(t, x.Shape()...), x.DType())
	if v, ok := in["valid"].(*torch.Tensor); ok && v.Valid() {
		if v.Numel() != x.Numel() {
			return nil, n.wrap(fmt.Errorf("valid %v and predictions %v differ in size", v.Shape(), x.Shape()))
		}
		vf := s.ToDType(s.Reshape(v, x.Shape()...), x.DType())
		p, tf = s.Mul(p, vf), s.Mul(tf, vf)
	}
	inter := s.Sum(s.Mul(p, tf), false)
	union := s.Sub(s.Add(s.Sum(p, false), s.Sum(tf, false)), inter)
	iou := s.Div(s.AddScalar(inter, n.Smooth), s.AddScalar(union, n.Smooth))
	loss := s.MulScalar(s.RSubScalar(iou, 1), n.Weight)
	if err := s.Err(); err != nil {
		return nil, n.wrap(err)
	}
	return map[string]any{"loss": loss}, nil
}

// ---- distinctness ----

// DistinctnessLoss is weight · mean cosine similarity over all K(K−1)/2 pairs of selector
// rows. The reference averages only the non-zero similarities and so returns NaN when
// every pair is orthogonal (hard one-hot weights picking distinct bands); here orthogonal
// pairs count as 0, so that case gives 0. With strictly positive (softmax) weights, as in
// training, both agree.
type DistinctnessLoss struct {
	base
	Weight, Eps float64
}

// NewDistinctnessLoss is the registry factory.
func NewDistinctnessLoss(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &DistinctnessLoss{base: newBase(name, "DistinctnessLoss")}
	n.Weight = p.Float("weight", 0.1)
	n.Eps = p.Float("eps", 1e-6)
	p.Check(n.Eps >= 0, "eps", "must be >= 0, got %g", n.Eps)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares the selection weights [K,T].
func (n *DistinctnessLoss) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "selection_weights", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("K", "T")}}
}

// Forward computes the loss.
func (n *DistinctnessLoss) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	w, err := nodes.TensorInput(n.Name(), in, "selection_weights")
	if err != nil {
		return nil, err
	}
	if w.Dim() != 2 {
		return nil, fmt.Errorf("node %q: selection_weights has shape %v, want [K,T]", n.Name(), w.Shape())
	}
	s := ctx.Scope
	k := w.Shape()[0]
	if k < 2 {
		return map[string]any{"loss": s.Sum(s.MulScalar(w, 0), false)}, s.Err()
	}
	wn := s.Div(w, s.ClampMin(s.Norm(w, 2, true, 1), n.Eps))
	gram := s.Matmul(wn, s.T(wn))
	pairs := float64(k*(k-1)) / 2
	loss := s.MulScalar(s.Sum(s.Triu(gram, 1), false), n.Weight/pairs)
	if err := s.Err(); err != nil {
		return nil, n.wrap(err)
	}
	return map[string]any{"loss": loss}, nil
}

// ---- entropy / diversity ----

// SelectorEntropyRegularizer penalises (or rewards) the entropy of a selection weight
// vector: p = w/(Σw+eps), H = −Σ p·log(p+eps); loss = weight·(H−target)² when
// target_entropy is set, else −weight·H.
type SelectorEntropyRegularizer struct {
	base
	Weight, Eps float64
	Target      float64 // NaN when unset
}

// NewSelectorEntropyRegularizer is the registry factory.
func NewSelectorEntropyRegularizer(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &SelectorEntropyRegularizer{base: newBase(name, "SelectorEntropyRegularizer")}
	n.Weight = p.Float("weight", 0.01)
	n.Target = p.Float("target_entropy", math.NaN())
	n.Eps = p.Float("eps", 1e-6)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	if math.IsNaN(n.Target) {
		n.params["target_entropy"] = nil
	}
	return n, nil
}

// Inputs declares the weights (flattened to one vector).
func (n *SelectorEntropyRegularizer) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "weights", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("-1")}}
}

// Forward computes the loss.
func (n *SelectorEntropyRegularizer) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	w, err := nodes.TensorInput(n.Name(), in, "weights")
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	w = s.Reshape(w, -1)
	p := s.Div(w, s.AddScalar(s.Sum(w, false), n.Eps))
	h := s.Neg(s.Sum(s.Mul(p, s.Log(s.AddScalar(p, n.Eps))), false))
	var loss *torch.Tensor
	if math.IsNaN(n.Target) {
		loss = s.MulScalar(h, -n.Weight)
	} else {
		loss = s.MulScalar(s.Square(s.SubScalar(h, n.Target)), n.Weight)
	}
	if err := s.Err(); err != nil {
		return nil, n.wrap(err)
	}
	return map[string]any{"loss": loss}, nil
}

// SelectorDiversityRegularizer rewards spread-out weights: loss = −weight·Var(w)
// (population variance).
type SelectorDiversityRegularizer struct {
	base
	Weight float64
}

// NewSelectorDiversityRegularizer is the registry factory.
func NewSelectorDiversityRegularizer(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &SelectorDiversityRegularizer{base: newBase(name, "SelectorDiversityRegularizer")}
	n.Weight = p.Float("weight", 0.01)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares the weights.
func (n *SelectorDiversityRegularizer) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "weights", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("-1")}}
}

// Forward computes the loss.
func (n *SelectorDiversityRegularizer) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	w, err := nodes.TensorInput(n.Name(), in, "weights")
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	w = s.Reshape(w, -1)
	mean := s.Mean(w, false)
	v := s.Mean(s.Square(s.Sub(w, mean)), false)
	loss := s.MulScalar(v, -n.Weight)
	if err := s.Err(); err != nil {
		return nil, n.wrap(err)
	}
	return map[string]any{"loss": loss}, nil
}

// ---- BCE ----

// AnomalyBCEWithLogits is weight · mean binary cross-entropy of logits against boolean
// targets, with an optional pos_weight on the positive term (as
// torch.nn.BCEWithLogitsLoss): l = (1−t)·x + (1+(pw−1)·t)·softplus(−x).
type AnomalyBCEWithLogits struct {
	base
	Weight, PosWeight float64
	Reduction         string
}

// NewAnomalyBCEWithLogits is the registry factory.
func NewAnomalyBCEWithLogits(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &AnomalyBCEWithLogits{base: newBase(name, "AnomalyBCEWithLogits")}
	n.Weight = p.Float("weight", 1)
	n.PosWeight = p.Float("pos_weight", 1)
	n.Reduction = p.String("reduction", "mean", "mean", "sum")
	p.Check(n.PosWeight > 0, "pos_weight", "must be > 0, got %g", n.PosWeight)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares predictions (logits) and targets.
func (n *AnomalyBCEWithLogits) Inputs() []nodes.PortSpec {
	return predictionTargetPorts()
}

// Forward computes the loss.
func (n *AnomalyBCEWithLogits) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	x, t, err := predictionsAndTargets(n.Name(), in)
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	tf := s.ToDType(s.Reshape(t, x.Shape()...), x.DType())
	neg := s.Mul(s.RSubScalar(tf, 1), x)
	coef := s.AddScalar(s.MulScalar(tf, n.PosWeight-1), 1)
	l := s.Add(neg, s.Mul(coef, s.Softplus(s.Neg(x))))
	var red *torch.Tensor
	if n.Reduction == "sum" {
		red = s.Sum(l, false)
	} else {
		red = s.Mean(l, false)
	}
	loss := s.MulScalar(red, n.Weight)
	if err := s.Err(); err != nil {
		return nil, n.wrap(err)
	}
	return map[string]any{"loss": loss}, nil
}

// predictionTargetPorts are the inputs of the pixel losses: scores and the binary mask.
func predictionTargetPorts() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "predictions", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "targets", DType: torch.Bool, AnyDType: true, Shape: nodes.Shape("B", "H", "W", "1")},
	}
}

// predictionsAndTargets reads the two inputs of a pixel loss and checks they match in size.
func predictionsAndTargets(node string, in map[string]any) (x, t *torch.Tensor, err error) {
	if x, err = nodes.TensorInput(node, in, "predictions"); err != nil {
		return nil, nil, err
	}
	if t, err = nodes.TensorInput(node, in, "targets"); err != nil {
		return nil, nil, err
	}
	if x.Numel() != t.Numel() {
		return nil, nil, fmt.Errorf("node %q: predictions %v and targets %v differ in size", node, x.Shape(), t.Shape())
	}
	return x, t, nil
}
