package reduce

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func newCtx(stage nodes.Stage) *nodes.Context {
	return &nodes.Context{Stage: stage, Scope: torch.NewScope(), Device: torch.CPU, MaxEpochs: 20}
}

// spectra returns n pixels of c correlated channels (a few latent factors plus noise),
// offset from zero so that centring matters.
func spectra(rng *rand.Rand, n, c int) []float32 {
	lat := 3
	mix := make([]float64, lat*c)
	for i := range mix {
		mix[i] = rng.NormFloat64()
	}
	out := make([]float32, n*c)
	for p := 0; p < n; p++ {
		z := []float64{3 * rng.NormFloat64(), 2 * rng.NormFloat64(), rng.NormFloat64()}
		for j := 0; j < c; j++ {
			v := 5.0 + 0.1*rng.NormFloat64()
			for l := 0; l < lat; l++ {
				v += z[l] * mix[l*c+j]
			}
			out[p*c+j] = float32(v)
		}
	}
	return out
}

// goPCA is the independent reference: float64 sample covariance and gonum's EigenSym,
// sorted descending, with the same sign convention.
func goPCA(t *testing.T, x []float32, c int) (mean []float64, vals []float64, vecs [][]float64, trace float64) {
	t.Helper()
	n := len(x) / c
	mean = make([]float64, c)
	for p := 0; p < n; p++ {
		for j := 0; j < c; j++ {
			mean[j] += float64(x[p*c+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	cov := mat.NewSymDense(c, nil)
	for i := 0; i < c; i++ {
		for j := i; j < c; j++ {
			s := 0.0
			for p := 0; p < n; p++ {
				s += (float64(x[p*c+i]) - mean[i]) * (float64(x[p*c+j]) - mean[j])
			}
			cov.SetSym(i, j, s/float64(n-1))
		}
		trace += cov.At(i, i)
	}
	var es mat.EigenSym
	if !es.Factorize(cov, true) {
		t.Fatal("gonum eigen failed")
	}
	w := es.Values(nil)
	var ev mat.Dense
	es.VectorsTo(&ev)
	idx := make([]int, c)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return w[idx[a]] > w[idx[b]] })
	for _, k := range idx {
		vals = append(vals, w[k])
		v := make([]float64, c)
		best := 0
		for i := range v {
			v[i] = ev.At(i, k)
			if math.Abs(v[i]) > math.Abs(v[best]) {
				best = i
			}
		}
		if v[best] < 0 {
			for i := range v {
				v[i] = -v[i]
			}
		}
		vecs = append(vecs, v)
	}
	return
}

func tensorOf(t *testing.T, s *torch.Scope, data []float32, shape ...int64) *torch.Tensor {
	t.Helper()
	x := s.FromFloat32(data, shape...)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return x
}

func values(t *testing.T, x *torch.Tensor) []float64 {
	t.Helper()
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustNode(t *testing.T, typ string, params map[string]any) nodes.Node {
	t.Helper()
	n, err := nodes.Builtins.New(typ, "n", params)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := n.(nodes.Closer); ok {
		t.Cleanup(c.Close)
	}
	return n
}
