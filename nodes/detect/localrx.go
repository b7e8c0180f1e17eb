package detect

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// LocalRXOptions configure LocalRX.
type LocalRXOptions struct {
	Components int // principal components the scene is reduced to first (default 10)
	Inner      int // guard window half-size: (2·Inner+1)² pixels around the pixel left out (default 2)
	Outer      int // background window half-size (default 7: 15×15)
}

// LocalRX is the dual-window (local) RX detector: the Mahalanobis distance of every pixel to
// the mean and covariance of the pixels in its outer window without its guard window, on the
// scene's first principal components (a 15×15 window holds fewer pixels than a scene has
// bands, so the full-band covariance would be singular). A small ridge (1e-6 of the mean
// variance) keeps flat windows finite. cube is h×w×c channels-last; the result is h×w.
func LocalRX(cube []float32, h, w, c int, o LocalRXOptions) ([]float64, error) {
	if h <= 0 || w <= 0 || c <= 0 || len(cube) != h*w*c {
		return nil, fmt.Errorf("local rx: %d values do not make a %d×%d×%d cube", len(cube), h, w, c)
	}
	if o.Components == 0 {
		o.Components = 10
	}
	if o.Inner == 0 {
		o.Inner = 2
	}
	if o.Outer == 0 {
		o.Outer = 7
	}
	if o.Outer <= o.Inner || o.Inner < 0 || o.Components < 1 {
		return nil, fmt.Errorf("local rx: want 0 <= inner < outer and components >= 1, got %+v", o)
	}
	k := min(o.Components, c)
	n := h * w
	// principal components of the whole scene
	mean := make([]float64, c)
	for p := range n {
		for b := range c {
			mean[b] += float64(cube[p*c+b])
		}
	}
	for b := range mean {
		mean[b] /= float64(n)
	}
	// The covariance and the projection are computed in blocks of pixels of at most
	// rxChunkBytes as float64, so that a whole scene never has a float64 copy.
	block := min(n, max(1, rxChunkBytes/(8*c)))
	buf := mat.NewDense(block, c, nil) // reused by every block
	centred := func(p0, p1 int) *mat.Dense {
		xb := buf.Slice(0, p1-p0, 0, c).(*mat.Dense)
		raw := xb.RawMatrix()
		for p := p0; p < p1; p++ {
			row := raw.Data[(p-p0)*raw.Stride : (p-p0)*raw.Stride+c]
			for b, v := range cube[p*c : (p+1)*c] {
				row[b] = float64(v) - mean[b]
			}
		}
		return xb
	}
	cov := mat.NewSymDense(c, nil)
	for p0 := 0; p0 < n; p0 += block {
		cov.SymRankK(cov, 1/float64(max(n-1, 1)), centred(p0, min(n, p0+block)).T())
	}
	var eig mat.EigenSym
	if !eig.Factorize(cov, true) {
		return nil, fmt.Errorf("local rx: eigendecomposition of the band covariance failed")
	}
	vals := eig.Values(nil)
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	idx := make([]int, c)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return vals[idx[a]] > vals[idx[b]] })
	basis := mat.NewDense(c, k, nil)
	for j := range k {
		for b := range c {
			basis.Set(b, j, vecs.At(b, idx[j]))
		}
	}
	y := mat.NewDense(n, k, nil) // the projected pixels, n×k
	for p0 := 0; p0 < n; p0 += block {
		p1 := min(n, p0+block)
		y.Slice(p0, p1, 0, k).(*mat.Dense).Mul(centred(p0, p1), basis)
	}
	yr := y.RawMatrix()
	out := make([]float64, n)
	mu := make([]float64, k)
	cv := mat.NewSymDense(k, nil)
	d := make([]float64, k)
	// Reused at every pixel: a fresh factorisation and solution per pixel left a cube's worth
	// of garbage behind on a large scene.
	var ch mat.Cholesky
	var sol mat.VecDense
	dv := mat.NewVecDense(k, d)
	for r := range h {
		for q := range w {
			for j := range mu {
				mu[j] = 0
			}
			cnt := 0
			each := func(fn func(v []float64)) {
				for rr := max(0, r-o.Outer); rr <= min(h-1, r+o.Outer); rr++ {
					for qq := max(0, q-o.Outer); qq <= min(w-1, q+o.Outer); qq++ {
						if abs(rr-r) <= o.Inner && abs(qq-q) <= o.Inner {
							continue
						}
						fn(yr.Data[(rr*w+qq)*yr.Stride : (rr*w+qq)*yr.Stride+k])
					}
				}
			}
			each(func(v []float64) {
				cnt++
				for j := range k {
					mu[j] += v[j]
				}
			})
			if cnt < 2 {
				return nil, fmt.Errorf("local rx: the %d×%d scene is too small for windows %+v", h, w, o)
			}
			for j := range mu {
				mu[j] /= float64(cnt)
			}
			for i := range k {
				for j := i; j < k; j++ {
					cv.SetSym(i, j, 0)
				}
			}
			each(func(v []float64) {
				for i := range k {
					for j := i; j < k; j++ {
						cv.SetSym(i, j, cv.At(i, j)+(v[i]-mu[i])*(v[j]-mu[j]))
					}
				}
			})
			tr := 0.0
			for i := range k {
				tr += cv.At(i, i) / float64(cnt-1)
			}
			ridge := 1e-6*tr/float64(k) + 1e-12
			for i := range k {
				for j := i; j < k; j++ {
					v := cv.At(i, j) / float64(cnt-1)
					if i == j {
						v += ridge
					}
					cv.SetSym(i, j, v)
				}
			}
			if !ch.Factorize(cv) {
				return nil, fmt.Errorf("local rx: window covariance at pixel (%d,%d) is not positive definite", r, q)
			}
			v := yr.Data[(r*w+q)*yr.Stride : (r*w+q)*yr.Stride+k]
			for j := range k {
				d[j] = v[j] - mu[j]
			}
			if err := ch.SolveVecTo(&sol, dv); err != nil {
				return nil, fmt.Errorf("local rx: pixel (%d,%d): %w", r, q, err)
			}
			out[r*w+q] = mat.Dot(dv, &sol)
		}
	}
	return out, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// LocalRXTypeName is the registered type of the local (dual-window) RX detector node.
const LocalRXTypeName = "LocalRXDetector"

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    LocalRXTypeName,
		Factory: func(name string, params map[string]any) (nodes.Node, error) { return NewLocalRXDetector(name, params) },
		Doc:     "Local (dual-window) RX detector on each image's first principal components: Mahalanobis distance of each pixel to its outer window without its guard window. cube [B,H,W,C] → scores [B,H,W,1].",
	})
}

// LocalRXDetector is LocalRX as a pipeline node: a classical, training-free baseline that
// sees every band of the cube, image by image (CPU, float64).
type LocalRXDetector struct {
	nodes.Base
	params map[string]any
	o      LocalRXOptions
}

// NewLocalRXDetector builds the node; components, inner and outer are LocalRXOptions.
func NewLocalRXDetector(name string, params map[string]any) (*LocalRXDetector, error) {
	p := nodes.NewParamReader(name, params)
	o := LocalRXOptions{Components: p.Int("components", 10), Inner: p.Int("inner", 2), Outer: p.Int("outer", 7)}
	p.Check(o.Components >= 1, "components", "must be >= 1, got %d", o.Components)
	p.Check(o.Inner >= 1 && o.Outer > o.Inner, "outer", "want 1 <= inner < outer, got inner %d, outer %d", o.Inner, o.Outer)
	if err := p.Done(); err != nil {
		return nil, err
	}
	return &LocalRXDetector{Base: nodes.Base{NodeName: name, TypeName: LocalRXTypeName}, params: p.Resolved(), o: o}, nil
}

// Inputs implements nodes.Node.
func (r *LocalRXDetector) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "cube", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C"), Doc: "hyperspectral cube"}}
}

// Outputs implements nodes.Node.
func (r *LocalRXDetector) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "scores", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "1"), Doc: "squared Mahalanobis distance to the local background"}}
}

// Stages implements nodes.Node.
func (r *LocalRXDetector) Stages() []nodes.Stage { return nil }

// Params implements nodes.Node.
func (r *LocalRXDetector) Params() map[string]any { return r.params }

// Forward implements nodes.Node; the scores carry no gradient.
func (r *LocalRXDetector) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	cube, ok := in["cube"].(*torch.Tensor)
	if !ok || !cube.Valid() {
		return nil, fmt.Errorf("node %q: input cube is missing or not a tensor (%T)", r.NodeName, in["cube"])
	}
	sh := cube.Shape()
	if len(sh) != 4 {
		return nil, fmt.Errorf("node %q: cube must be [B,H,W,C], got %s", r.NodeName, cube)
	}
	b, h, w, c := int(sh[0]), int(sh[1]), int(sh[2]), int(sh[3])
	s := ctx.Scope
	var data []float32
	var err error
	s.NoGrad(func() { data, err = s.To(cube, torch.CPU, torch.Float32).Float32s() })
	if err == nil {
		err = s.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", r.NodeName, err)
	}
	out := make([]float32, b*h*w)
	for i := 0; i < b; i++ {
		d, err := LocalRX(data[i*h*w*c:(i+1)*h*w*c], h, w, c, r.o)
		if err != nil {
			return nil, fmt.Errorf("node %q: image %d: %w", r.NodeName, i, err)
		}
		for j, v := range d {
			out[i*h*w+j] = float32(v)
		}
	}
	t := torch.FromSlice(s, cube.Device(), out, int64(b), int64(h), int64(w), 1)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: %w", r.NodeName, err)
	}
	return map[string]any{"scores": t}, nil
}

var _ nodes.Node = (*LocalRXDetector)(nil)
