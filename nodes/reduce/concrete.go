package reduce

import (
	"fmt"
	"math"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    "ConcreteBandSelector",
		Aliases: []string{"cuvis_ai.node.concrete_selector.ConcreteBandSelector", "cuvis_ai.node.channel_mixer.ConcreteChannelMixer"},
		Factory: NewConcreteBandSelector,
		Doc:     "Gumbel-Softmax (Concrete) selection of one band per output channel",
	})
}

// ConcreteBandSelector learns, for each output channel, a categorical distribution over
// the input bands (logits [out,in]); training samples relaxed one-hot weights with
// Gumbel-Softmax at a temperature annealed over the epochs, inference uses the argmax band.
//
// The schedule defaults to the exponential (geometric) one of the reference code; the
// tutorial text's linear schedule is available as schedule: linear. Logits start at zero
// as in the reference (so every channel initially selects band 0 and CollapsedBands
// warns); logits_init: uniform_noise breaks that tie with small seeded noise.
type ConcreteBandSelector struct {
	nodes.Base
	params      map[string]any
	In, Out     int
	TauStart    float64
	TauEnd      float64
	MaxEpochs   int
	HardInfer   bool
	Eps         float64
	Schedule    string
	Seed        int
	LogitsInit  string
	logits      *torch.Tensor
	gen         *torch.Generator
	training    bool
	frozen      bool
	warnedBands string
}

// NewConcreteBandSelector is the registry factory.
func NewConcreteBandSelector(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &ConcreteBandSelector{Base: nodes.Base{NodeName: name, TypeName: "ConcreteBandSelector"}, training: true}
	n.In = p.Int("input_channels", 0)
	n.Out = p.Int("output_channels", 3)
	n.TauStart = p.Float("tau_start", 10)
	n.TauEnd = p.Float("tau_end", 0.1)
	n.MaxEpochs = p.Int("max_epochs", 20)
	n.HardInfer = p.Bool("use_hard_inference", true)
	n.Eps = p.Float("eps", 1e-6)
	n.Schedule = p.String("schedule", "exponential", "exponential", "linear")
	n.Seed = p.Int("seed", 0)
	n.LogitsInit = p.String("logits_init", "zeros", "zeros", "uniform_noise")
	p.Check(n.In >= 1, "input_channels", "must be >= 1, got %d", n.In)
	p.Check(n.Out >= 1, "output_channels", "must be >= 1, got %d", n.Out)
	p.Check(n.Out <= n.In, "output_channels", "must be <= input_channels (%d): each output channel selects a band of its own, got %d", n.In, n.Out)
	p.Check(n.TauStart > 0, "tau_start", "must be > 0, got %g", n.TauStart)
	p.Check(n.TauEnd > 0, "tau_end", "must be > 0, got %g", n.TauEnd)
	p.Check(n.MaxEpochs >= 0, "max_epochs", "must be >= 0, got %d", n.MaxEpochs)
	p.Check(n.Eps >= 0, "eps", "must be >= 0, got %g", n.Eps)
	p.Check(n.Seed >= 0, "seed", "must be >= 0, got %d", n.Seed)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	gen, err := torch.NewGenerator(uint64(n.Seed), torch.CPU)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	n.gen = gen
	s := torch.NewScope()
	defer s.Close()
	shape := []int64{int64(n.Out), int64(n.In)}
	if n.LogitsInit == "zeros" {
		n.logits = s.Zeros(shape, torch.Float32, torch.CPU)
	} else {
		n.logits = s.Uniform(shape, -0.01, 0.01, torch.Float32, torch.CPU, gen)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	s.Keep(n.logits)
	if err := n.logits.SetRequiresGrad(true); err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return n, nil
}

// Inputs declares the cube port (expected in [0,1]).
func (n *ConcreteBandSelector) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "data", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", fmt.Sprint(n.In))}}
}

// Outputs declares the selected image and the weights used.
func (n *ConcreteBandSelector) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "rgb", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", fmt.Sprint(n.Out))},
		{Name: "selection_weights", DType: torch.Float32, Shape: nodes.Shape(fmt.Sprint(n.Out), fmt.Sprint(n.In)), Optional: true},
	}
}

// Stages is nil: the selector runs everywhere.
func (n *ConcreteBandSelector) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *ConcreteBandSelector) Params() map[string]any { return n.params }

// SetTraining switches between Gumbel sampling (in the train stage) and deterministic
// weights.
func (n *ConcreteBandSelector) SetTraining(on bool) { n.training = on }

// Temperature is τ at the given epoch: geometric (or linear) interpolation from tau_start
// to tau_end with f = clamp(epoch, 0, max_epochs−1)/(max_epochs−1); max_epochs ≤ 1 gives
// tau_end.
func (n *ConcreteBandSelector) Temperature(epoch int) float64 {
	if n.MaxEpochs <= 1 {
		return n.TauEnd
	}
	e := min(max(epoch, 0), n.MaxEpochs-1)
	f := float64(e) / float64(n.MaxEpochs-1)
	if n.Schedule == "linear" {
		return n.TauStart + f*(n.TauEnd-n.TauStart)
	}
	return math.Exp((1-f)*math.Log(n.TauStart) + f*math.Log(n.TauEnd))
}

// Logits returns the parameter (owned by the node).
func (n *ConcreteBandSelector) Logits() *torch.Tensor { return n.logits }

// SelectionWeights returns softmax(logits/τ) without noise, with τ = sqrt(tau_start·tau_end)
// when deterministic and tau_end otherwise (the reference's get_selection_weights).
func (n *ConcreteBandSelector) SelectionWeights(s *torch.Scope, deterministic bool) *torch.Tensor {
	tau := n.TauEnd
	if deterministic {
		tau = math.Sqrt(n.TauStart * n.TauEnd)
	}
	return s.Softmax(s.DivScalar(n.logits, tau), 1)
}

// bands returns the band each output channel selects: channel by channel in order, the band
// of highest logit among those no earlier channel took (top-k without replacement, ties
// going to the lowest index), so the hard selection is always Out distinct bands. Plain
// argmax per channel picked band 0 three times at initialisation (equal logits), and later
// whenever two channels came to prefer the same band.
func (n *ConcreteBandSelector) bands() ([]int, error) {
	v, err := n.logits.Float32s()
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return distinctBands(v, n.Out, n.In), nil
}

func distinctBands(v []float32, out, in int) []int {
	taken := make([]bool, in)
	b := make([]int, out)
	for k := range b {
		row := v[k*in : (k+1)*in]
		best := -1
		for c, x := range row {
			if !taken[c] && (best < 0 || x > row[best]) {
				best = c
			}
		}
		b[k], taken[best] = best, true
	}
	return b
}

// preferred returns argmax(logits) per output channel (ties to the lowest index): the band
// each channel would take on its own.
func (n *ConcreteBandSelector) preferred() ([]int, error) {
	v, err := n.logits.Float32s()
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	out := make([]int, n.Out)
	for k := range out {
		row := v[k*n.In : (k+1)*n.In]
		best := 0
		for c, x := range row {
			if x > row[best] {
				best = c
			}
		}
		out[k] = best
	}
	return out, nil
}

// SelectedBands returns the band chosen by each output channel and, when wavelengths (nm,
// one per input band) are given, their wavelengths.
func (n *ConcreteBandSelector) SelectedBands(wavelengths []float32) ([]int, []float32, error) {
	if wavelengths != nil && len(wavelengths) != n.In {
		return nil, nil, fmt.Errorf("node %q: %d wavelengths for %d input bands", n.Name(), len(wavelengths), n.In)
	}
	b, err := n.bands()
	if err != nil {
		return nil, nil, err
	}
	if wavelengths == nil {
		return b, nil, nil
	}
	wl := make([]float32, len(b))
	for i, k := range b {
		wl[i] = wavelengths[k]
	}
	return b, wl, nil
}

// Collapsed reports whether two output channels currently prefer the same band (their
// argmaxes coincide); the hard selection then gives the later channel its best free band.
func (n *ConcreteBandSelector) Collapsed() bool {
	b, err := n.preferred()
	return err == nil && collapsed(b)
}

func collapsed(b []int) bool {
	seen := map[int]bool{}
	for _, k := range b {
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// checkCollapse warns once per distinct collapsed preference.
func (n *ConcreteBandSelector) checkCollapse() {
	b, err := n.preferred()
	if err != nil || !collapsed(b) {
		n.warnedBands = ""
		return
	}
	key := fmt.Sprint(b)
	if key != n.warnedBands {
		n.warnedBands = key
		sel, _ := n.bands()
		logrus.Warnf("node %q: band collapse: output channels prefer bands %v (two or more the same); the hard selection takes %v", n.Name(), b, sel)
	}
}

// Parameters returns the logits.
func (n *ConcreteBandSelector) Parameters() []nodes.NamedTensor {
	return []nodes.NamedTensor{{Name: "logits", Tensor: n.logits}}
}

// Freeze switches gradient recording of the logits off or on.
func (n *ConcreteBandSelector) Freeze(frozen bool) error {
	if err := n.logits.SetRequiresGrad(!frozen); err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.frozen = frozen
	return nil
}

// Frozen reports whether the logits are frozen.
func (n *ConcreteBandSelector) Frozen() bool { return n.frozen }

// State returns the logits.
func (n *ConcreteBandSelector) State() []nodes.NamedTensor { return n.Parameters() }

// LoadState copies saved logits in.
func (n *ConcreteBandSelector) LoadState(state map[string]*torch.Tensor) error {
	t, ok := state["logits"]
	if !ok || t == nil {
		return fmt.Errorf("node %q: state lacks \"logits\"", n.Name())
	}
	if fmt.Sprint(t.Shape()) != fmt.Sprint(n.logits.Shape()) {
		return fmt.Errorf("node %q: state \"logits\" has shape %v, want %v", n.Name(), t.Shape(), n.logits.Shape())
	}
	s := torch.NewScope()
	defer s.Close()
	s.NoGrad(func() { s.Copy_(n.logits, t) })
	if err := s.Err(); err != nil {
		return fmt.Errorf("node %q: load state: %w", n.Name(), err)
	}
	return nil
}

// To moves the logits (and the noise generator) to dev.
func (n *ConcreteBandSelector) To(dev torch.Device) error {
	if n.logits.Device() == dev {
		return nil
	}
	l, err := moveKept(n.logits, dev)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.logits = l
	g, err := torch.NewGenerator(uint64(n.Seed), dev)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.gen.Free()
	n.gen = g
	return nil
}

// Close frees the logits and the generator.
func (n *ConcreteBandSelector) Close() {
	n.logits.Free()
	n.gen.Free()
}

// Weights returns the [out,in] weights Forward would use in this context: one Gumbel
// sample per call in training, else the one-hot of the distinct hard selection (bands) or
// softmax(logits/tau_end).
func (n *ConcreteBandSelector) Weights(ctx *nodes.Context) *torch.Tensor {
	s := ctx.Scope
	if n.training && ctx.Stage == nodes.StageTrain {
		return s.GumbelSoftmax(n.logits, n.Temperature(ctx.Epoch), n.Eps, false, n.gen)
	}
	if n.HardInfer {
		b, err := n.bands()
		if err != nil {
			s.Fail(err)
			return nil
		}
		idx := make([]int64, len(b))
		for i, k := range b {
			idx[i] = int64(k)
		}
		return s.To(s.OneHot(s.FromInt64(idx, int64(len(idx))), int64(n.In)), n.logits.Device(), torch.Float32)
	}
	return s.Softmax(s.DivScalar(n.logits, n.TauEnd), 1)
}

// Forward computes rgb[b,h,w,k] = Σ_c w[k,c]·x[b,h,w,c].
func (n *ConcreteBandSelector) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	return n.forward(ctx, in, 1, 0)
}

// ForwardAffine is Forward of scale·data + shift: w·(a·x + b) = (a·w)·x + b·Σw.
func (n *ConcreteBandSelector) ForwardAffine(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	return n.forward(ctx, in, scale, shift)
}

var _ nodes.AffineSink = (*ConcreteBandSelector)(nil)

func (n *ConcreteBandSelector) forward(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	x, err := input4(n.Name(), in, "data", n.In)
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	w := n.Weights(ctx)
	if x.DType() != torch.Float32 {
		x = s.ToDType(x, torch.Float32)
	}
	// a 1×1 convolution on the channels-last view, as in the mixer (oneDNN, no copy)
	wk := s.Reshape(w, int64(n.Out), int64(n.In), 1, 1)
	var bias *torch.Tensor
	if scale != 1 || shift != 0 {
		bias = s.MulScalar(s.Sum(w, false, 1), shift)
		wk = s.MulScalar(wk, scale)
	}
	rgb := s.Permute(s.Conv1x1(s.Permute(x, 0, 3, 1, 2), wk, bias), 0, 2, 3, 1)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	if !(n.training && ctx.Stage == nodes.StageTrain) {
		n.checkCollapse()
	}
	return map[string]any{"rgb": rgb, "selection_weights": w}, nil
}

// GeneratorState returns a copy of the Gumbel noise generator's state, so that a resumed
// run draws the same noise as an uninterrupted one (the trainer saves it in checkpoints).
func (n *ConcreteBandSelector) GeneratorState() (*torch.Tensor, error) { return n.gen.State() }

// SetGeneratorState restores a state returned by GeneratorState.
func (n *ConcreteBandSelector) SetGeneratorState(t *torch.Tensor) error { return n.gen.SetState(t) }
