// Package reduce holds the band-reduction nodes of the workflow: the statistically fitted
// TrainablePCA, the DRCNN LearnableChannelMixer and the Gumbel-Softmax ConcreteBandSelector.
// Each maps a [B,H,W,C] cube to a [B,H,W,k] image for a frozen RGB model.
package reduce

import (
	"fmt"
	"math"
	"sort"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func input4(node string, in map[string]any, port string, channels int) (*torch.Tensor, error) {
	x, err := nodes.TensorInput(node, in, port)
	if err != nil {
		return nil, err
	}
	sh := x.Shape()
	if len(sh) != 4 {
		return nil, fmt.Errorf("node %q: input %q has shape %v, want [B,H,W,C]", node, port, sh)
	}
	if channels > 0 && sh[3] != int64(channels) {
		return nil, fmt.Errorf("node %q: input %q has %d channels, want %d", node, port, sh[3], channels)
	}
	return x, nil
}

// covStats merges per-batch (n, mean, M2) triples with Chan et al.'s parallel update, so a
// covariance over any number of pixels needs O(C²) float64 memory and stays accurate where
// a raw Σxxᵀ − n·μμᵀ would cancel catastrophically.
type covStats struct {
	c    int
	n    float64
	mean []float64
	m2   []float64 // c×c, row-major
}

func newCovStats(c int) *covStats {
	return &covStats{c: c, mean: make([]float64, c), m2: make([]float64, c*c)}
}

// covBlockBytes bounds the float64 working set of one block of pixels in addBatch.
const covBlockBytes = 32 << 20

// addBatch folds the pixels of x ([..., C], any float dtype) into the statistics, in blocks
// of at most covBlockBytes as float64, so that a whole scene costs a few blocks rather than
// two float64 copies of it; each block's mean and centred scatter are computed by LibTorch in
// float64 and merged (Chan et al.).
func (cs *covStats) addBatch(x *torch.Tensor) error {
	sh := x.Shape()
	c := sh[len(sh)-1]
	if int(c) != cs.c {
		return fmt.Errorf("pixel vectors have %d channels, want %d", c, cs.c)
	}
	rows := int64(1)
	for _, d := range sh[:len(sh)-1] {
		rows *= d
	}
	block := max(1, int64(covBlockBytes)/(8*c))
	for r0 := int64(0); r0 < rows; r0 += block {
		if err := cs.addBlock(x, rows, r0, min(block, rows-r0)); err != nil {
			return err
		}
	}
	return nil
}

// addBlock folds rows [r0, r0+n) of x seen as [rows, C] into the statistics.
func (cs *covStats) addBlock(x *torch.Tensor, rows, r0, n int64) error {
	s := torch.NewScope()
	defer s.Close()
	var mb, m2b []float64
	var nb float64
	var err error
	s.NoGrad(func() {
		flat := s.ToDType(s.Narrow(s.Reshape(x, rows, int64(cs.c)), 0, r0, n), torch.Float64)
		mean := s.Mean(flat, false, 0)
		cen := s.Sub(flat, mean)
		m2 := s.Matmul(s.T(cen), cen)
		if err = s.Err(); err != nil {
			return
		}
		nb = float64(flat.Shape()[0])
		if mb, err = mean.Float64s(); err != nil {
			return
		}
		m2b, err = m2.Float64s()
	})
	if err != nil {
		return err
	}
	if nb == 0 {
		return nil
	}
	na := cs.n
	n2 := na + nb
	f := na * nb / n2
	delta := make([]float64, cs.c)
	for i := range delta {
		delta[i] = mb[i] - cs.mean[i]
	}
	for i := 0; i < cs.c; i++ {
		for j := 0; j < cs.c; j++ {
			cs.m2[i*cs.c+j] += m2b[i*cs.c+j] + delta[i]*delta[j]*f
		}
	}
	for i := range cs.mean {
		cs.mean[i] += delta[i] * nb / n2
	}
	cs.n = n2
	return nil
}

// eigen holds a fitted covariance's eigen-decomposition, sorted by descending eigenvalue
// and sign-normalised.
type eigen struct {
	values  []float64   // all C eigenvalues, descending
	vectors [][]float64 // vectors[i] is the unit eigenvector of values[i]
	total   float64     // trace of the covariance
}

// decompose returns the eigen-pairs of the sample covariance (N−1). Sign convention: each
// eigenvector's entry of largest magnitude (the first on ties) is made positive, so the
// result does not depend on the LAPACK build.
func (cs *covStats) decompose() (*eigen, error) {
	if cs.n < 2 {
		return nil, fmt.Errorf("need at least 2 training pixels, got %d", int(cs.n))
	}
	c := cs.c
	cov := make([]float64, c*c)
	total := 0.0
	for i := range cov {
		cov[i] = cs.m2[i] / (cs.n - 1)
	}
	for i := 0; i < c; i++ {
		total += cov[i*c+i]
		for j := i + 1; j < c; j++ { // exact symmetry
			m := 0.5 * (cov[i*c+j] + cov[j*c+i])
			cov[i*c+j], cov[j*c+i] = m, m
		}
	}
	s := torch.NewScope()
	defer s.Close()
	vals, vecs := s.Eigh(s.FromFloat64(cov, int64(c), int64(c)))
	if err := s.Err(); err != nil {
		return nil, err
	}
	w, err := vals.Float64s()
	if err != nil {
		return nil, err
	}
	v, err := vecs.Float64s() // columns are eigenvectors
	if err != nil {
		return nil, err
	}
	if slicesHaveNaN(w) {
		return nil, fmt.Errorf("covariance is not finite (NaN or Inf in the training data?)")
	}
	order := make([]int, c)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return w[order[a]] > w[order[b]] })
	e := &eigen{values: make([]float64, c), vectors: make([][]float64, c), total: total}
	for r, k := range order {
		e.values[r] = w[k]
		vec := make([]float64, c)
		best := 0
		for i := 0; i < c; i++ {
			vec[i] = v[i*c+k]
			if math.Abs(vec[i]) > math.Abs(vec[best]) {
				best = i
			}
		}
		if vec[best] < 0 {
			for i := range vec {
				vec[i] = -vec[i]
			}
		}
		e.vectors[r] = vec
	}
	return e, nil
}

func slicesHaveNaN(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return true
		}
	}
	return false
}

// topRows returns the first k eigenvectors as a row-major [k, C] slice, with zero rows
// where k exceeds the number of eigenvectors.
func (e *eigen) topRows(k, c int) []float64 {
	out := make([]float64, k*c)
	for r := 0; r < k && r < len(e.vectors); r++ {
		copy(out[r*c:(r+1)*c], e.vectors[r])
	}
	return out
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// moveKept moves a kept tensor to dev and returns the kept copy, freeing the old one.
// Leaves that required grad stay leaves that require grad.
func moveKept(t *torch.Tensor, dev torch.Device) (*torch.Tensor, error) {
	if t == nil || t.Device() == dev {
		return t, nil
	}
	grad := t.RequiresGrad()
	s := torch.NewScope()
	defer s.Close()
	var out *torch.Tensor
	s.NoGrad(func() { out = s.Contiguous(s.ToDevice(s.Detach(t), dev)) })
	if err := s.Err(); err != nil {
		return nil, err
	}
	if out == t {
		return t, nil
	}
	s.Keep(out)
	if grad {
		if err := out.SetRequiresGrad(true); err != nil {
			out.Free()
			return nil, err
		}
	}
	t.Free()
	return out, nil
}

var _ = nodes.Base{}
