// Package normalize holds the min-max normaliser node of the workflow (cuvis-ai
// MinMaxNormalizer).
package normalize

import (
	"fmt"
	"math"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    "MinMaxNormalizer",
		Aliases: []string{"cuvis_ai.node.normalization.MinMaxNormalizer"},
		Factory: NewMinMaxNormalizer,
		Doc:     "(x-min)/max(max-min,eps) with one global min/max fitted on the training data, or per image and channel",
	})
}

// MinMaxNormalizer rescales a [B,H,W,C] cube to about [0,1].
//
// In running-stats mode it uses ONE scalar min and max over every element of the training
// stream (all pixels, channels and images), as the reference does; values outside the
// training range fall outside [0,1] unless clamp is set. In per-image mode each image and
// channel is rescaled by its own min and max over H×W.
//
// Used unfitted in running-stats mode, the reference's Jan-2026 version silently fell back
// to per-image mode while its HEAD raises; fallback "error" (the default) follows HEAD and
// "per_image" follows the tutorial-era code.
type MinMaxNormalizer struct {
	nodes.Base
	params          map[string]any
	Eps             float64
	UseRunningStats bool
	Fallback        string
	Clamp           bool

	lo, hi     float64 // fitted statistics (NaN when unfitted)
	fitLo      float64
	fitHi      float64
	fitted     bool
	runningMin *torch.Tensor // scalar float32 buffers, mirrors of lo/hi for State
	runningMax *torch.Tensor
}

// NewMinMaxNormalizer is the registry factory.
func NewMinMaxNormalizer(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &MinMaxNormalizer{Base: nodes.Base{NodeName: name, TypeName: "MinMaxNormalizer"}}
	n.Eps = p.Float("eps", 1e-6)
	n.UseRunningStats = p.Bool("use_running_stats", true)
	n.Fallback = p.String("fallback", "error", "error", "per_image")
	n.Clamp = p.Bool("clamp", false)
	p.Check(n.Eps > 0, "eps", "must be > 0, got %g", n.Eps)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	n.lo, n.hi = math.NaN(), math.NaN()
	s := torch.NewScope()
	defer s.Close()
	n.runningMin = s.Full(nil, math.NaN(), torch.Float32, torch.CPU)
	n.runningMax = s.Full(nil, math.NaN(), torch.Float32, torch.CPU)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	s.Keep(n.runningMin, n.runningMax)
	return n, nil
}

// Inputs declares the cube port.
func (n *MinMaxNormalizer) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "data", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C"), Doc: "cube, channels last"}}
}

// Outputs declares the normalised cube.
func (n *MinMaxNormalizer) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "normalized", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C")}}
}

// Stages is nil: the normaliser runs everywhere.
func (n *MinMaxNormalizer) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *MinMaxNormalizer) Params() map[string]any { return n.params }

// RequiresFit is true in running-stats mode, as the reference's requires_initial_fit.
func (n *MinMaxNormalizer) RequiresFit() bool { return n.UseRunningStats }

// FitReset forgets earlier statistics: re-running the fit starts over, as the reference.
func (n *MinMaxNormalizer) FitReset() error {
	n.fitLo, n.fitHi = math.Inf(1), math.Inf(-1)
	return nil
}

// FitBatch folds one training batch's global min and max into the running statistics.
func (n *MinMaxNormalizer) FitBatch(ctx *nodes.Context, in map[string]any) error {
	x, err := nodes.TensorInput(n.Name(), in, "data")
	if err != nil {
		return err
	}
	s := torch.NewScope()
	defer s.Close()
	var lo, hi float64
	s.NoGrad(func() {
		mn, mx := s.Amin(x, false), s.Amax(x, false)
		if s.Err() != nil {
			return
		}
		lo, err = mn.Item()
		if err == nil {
			hi, err = mx.Item()
		}
	})
	if err == nil {
		err = s.Err()
	}
	if err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return fmt.Errorf("node %q: fit: batch contains NaN", n.Name())
	}
	n.fitLo = math.Min(n.fitLo, lo)
	n.fitHi = math.Max(n.fitHi, hi)
	return nil
}

// FitFinish publishes the statistics gathered since FitReset.
func (n *MinMaxNormalizer) FitFinish() error {
	if math.IsInf(n.fitLo, 1) {
		return fmt.Errorf("node %q: fit: no training data was seen", n.Name())
	}
	return n.setStats(n.fitLo, n.fitHi)
}

func (n *MinMaxNormalizer) setStats(lo, hi float64) error {
	if err := torch.CopyFrom(n.runningMin, []float32{float32(lo)}); err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	if err := torch.CopyFrom(n.runningMax, []float32{float32(hi)}); err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.lo, n.hi = lo, hi
	n.fitted = !math.IsNaN(lo) && !math.IsNaN(hi)
	return nil
}

// Fitted reports whether running statistics are available.
func (n *MinMaxNormalizer) Fitted() bool { return n.fitted || !n.UseRunningStats }

// Stats returns the fitted global min and max (NaN when unfitted).
func (n *MinMaxNormalizer) Stats() (lo, hi float64) { return n.lo, n.hi }

// State returns the two scalar buffers under the reference's names.
func (n *MinMaxNormalizer) State() []nodes.NamedTensor {
	return []nodes.NamedTensor{{Name: "running_min", Tensor: n.runningMin}, {Name: "running_max", Tensor: n.runningMax}}
}

// LoadState restores running_min and running_max; the node counts as fitted afterwards
// unless they are NaN.
func (n *MinMaxNormalizer) LoadState(state map[string]*torch.Tensor) error {
	var v [2]float64
	for i, k := range []string{"running_min", "running_max"} {
		t, ok := state[k]
		if !ok || t == nil {
			return fmt.Errorf("node %q: state lacks %q", n.Name(), k)
		}
		if t.Numel() != 1 {
			return fmt.Errorf("node %q: state %q has shape %v, want a scalar", n.Name(), k, t.Shape())
		}
		x, err := t.Item()
		if err != nil {
			return fmt.Errorf("node %q: state %q: %w", n.Name(), k, err)
		}
		v[i] = x
	}
	return n.setStats(v[0], v[1])
}

// Close frees the buffers.
func (n *MinMaxNormalizer) Close() {
	n.runningMin.Free()
	n.runningMax.Free()
}

// Forward normalises data.
func (n *MinMaxNormalizer) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	x, err := nodes.TensorInput(n.Name(), in, "data")
	if err != nil {
		return nil, err
	}
	if x.Dim() != 4 {
		return nil, fmt.Errorf("node %q: input \"data\" has shape %v, want [B,H,W,C]", n.Name(), x.Shape())
	}
	o := torch.MinMaxOptions{Eps: n.Eps, Clamp: n.Clamp}
	switch {
	case !n.UseRunningStats:
		o.PerImage = true
	case n.fitted:
		o.UseGiven, o.Lo, o.Hi = true, n.lo, n.hi
	case n.Fallback == "per_image":
		o.PerImage = true
	default:
		return nil, fmt.Errorf("node %q: running statistics are not fitted (run the statistical fit first, load a state, or set fallback: per_image)", n.Name())
	}
	s := ctx.Scope
	y := s.MinMaxNormalize(x, o)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"normalized": y}, nil
}

// InputAffine reports the fitted running-stats map (x − lo)/max(hi − lo, eps) as
// scale·x + shift, so that the pipeline can fold it into the reducer that follows (the
// reducer then reads the raw cube once instead of the normaliser writing a copy of it).
func (n *MinMaxNormalizer) InputAffine() (scale, shift float64, ok bool) {
	if !n.UseRunningStats || !n.fitted || n.Clamp {
		return 0, 0, false
	}
	// the kernel computes in float32 from float32 statistics; use the same values
	lo, hi := float64(float32(n.lo)), float64(float32(n.hi))
	d := float64(float32(math.Max(hi-lo, n.Eps)))
	return 1 / d, -lo / d, true
}

var _ nodes.AffineSource = (*MinMaxNormalizer)(nil)
