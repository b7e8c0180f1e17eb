package reduce

import (
	"fmt"
	"math"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    "LearnableChannelMixer",
		Aliases: []string{"cuvis_ai.node.channel_mixer.LearnableChannelMixer"},
		Factory: NewLearnableChannelMixer,
		Doc:     "DRCNN: a chain of 1×1 convolutions mixing the bands into output channels",
	})
}

// LearnableChannelMixer is the DRCNN channel mixer (Zeegers et al. 2020): a chain of 1×1
// convolutions following reduction_scheme with LeakyReLU between layers, then per-image,
// per-channel min-max normalisation clamped to [0,1].
//
// The output normalisation is the tutorial-era (Jan 2026) one; the reference's HEAD
// replaced it with BatchNorm2d + sigmoid. Weights are kept in the conv layout
// [out,in,1,1] (for state compatibility) but applied as a matrix product on the
// channels-last cube, which equals a 1×1 convolution without the two BHWC↔BCHW copies.
type LearnableChannelMixer struct {
	nodes.Base
	params          map[string]any
	In, Out         int
	Slope           float64
	UseBias         bool
	UseActivation   bool
	NormalizeOutput bool
	InitMethod      string
	Eps             float64
	Scheme          []int
	Seed            int
	DType           torch.DType

	weights []*torch.Tensor // [scheme[i+1], scheme[i], 1, 1]
	biases  []*torch.Tensor // [scheme[i+1]] or nil
	frozen  bool
	fitted  bool
	stats   *covStats
}

// NewLearnableChannelMixer is the registry factory.
func NewLearnableChannelMixer(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &LearnableChannelMixer{Base: nodes.Base{NodeName: name, TypeName: "LearnableChannelMixer"}}
	n.In = p.Int("input_channels", 0)
	n.Out = p.Int("output_channels", 0)
	n.Slope = p.Float("leaky_relu_negative_slope", 0.01)
	n.UseBias = p.Bool("use_bias", true)
	n.UseActivation = p.Bool("use_activation", true)
	n.NormalizeOutput = p.Bool("normalize_output", true)
	n.InitMethod = p.String("init_method", "xavier", "xavier", "kaiming", "pca", "zeros")
	n.Eps = p.Float("eps", 1e-6)
	n.Scheme = p.Ints("reduction_scheme", nil)
	n.Seed = p.Int("seed", 0)
	dt := p.String("dtype", "float32", "float32", "float64")
	p.Check(n.In >= 1, "input_channels", "must be >= 1, got %d", n.In)
	p.Check(n.Out >= 1, "output_channels", "must be >= 1, got %d", n.Out)
	p.Check(n.Eps > 0, "eps", "must be > 0, got %g", n.Eps)
	p.Check(n.Seed >= 0, "seed", "must be >= 0, got %d", n.Seed)
	if n.Scheme == nil {
		n.Scheme = []int{n.In, n.Out}
	}
	p.Check(len(n.Scheme) >= 2, "reduction_scheme", "needs at least 2 entries, got %v", n.Scheme)
	if len(n.Scheme) >= 2 {
		p.Check(n.Scheme[0] == n.In, "reduction_scheme", "%v must start with input_channels %d", n.Scheme, n.In)
		p.Check(n.Scheme[len(n.Scheme)-1] == n.Out, "reduction_scheme", "%v must end with output_channels %d", n.Scheme, n.Out)
		for _, v := range n.Scheme {
			p.Check(v >= 1, "reduction_scheme", "entries must be >= 1, got %v", n.Scheme)
		}
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	n.params["reduction_scheme"] = n.Scheme
	n.DType = torch.Float32
	if dt == "float64" {
		n.DType = torch.Float64
	}
	if err := n.initWeights(); err != nil {
		return nil, fmt.Errorf("node %q: init: %w", name, err)
	}
	n.fitted = n.InitMethod != "pca"
	return n, nil
}

func (n *LearnableChannelMixer) initWeights() error {
	gen, err := torch.NewGenerator(uint64(n.Seed), torch.CPU)
	if err != nil {
		return err
	}
	defer gen.Free()
	s := torch.NewScope()
	defer s.Close()
	var ws, bs []*torch.Tensor
	for i := 0; i+1 < len(n.Scheme); i++ {
		in, out := int64(n.Scheme[i]), int64(n.Scheme[i+1])
		shape := []int64{out, in, 1, 1}
		var w *torch.Tensor
		switch n.InitMethod {
		case "zeros":
			w = s.Zeros(shape, n.DType, torch.CPU)
		case "kaiming": // kaiming_uniform_(a=slope), fan_in mode
			gain := math.Sqrt(2 / (1 + n.Slope*n.Slope))
			bound := gain * math.Sqrt(3/float64(in))
			w = s.Uniform(shape, -bound, bound, n.DType, torch.CPU, gen)
		default: // xavier_uniform_ (also the placeholder of pca)
			bound := math.Sqrt(6 / float64(in+out))
			w = s.Uniform(shape, -bound, bound, n.DType, torch.CPU, gen)
		}
		ws = append(ws, w)
		if n.UseBias {
			bs = append(bs, s.Zeros([]int64{out}, n.DType, torch.CPU))
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	for _, t := range append(append([]*torch.Tensor(nil), ws...), bs...) {
		s.Keep(t)
		if err := t.SetRequiresGrad(true); err != nil {
			return err
		}
	}
	n.weights, n.biases = ws, bs
	return nil
}

// Inputs declares the cube port.
func (n *LearnableChannelMixer) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "data", DType: n.DType, Shape: nodes.Shape("B", "H", "W", fmt.Sprint(n.In))}}
}

// Outputs declares the mixed image and the last layer's weight.
func (n *LearnableChannelMixer) Outputs() []nodes.PortSpec {
	last := n.Scheme[len(n.Scheme)-2]
	return []nodes.PortSpec{
		{Name: "rgb", DType: n.DType, Shape: nodes.Shape("B", "H", "W", fmt.Sprint(n.Out))},
		{Name: "weights", DType: n.DType, Shape: nodes.Shape(fmt.Sprint(n.Out), fmt.Sprint(last)), Optional: true},
	}
}

// Stages is nil: the mixer runs everywhere.
func (n *LearnableChannelMixer) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *LearnableChannelMixer) Params() map[string]any { return n.params }

// RequiresFit is true only for init_method pca.
func (n *LearnableChannelMixer) RequiresFit() bool { return n.InitMethod == "pca" }

// FitReset starts collecting pixel statistics for the pca initialisation.
func (n *LearnableChannelMixer) FitReset() error { n.stats = nil; return nil }

// FitBatch folds one batch of training pixels into the covariance (pca init only).
func (n *LearnableChannelMixer) FitBatch(ctx *nodes.Context, in map[string]any) error {
	if n.InitMethod != "pca" {
		return nil
	}
	x, err := input4(n.Name(), in, "data", n.In)
	if err != nil {
		return err
	}
	if n.stats == nil {
		n.stats = newCovStats(n.In)
	}
	if err := n.stats.addBatch(x); err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	return nil
}

// FitFinish overwrites the first layer's weights with the top principal directions (rows;
// zero rows beyond the available components). As in the reference the mean is not
// subtracted and the bias stays zero, so layer 1 computes raw projections.
func (n *LearnableChannelMixer) FitFinish() error {
	if n.InitMethod != "pca" {
		return nil
	}
	if n.stats == nil {
		return fmt.Errorf("node %q: fit: no training data was seen", n.Name())
	}
	e, err := n.stats.decompose()
	if err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	h := n.Scheme[1]
	rows := e.topRows(h, n.In)
	s := torch.NewScope()
	defer s.Close()
	w0 := n.weights[0]
	src := s.ToDevice(s.ToDType(s.FromFloat64(rows, int64(h), int64(n.In), 1, 1), n.DType), w0.Device())
	s.NoGrad(func() {
		s.Copy_(w0, src)
		if len(n.biases) > 0 {
			s.Zero_(n.biases[0])
		}
	})
	if err := s.Err(); err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	n.fitted = true
	return nil
}

// Fitted reports whether the pca initialisation has run (always true for other inits).
func (n *LearnableChannelMixer) Fitted() bool { return n.fitted }

// Parameters returns the conv weights and biases.
func (n *LearnableChannelMixer) Parameters() []nodes.NamedTensor {
	var out []nodes.NamedTensor
	for i, w := range n.weights {
		out = append(out, nodes.NamedTensor{Name: fmt.Sprintf("convs.%d.weight", i), Tensor: w})
		if i < len(n.biases) {
			out = append(out, nodes.NamedTensor{Name: fmt.Sprintf("convs.%d.bias", i), Tensor: n.biases[i]})
		}
	}
	return out
}

// Freeze switches gradient recording of the parameters off or on.
func (n *LearnableChannelMixer) Freeze(frozen bool) error {
	for _, p := range n.Parameters() {
		if err := p.Tensor.SetRequiresGrad(!frozen); err != nil {
			return fmt.Errorf("node %q: freeze %s: %w", n.Name(), p.Name, err)
		}
	}
	n.frozen = frozen
	return nil
}

// Frozen reports whether the parameters are frozen.
func (n *LearnableChannelMixer) Frozen() bool { return n.frozen }

// State returns the parameters (the mixer has no buffers).
func (n *LearnableChannelMixer) State() []nodes.NamedTensor { return n.Parameters() }

// LoadState copies saved weights into the parameters; the node counts as fitted.
func (n *LearnableChannelMixer) LoadState(state map[string]*torch.Tensor) error {
	s := torch.NewScope()
	defer s.Close()
	for _, p := range n.Parameters() {
		t, ok := state[p.Name]
		if !ok || t == nil {
			return fmt.Errorf("node %q: state lacks %q", n.Name(), p.Name)
		}
		if fmt.Sprint(t.Shape()) != fmt.Sprint(p.Tensor.Shape()) {
			return fmt.Errorf("node %q: state %q has shape %v, want %v", n.Name(), p.Name, t.Shape(), p.Tensor.Shape())
		}
		s.NoGrad(func() { s.Copy_(p.Tensor, t) })
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("node %q: load state: %w", n.Name(), err)
	}
	n.fitted = true
	return nil
}

// To moves the parameters to dev (they stay leaves requiring grad unless frozen).
func (n *LearnableChannelMixer) To(dev torch.Device) error {
	var err error
	for i := range n.weights {
		if n.weights[i], err = moveKept(n.weights[i], dev); err != nil {
			return fmt.Errorf("node %q: %w", n.Name(), err)
		}
	}
	for i := range n.biases {
		if n.biases[i], err = moveKept(n.biases[i], dev); err != nil {
			return fmt.Errorf("node %q: %w", n.Name(), err)
		}
	}
	return nil
}

// Close frees the parameters.
func (n *LearnableChannelMixer) Close() {
	for _, t := range n.weights {
		t.Free()
	}
	for _, t := range n.biases {
		t.Free()
	}
	n.weights, n.biases = nil, nil
}

// Forward mixes the bands of data into rgb.
func (n *LearnableChannelMixer) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	return n.forward(ctx, in, 1, 0)
}

// ForwardAffine is Forward of scale·data + shift, with the map folded into the first layer:
// W·(a·x + b) + c = (a·W)·x + (c + b·ΣW).
func (n *LearnableChannelMixer) ForwardAffine(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	return n.forward(ctx, in, scale, shift)
}

var _ nodes.AffineSink = (*LearnableChannelMixer)(nil)

func (n *LearnableChannelMixer) forward(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	if !n.fitted {
		return nil, fmt.Errorf("node %q: init_method pca needs the statistical fit first", n.Name())
	}
	x, err := input4(n.Name(), in, "data", n.In)
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	if x.DType() != n.DType {
		x = s.ToDType(x, n.DType)
	}
	// Without gradients on the CPU the whole chain runs fused in one pass (Scope.MixChain).
	// Otherwise the 1×1 convolutions run on a BCHW view of the channels-last cube (no copy)
	// through oneDNN (Scope.Conv1x1), which takes the channels-last layout directly, and the
	// output permutes back to contiguous BHWC. At one thread, 4×256×256×61, the first layer
	// took 240 ms as conv2d (im2col + reference BLAS), 230 ms as a [N,61] GEMM, ~20 ms as
	// oneDNN; see BenchmarkMixerForms.
	last := len(n.weights) - 1
	ws := make([]*torch.Tensor, len(n.weights))
	bs := make([]*torch.Tensor, len(n.weights))
	for i, w := range n.weights {
		var b *torch.Tensor
		if i < len(n.biases) {
			b = n.biases[i]
		}
		if i == 0 && (scale != 1 || shift != 0) {
			bsum := s.MulScalar(s.Sum(w, false, 1, 2, 3), shift)
			if b != nil {
				bsum = s.Add(b, bsum)
			}
			w, b = s.MulScalar(w, scale), bsum
		}
		ws[i], bs[i] = w, b
	}
	actLast := n.UseActivation && !n.NormalizeOutput
	var y *torch.Tensor
	if !s.GradEnabled() && x.Device().Type == torch.DeviceCPU && n.DType == torch.Float32 {
		// inference on the CPU: every layer in one pass over the cube (no intermediates)
		y = s.MixChain(x, ws, bs, n.Slope, n.UseActivation, actLast)
	} else {
		y = s.Permute(x, 0, 3, 1, 2)
		for i := range ws {
			y = s.Conv1x1(y, ws[i], bs[i])
			if n.UseActivation && (i < last || actLast) {
				if s.GradEnabled() && n.Slope <= 0 {
					y = s.LeakyRelu(y, n.Slope)
				} else {
					// in place: without gradients there is no graph to keep; with them (slope
					// > 0) the backward reads the result's sign, which is the input's, so the
					// gradients are the same bits while the layer's output is not kept twice
					// (a whole scene: 64 MB per 16 channels of 1000×1000 pixels)
					y = s.LeakyRelu_(y, n.Slope)
				}
			}
		}
		y = s.Permute(y, 0, 2, 3, 1)
	}
	if n.NormalizeOutput {
		y = s.MinMaxNormalize(y, torch.MinMaxOptions{PerImage: true, Clamp: true, Eps: n.Eps})
	}
	lw := n.weights[last]
	lsh := lw.Shape()
	wv := s.View(lw, lsh[0], lsh[1])
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{"rgb": y, "weights": wv}, nil
}
