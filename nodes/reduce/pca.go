package reduce

import (
	"fmt"
	"math"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    "TrainablePCA",
		Aliases: []string{"cuvis_ai.node.dimensionality_reduction.TrainablePCA", "cuvis_ai.node.pca.TrainablePCA"},
		Factory: NewTrainablePCA,
		Doc:     "principal-component projection of the bands, fitted on the training pixels",
	})
}

// TrainablePCA projects each pixel's spectrum onto the top principal components of the
// training pixels.
//
// The fit streams batches through a Chan/Welford merge of float64 (n, mean, M2) triples, so
// memory is O(C²) however many pixels are seen; the sample covariance (N−1) is
// decomposed with eigh in float64. Components are sorted by descending eigenvalue and each
// component's entry of largest magnitude is made positive: LAPACK builds (and the
// reference's SVD-based Jan-2026 fit) may return either sign, and after a per-image
// min-max normaliser a sign flip inverts a channel. init_method is stored but, as in the
// reference, has no effect. The components stay frozen (the reference never unfreezes them).
type TrainablePCA struct {
	nodes.Base
	params      map[string]any
	NumChannels int // 0: taken from the first fit batch
	K           int
	Whiten      bool
	Eps         float64
	InitMethod  string

	stats  *covStats
	fitted bool
	c      int

	mean       *torch.Tensor // [C] float32
	components *torch.Tensor // [k,C] float32
	variance   *torch.Tensor // [k] float32
	total      *torch.Tensor // scalar float32
	scale      *torch.Tensor // [k] 1/sqrt(var+eps), whiten only
	ratio      []float32     // over the retained components
	ratioTotal []float32     // over the total variance
}

// NewTrainablePCA is the registry factory.
func NewTrainablePCA(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	n := &TrainablePCA{Base: nodes.Base{NodeName: name, TypeName: "TrainablePCA"}}
	n.NumChannels = p.Int("num_channels", 0)
	n.K = p.Int("n_components", 3)
	n.Whiten = p.Bool("whiten", false)
	n.Eps = p.Float("eps", 1e-6)
	n.InitMethod = p.String("init_method", "svd")
	p.Check(n.NumChannels >= 0, "num_channels", "must be >= 1 when given, got %d", n.NumChannels)
	p.Check(n.K >= 1, "n_components", "must be >= 1, got %d", n.K)
	p.Check(n.NumChannels == 0 || n.K <= n.NumChannels, "n_components", "%d exceeds num_channels %d", n.K, n.NumChannels)
	p.Check(n.Eps >= 0, "eps", "must be >= 0, got %g", n.Eps)
	if err := p.Done(); err != nil {
		return nil, err
	}
	n.params = p.Resolved()
	return n, nil
}

// Inputs declares the cube port.
func (n *TrainablePCA) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "data", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C")}}
}

// Outputs declares the projection and the descriptive outputs.
func (n *TrainablePCA) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "projected", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "n_components")},
		{Name: "components", DType: torch.Float32, Shape: nodes.Shape("n_components", "C"), Optional: true},
		{Name: "explained_variance_ratio", DType: torch.Float32, Shape: nodes.Shape("n_components"), Optional: true,
			Doc: "variance share among the retained components (sums to ≈1, as the reference)"},
		{Name: "explained_variance_ratio_total", DType: torch.Float32, Shape: nodes.Shape("n_components"), Optional: true,
			Doc: "variance share of the total variance (the tutorial's \"~89%\")"},
	}
}

// ResolveDim gives n_components for port shape checks.
func (n *TrainablePCA) ResolveDim(name string) (int64, bool) {
	if name == "n_components" {
		return int64(n.K), true
	}
	return 0, false
}

// Stages is nil: PCA runs everywhere.
func (n *TrainablePCA) Stages() []nodes.Stage { return nil }

// Params returns the constructor parameters with defaults filled in.
func (n *TrainablePCA) Params() map[string]any { return n.params }

// RequiresFit is always true: the projection is data-driven.
func (n *TrainablePCA) RequiresFit() bool { return true }

// FitReset starts a new fit.
func (n *TrainablePCA) FitReset() error { n.stats = nil; return nil }

// FitBatch folds one batch of training pixels into the covariance statistics.
func (n *TrainablePCA) FitBatch(ctx *nodes.Context, in map[string]any) error {
	x, err := input4(n.Name(), in, "data", n.NumChannels)
	if err != nil {
		return err
	}
	c := int(x.Shape()[3])
	if n.K > c {
		return fmt.Errorf("node %q: n_components %d exceeds the %d input channels", n.Name(), n.K, c)
	}
	if n.stats == nil {
		n.stats = newCovStats(c)
	}
	if err := n.stats.addBatch(x); err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	return nil
}

// FitFinish decomposes the covariance and stores the buffers.
func (n *TrainablePCA) FitFinish() error {
	if n.stats == nil {
		return fmt.Errorf("node %q: fit: no training data was seen", n.Name())
	}
	e, err := n.stats.decompose()
	if err != nil {
		return fmt.Errorf("node %q: fit: %w", n.Name(), err)
	}
	c := n.stats.c
	return n.setBuffers(c, n.stats.mean, e.topRows(n.K, c), e.values[:n.K], e.total)
}

func (n *TrainablePCA) setBuffers(c int, mean, comps, variance []float64, total float64) error {
	k := n.K
	s := torch.NewScope()
	defer s.Close()
	dev := torch.CPU
	if n.mean != nil {
		dev = n.mean.Device()
	}
	m := torch.FromSlice(s, dev, f32(mean), int64(c))
	w := torch.FromSlice(s, dev, f32(comps), int64(k), int64(c))
	v := torch.FromSlice(s, dev, f32(variance), int64(k))
	t := torch.FromSlice(s, dev, []float32{float32(total)})
	t = s.Reshape(t)
	sc := make([]float32, k)
	sum := 0.0
	for _, x := range variance {
		sum += x
	}
	n.ratio = make([]float32, k)
	n.ratioTotal = make([]float32, k)
	for i, x := range variance {
		sc[i] = float32(1 / math.Sqrt(x+n.Eps))
		n.ratio[i] = float32(x / (sum + n.Eps))
		n.ratioTotal[i] = float32(x / total)
	}
	scale := torch.FromSlice(s, dev, sc, int64(k))
	if err := s.Err(); err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	s.Keep(m, w, v, t, scale)
	n.freeBuffers()
	n.mean, n.components, n.variance, n.total, n.scale = m, w, v, t, scale
	n.c = c
	n.fitted = true
	return nil
}

func (n *TrainablePCA) freeBuffers() {
	for _, t := range []*torch.Tensor{n.mean, n.components, n.variance, n.total, n.scale} {
		t.Free()
	}
	n.mean, n.components, n.variance, n.total, n.scale = nil, nil, nil, nil, nil
}

// Fitted reports whether components are available.
func (n *TrainablePCA) Fitted() bool { return n.fitted }

// ExplainedVarianceRatio returns each component's share of the retained variance (as the
// reference's explained_variance_ratio, summing to ≈1) and of the total variance.
func (n *TrainablePCA) ExplainedVarianceRatio() (retained, total []float32) {
	return append([]float32(nil), n.ratio...), append([]float32(nil), n.ratioTotal...)
}

// State returns the buffers under the reference's names (mean, components,
// explained_variance) plus total_variance.
func (n *TrainablePCA) State() []nodes.NamedTensor {
	if !n.fitted {
		return nil
	}
	return []nodes.NamedTensor{
		{Name: "mean", Tensor: n.mean},
		{Name: "components", Tensor: n.components},
		{Name: "explained_variance", Tensor: n.variance},
		{Name: "total_variance", Tensor: n.total},
	}
}

// LoadState restores a fitted PCA.
func (n *TrainablePCA) LoadState(state map[string]*torch.Tensor) error {
	get := func(k string) ([]float64, []int64, error) {
		t, ok := state[k]
		if !ok || t == nil {
			return nil, nil, fmt.Errorf("node %q: state lacks %q", n.Name(), k)
		}
		v, err := t.Float64s()
		if err != nil {
			return nil, nil, fmt.Errorf("node %q: state %q: %w", n.Name(), k, err)
		}
		return v, t.Shape(), nil
	}
	mean, msh, err := get("mean")
	if err != nil {
		return err
	}
	comps, csh, err := get("components")
	if err != nil {
		return err
	}
	variance, _, err := get("explained_variance")
	if err != nil {
		return err
	}
	total, _, err := get("total_variance")
	if err != nil {
		return err
	}
	c := len(mean)
	if len(msh) != 1 || len(csh) != 2 || csh[0] != int64(n.K) || csh[1] != int64(c) || len(variance) != n.K || len(total) != 1 {
		return fmt.Errorf("node %q: state shapes mean %v, components %v, explained_variance [%d] do not fit n_components %d",
			n.Name(), msh, csh, len(variance), n.K)
	}
	if n.NumChannels > 0 && c != n.NumChannels {
		return fmt.Errorf("node %q: state has %d channels, want num_channels %d", n.Name(), c, n.NumChannels)
	}
	return n.setBuffers(c, mean, comps, variance, total[0])
}

// To moves the buffers to dev.
func (n *TrainablePCA) To(dev torch.Device) error {
	var err error
	for _, p := range []**torch.Tensor{&n.mean, &n.components, &n.variance, &n.total, &n.scale} {
		if *p == nil {
			continue
		}
		if *p, err = moveKept(*p, dev); err != nil {
			return fmt.Errorf("node %q: %w", n.Name(), err)
		}
	}
	return nil
}

// Close frees the buffers.
func (n *TrainablePCA) Close() { n.freeBuffers() }

// Forward projects the cube; it fails when the node is not fitted.
func (n *TrainablePCA) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	return n.forward(ctx, in, 1, 0)
}

// ForwardAffine is Forward of scale·data + shift: (a·x + b − mean)·Vᵀ = (a·V)·x + (b·1 − mean)·Vᵀ.
func (n *TrainablePCA) ForwardAffine(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	return n.forward(ctx, in, scale, shift)
}

var _ nodes.AffineSink = (*TrainablePCA)(nil)

func (n *TrainablePCA) forward(ctx *nodes.Context, in map[string]any, scale, shift float64) (map[string]any, error) {
	if !n.fitted {
		return nil, fmt.Errorf("node %q: PCA is not fitted (run the statistical fit or load a state first)", n.Name())
	}
	x, err := input4(n.Name(), in, "data", n.c)
	if err != nil {
		return nil, err
	}
	s := ctx.Scope
	if x.DType() != torch.Float32 {
		x = s.ToDType(x, torch.Float32)
	}
	// (x − mean)·Vᵀ = x·Vᵀ − mean·Vᵀ: a 1×1 convolution with bias −mean·Vᵀ on a BCHW view
	// of the channels-last cube, so no centred copy of the cube is made and oneDNN reads the
	// channels-last layout directly (as in the mixer).
	bias := s.Neg(s.Matmul(n.mean, s.T(n.components)))
	w := s.Reshape(n.components, int64(n.K), int64(n.c), 1, 1)
	if scale != 1 || shift != 0 {
		bias = s.Add(bias, s.MulScalar(s.Sum(n.components, false, 1), shift))
		w = s.MulScalar(w, scale)
	}
	y := s.Permute(s.Conv1x1(s.Permute(x, 0, 3, 1, 2), w, bias), 0, 2, 3, 1)
	if n.Whiten {
		y = s.Mul(y, n.scale)
	}
	dev := n.mean.Device()
	r := torch.FromSlice(s, dev, n.ratio, int64(n.K))
	rt := torch.FromSlice(s, dev, n.ratioTotal, int64(n.K))
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", n.Name(), err)
	}
	return map[string]any{
		"projected":                      y,
		"components":                     n.components,
		"explained_variance_ratio":       r,
		"explained_variance_ratio_total": rt,
	}, nil
}
