package detect

import (
	"fmt"

	"github.com/spectraclip/spectraclip/nodes"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/torch"
)

// RXTypeName is the registered type of the global RX detector node.
const RXTypeName = "RXDetector"

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    RXTypeName,
		Factory: func(name string, params map[string]any) (nodes.Node, error) { return NewRXDetector(name, params) },
		Doc:     "Global RX (Reed–Xiaoli) detector: Mahalanobis distance of each pixel to its image's mean and covariance. cube [B,H,W,C] → scores [B,H,W,1].",
	})
}

// RXScores computes global RX scores for cube [B,H,W,C] (or [H,W,C]) in float64: for each
// image, the squared Mahalanobis distance of every pixel to that image's mean and covariance
// (unbiased, N−1), through the Moore–Penrose pseudo-inverse so that singular covariances
// (constant or linearly dependent bands) still give finite scores. The result is float64
// [B,H,W] (or [H,W]).
func RXScores(s *torch.Scope, cube *torch.Tensor) *torch.Tensor {
	if s.Err() != nil {
		return nil
	}
	sh := cube.Shape()
	single := len(sh) == 3
	if single {
		sh = append([]int64{1}, sh...)
	}
	if len(sh) != 4 {
		s.Fail(fmt.Errorf("rx: cube must be [B,H,W,C] or [H,W,C], got %s", cube))
		return nil
	}
	b, h, w, c := sh[0], sh[1], sh[2], sh[3]
	n := h * w
	if n < 2 {
		s.Fail(fmt.Errorf("rx: need at least 2 pixels, got %d×%d", h, w))
		return nil
	}
	x := s.Reshape(s.ToDType(cube, torch.Float64), b, n, c)
	xc := s.Sub(x, s.Mean(x, true, 1))
	cov := s.DivScalar(s.Bmm(s.Transpose(xc, 1, 2), xc), float64(n-1)) // [B,C,C]
	p := s.Pinv(cov)
	d := s.Sum(s.Mul(s.Bmm(xc, p), xc), false, 2) // [B,N]
	if single {
		return s.Reshape(d, h, w)
	}
	return s.Reshape(d, b, h, w)
}

// rxChunkBytes bounds the float64 working set of one block of pixels in RX.
const rxChunkBytes = 32 << 20

// RX runs global RX on one channels-last cube (h×w×c values, pixel (r,col) band k at
// (r*w+col)*c+k) on the CPU and returns the h×w scores in float64.
//
// It computes what RXScores does (mean, unbiased covariance, pseudo-inverse, squared
// Mahalanobis distance) in blocks of pixels of at most rxChunkBytes as float64, so that a whole
// scene takes the cube, its scores and a few such blocks instead of several float64 copies of
// the cube.
func RX(cube []float32, h, w, c int) ([]float64, error) {
	if h <= 0 || w <= 0 || c <= 0 || len(cube) != h*w*c {
		return nil, fmt.Errorf("rx: %d values do not make a %d×%d×%d cube", len(cube), h, w, c)
	}
	n := h * w
	if n < 2 {
		return nil, fmt.Errorf("rx: need at least 2 pixels, got %d×%d", h, w)
	}
	chunk := max(1, rxChunkBytes/(8*c))
	// The mean, accumulated in float64.
	mean := make([]float64, c)
	for i := 0; i < len(cube); i += c {
		for k, v := range cube[i : i+c] {
			mean[k] += float64(v)
		}
	}
	for k := range mean {
		mean[k] /= float64(n)
	}
	// block runs fn on the centred float64 pixels [p0, p1) as an [m, c] tensor, in a scope of
	// its own so that each block's tensors are freed before the next.
	block := func(p0, p1 int, fn func(s *torch.Scope, xc *torch.Tensor)) error {
		s := torch.NewScope()
		defer s.Close()
		s.NoGrad(func() {
			x := s.ToDType(s.FromFloat32(cube[p0*c:p1*c], int64(p1-p0), int64(c)), torch.Float64)
			fn(s, s.Sub(x, s.FromFloat64(mean, 1, int64(c))))
		})
		return s.Err()
	}
	cov := make([]float64, c*c)
	for p0 := 0; p0 < n; p0 += chunk {
		p1 := min(n, p0+chunk)
		var part []float64
		var err error
		if e := block(p0, p1, func(s *torch.Scope, xc *torch.Tensor) {
			part, err = s.Mm(s.Transpose(xc, 0, 1), xc).Float64s()
		}); e != nil {
			return nil, e
		}
		if err != nil {
			return nil, err
		}
		for i, v := range part {
			cov[i] += v
		}
	}
	for i := range cov {
		cov[i] /= float64(n - 1)
	}
	ps := torch.NewScope()
	defer ps.Close()
	var pinv *torch.Tensor
	ps.NoGrad(func() { pinv = ps.Pinv(ps.FromFloat64(cov, int64(c), int64(c))) })
	if err := ps.Err(); err != nil {
		return nil, err
	}
	out := make([]float64, 0, n)
	for p0 := 0; p0 < n; p0 += chunk {
		p1 := min(n, p0+chunk)
		var d []float64
		var err error
		if e := block(p0, p1, func(s *torch.Scope, xc *torch.Tensor) {
			d, err = s.Sum(s.Mul(s.Mm(xc, pinv), xc), false, 1).Float64s()
		}); e != nil {
			return nil, e
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// ROCAUC is the exact pixel ROC AUC of scores against labels (Mann–Whitney, ties count ½);
// 0 when a class is absent, NaN for mismatched lengths or NaN scores.
func ROCAUC(scores []float64, labels []bool) float64 {
	return metriccore.ExactAUROC(scores, labels)
}

// RXDetector is the global RX detector as a pipeline node: a classical, training-free
// baseline that sees every band of the cube.
type RXDetector struct {
	nodes.Base
	params map[string]any
}

// NewRXDetector builds the node; it takes no parameters.
func NewRXDetector(name string, params map[string]any) (*RXDetector, error) {
	p := nodes.NewParamReader(name, params)
	if err := p.Done(); err != nil {
		return nil, err
	}
	return &RXDetector{Base: nodes.Base{NodeName: name, TypeName: RXTypeName}, params: p.Resolved()}, nil
}

// Inputs implements nodes.Node.
func (r *RXDetector) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "cube", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C"), Doc: "hyperspectral cube"}}
}

// Outputs implements nodes.Node.
func (r *RXDetector) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "scores", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "1"), Doc: "squared Mahalanobis distance per pixel"}}
}

// Stages implements nodes.Node.
func (r *RXDetector) Stages() []nodes.Stage { return nil }

// Params implements nodes.Node.
func (r *RXDetector) Params() map[string]any { return r.params }

// Forward implements nodes.Node; the scores carry no gradient (RX is a fixed statistic).
func (r *RXDetector) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	cube, ok := in["cube"].(*torch.Tensor)
	if !ok || !cube.Valid() {
		return nil, fmt.Errorf("node %q: input cube is missing or not a tensor (%T)", r.NodeName, in["cube"])
	}
	if cube.Dim() != 4 {
		return nil, fmt.Errorf("node %q: cube must be [B,H,W,C], got %s", r.NodeName, cube)
	}
	s := ctx.Scope
	var out *torch.Tensor
	s.NoGrad(func() {
		d := RXScores(s, cube)
		out = s.Unsqueeze(s.ToDType(d, torch.Float32), 3)
	})
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", r.NodeName, err)
	}
	return map[string]any{"scores": out}, nil
}

var _ nodes.Node = (*RXDetector)(nil)
