// Package decide holds the deciders that turn anomaly score maps into boolean masks.
package decide

import (
	"fmt"
	"math"
	"sort"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{Name: "QuantileBinaryDecider",
		Aliases: []string{"cuvis_ai.deciders.binary_decider.QuantileBinaryDecider", "cuvis_ai.deciders.QuantileBinaryDecider"},
		Factory: NewQuantileBinaryDecider, Doc: "flags values at or above each image's q-quantile"})
	nodes.Register(nodes.TypeInfo{Name: "TwoStageBinaryDecider",
		Aliases: []string{"cuvis_ai.deciders.TwoStageBinaryDecider"},
		Factory: NewTwoStageBinaryDecider, Doc: "image-level top-k gate, then a per-image quantile (or absolute) pixel threshold"})
}

// Quantile returns the q-quantile of x along its last dim with linear interpolation
// (torch.quantile's definition), keeping that dim as size 1. It selects the two order
// statistics around q·(n−1) with kthvalue, which avoids the full sort of torch.quantile.
func Quantile(s *torch.Scope, x *torch.Tensor, q float64) *torch.Tensor {
	sh := x.Shape()
	if len(sh) == 0 {
		s.Fail(fmt.Errorf("quantile: scalar input"))
		return nil
	}
	n := sh[len(sh)-1]
	if n == 0 {
		s.Fail(fmt.Errorf("quantile: empty dim"))
		return nil
	}
	dim := int64(len(sh) - 1)
	pos := q * float64(n-1)
	lo := int64(math.Floor(pos))
	hi := int64(math.Ceil(pos))
	lo, hi = min(max(lo, 0), n-1), min(max(hi, 0), n-1)
	vlo, _ := s.KthValue(x, lo+1, dim, true)
	if hi == lo {
		return vlo
	}
	vhi, _ := s.KthValue(x, hi+1, dim, true)
	w := pos - float64(lo)
	// torch.lerp: start + w·(end−start) for w < 0.5, else end − (1−w)·(end−start).
	d := s.Sub(vhi, vlo)
	if w < 0.5 {
		return s.Add(vlo, s.MulScalar(d, w))
	}
	return s.Sub(vhi, s.MulScalar(d, 1-w))
}

var decisionsOut = []nodes.PortSpec{{Name: "decisions", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "-1")}}

var logitsIn = []nodes.PortSpec{{Name: "logits", DType: torch.Float32, AnyDType: true, Shape: nodes.Shape("B", "H", "W", "C")}}

// QuantileBinaryDecider flags every value at or above its image's q-quantile, so about
// (1−q) of the values of every image are flagged, anomaly-free ones included.
type QuantileBinaryDecider struct {
	nodes.Base
	params     map[string]any
	Q          float64
	ReduceDims []int // nil: all non-batch dims
}

// NewQuantileBinaryDecider is the registry factory.
func NewQuantileBinaryDecider(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &QuantileBinaryDecider{Base: nodes.Base{NodeName: name, TypeName: "QuantileBinaryDecider"}}
	n.Q = p.Float("quantile", 0.995)
	n.ReduceDims = p.Ints("reduce_dims", nil)
	if len(n.ReduceDims) == 0 {
		n.ReduceDims = nil // an empty list (as a saved pipeline writes nil) means "all non-batch dims"
	}
	p.Check(n.Q >= 0 && n.Q <= 1, "quantile", "must be in [0,1], got %g", n.Q)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares the score map.
func (n *QuantileBinaryDecider) Inputs() []nodes.PortSpec { return logitsIn }

// Outputs declares the decisions (same shape as the input).
func (n *QuantileBinaryDecider) Outputs() []nodes.PortSpec { return decisionsOut }

// Stages is nil: deciders run everywhere.
func (n *QuantileBinaryDecider) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *QuantileBinaryDecider) Params() map[string]any { return n.params }

// Forward thresholds the map.
func (n *QuantileBinaryDecider) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	x, err := nodes.TensorInput(n.Name(), in, "logits")
	if err != nil {
		return nil, err
	}
	sh := x.Shape()
	if len(sh) < 2 {
		return nil, fmt.Errorf("node %q: logits has shape %v, want a batch of maps", n.Name(), sh)
	}
	nd := len(sh)
	red := map[int]bool{}
	if n.ReduceDims == nil {
		for d := 1; d < nd; d++ {
			red[d] = true
		}
	} else {
		for _, d := range n.ReduceDims {
			if d < 0 {
				d += nd
			}
			if d < 0 || d >= nd {
				return nil, fmt.Errorf("node %q: reduce_dims %v out of range for shape %v", n.Name(), n.ReduceDims, sh)
			}
			red[d] = true
		}
	}
	var kept, reduced []int
	for d := 0; d < nd; d++ {
		if red[d] {
			reduced = append(reduced, d)
		} else {
			kept = append(kept, d)
		}
	}
	sort.Ints(reduced)
	perm := make([]int64, 0, nd)
	keptShape := []int64{}
	thrShape := make([]int64, nd)
	for _, d := range kept {
		perm = append(perm, int64(d))
		keptShape = append(keptShape, sh[d])
	}
	for _, d := range reduced {
		perm = append(perm, int64(d))
	}
	for d := 0; d < nd; d++ {
		thrShape[d] = sh[d]
		if red[d] {
			thrShape[d] = 1
		}
	}
	s := ctx.Scope
	var dec *torch.Tensor
	s.NoGrad(func() {
		xp := s.Reshape(s.Permute(x, perm...), append(keptShape, -1)...)
		thr := s.Reshape(Quantile(s, xp, n.Q), thrShape...)
		dec = s.Ge(x, thr)
	})
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"decisions": dec}, nil
}

// TwoStageBinaryDecider first scores each image by the mean of its top-k pixel scores
// (pixel score = max over channels, k = max(1, ceil(H·W·top_k_fraction))); images below
// image_threshold get an all-False mask, the others flag pixels whose score reaches the
// image's q-quantile over all values (or, when pixel_threshold is set — the reference's
// later absolute mode — that fixed value).
type TwoStageBinaryDecider struct {
	nodes.Base
	params         map[string]any
	ImageThreshold float64
	TopKFraction   float64
	Q              float64
	PixelThreshold float64 // NaN: quantile mode
}

// NewTwoStageBinaryDecider is the registry factory.
func NewTwoStageBinaryDecider(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &TwoStageBinaryDecider{Base: nodes.Base{NodeName: name, TypeName: "TwoStageBinaryDecider"}}
	n.ImageThreshold = p.Float("image_threshold", 0.5)
	n.TopKFraction = p.Float("top_k_fraction", 0.001)
	n.Q = p.Float("quantile", 0.995)
	n.PixelThreshold = p.Float("pixel_threshold", math.NaN())
	_ = p.Ints("reduce_dims", nil) // stored but unused, as in the reference
	if math.IsNaN(n.PixelThreshold) {
		p.Check(n.ImageThreshold >= 0 && n.ImageThreshold <= 1, "image_threshold", "must be in [0,1], got %g", n.ImageThreshold)
	}
	p.Check(n.TopKFraction > 0 && n.TopKFraction <= 1, "top_k_fraction", "must be in (0,1], got %g", n.TopKFraction)
	p.Check(n.Q >= 0 && n.Q <= 1, "quantile", "must be in [0,1], got %g", n.Q)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	if math.IsNaN(n.PixelThreshold) {
		n.params["pixel_threshold"] = nil
	}
	return n, nil
}

// Inputs declares the score map.
func (n *TwoStageBinaryDecider) Inputs() []nodes.PortSpec { return logitsIn }

// Outputs declares the [B,H,W,1] decisions.
func (n *TwoStageBinaryDecider) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "decisions", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")}}
}

// Stages is nil: deciders run everywhere.
func (n *TwoStageBinaryDecider) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *TwoStageBinaryDecider) Params() map[string]any { return n.params }

// ImageScores returns each image's gate score (mean of the top-k pixel scores), [B].
func (n *TwoStageBinaryDecider) ImageScores(s *torch.Scope, x *torch.Tensor) *torch.Tensor {
	sh := x.Shape()
	pix := s.Reshape(s.Amax(x, false, 3), sh[0], -1)
	k := max(1, int64(math.Ceil(float64(sh[1]*sh[2])*n.TopKFraction)))
	top, _ := s.TopK(pix, k, 1, true, false)
	return s.Mean(top, false, 1)
}

// Forward thresholds the map.
func (n *TwoStageBinaryDecider) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	x, err := nodes.TensorInput(n.Name(), in, "logits")
	if err != nil {
		return nil, err
	}
	sh := x.Shape()
	if len(sh) != 4 {
		return nil, fmt.Errorf("node %q: logits has shape %v, want [B,H,W,C]", n.Name(), sh)
	}
	s := ctx.Scope
	var dec *torch.Tensor
	s.NoGrad(func() {
		b := sh[0]
		gate := s.Reshape(s.GeScalar(n.ImageScores(s, x), n.ImageThreshold), b, 1, 1, 1)
		pix := s.Amax(x, true, 3) // [B,H,W,1]
		var hit *torch.Tensor
		if math.IsNaN(n.PixelThreshold) {
			thr := s.Reshape(Quantile(s, s.Reshape(x, b, -1), n.Q), b, 1, 1, 1)
			hit = s.Ge(pix, thr)
		} else {
			hit = s.GeScalar(pix, n.PixelThreshold)
		}
		dec = s.LogicalAnd(hit, gate)
	})
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"decisions": dec}, nil
}
