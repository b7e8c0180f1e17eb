package dataset

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// stoneStats gathers the figures that show where the stone signal sits in a synthetic set.
type stoneStats struct {
	wl          []float32
	fisher      []float64 // per band, stone vs lentil
	pcaVar      []float64 // eigenvalues of the all-pixel covariance, descending
	ldaVar      float64   // all-pixel variance along the stone-vs-lentil LDA direction
	jPCA3       float64   // LDA Fisher criterion in the top-3 PCA space
	jBest3      float64   // best LDA Fisher criterion over all 3-band subsets
	best3       [3]int
	stonePixels int
}

func computeStoneStats(t *testing.T, d *Dataset) stoneStats {
	t.Helper()
	C := d.Bands
	var all, stones, lentils [][]float64
	for _, f := range d.Frames {
		s, err := d.Load(f.ID)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < s.H*s.W; p++ {
			v := make([]float64, C)
			for b := range v {
				v[b] = float64(s.Cube[p*C+b])
			}
			switch s.ClassIDs[p] {
			case ClassStone:
				stones = append(stones, v)
			case ClassLentilsBlack, ClassLentilsBrown:
				if p%2 == 0 {
					lentils = append(lentils, v)
				}
			}
			if p%3 == 0 {
				all = append(all, v)
			}
		}
	}
	st := stoneStats{wl: d.Wavelengths, stonePixels: len(stones)}
	mean := func(xs [][]float64) []float64 {
		m := make([]float64, C)
		for _, x := range xs {
			for b := range m {
				m[b] += x[b]
			}
		}
		for b := range m {
			m[b] /= float64(len(xs))
		}
		return m
	}
	cov := func(xs [][]float64, m []float64) *mat.SymDense {
		c := mat.NewSymDense(C, nil)
		for i := 0; i < C; i++ {
			for j := i; j < C; j++ {
				s := 0.0
				for _, x := range xs {
					s += (x[i] - m[i]) * (x[j] - m[j])
				}
				c.SetSym(i, j, s/float64(len(xs)-1))
			}
		}
		return c
	}
	ms, ml := mean(stones), mean(lentils)
	cs, cl := cov(stones, ms), cov(lentils, ml)
	st.fisher = make([]float64, C)
	for b := 0; b < C; b++ {
		st.fisher[b] = sq(ms[b]-ml[b]) / (cs.At(b, b) + cl.At(b, b))
	}
	// PCA of every (sub-sampled) pixel, as a variance-driven reduction sees the data.
	X := mat.NewDense(len(all), C, nil)
	for i, x := range all {
		X.SetRow(i, x)
	}
	var pc stat.PC
	if !pc.PrincipalComponents(X, nil) {
		t.Fatal("PCA failed")
	}
	st.pcaVar = pc.VarsTo(nil)
	var vecs mat.Dense
	pc.VectorsTo(&vecs)

	// Within-class scatter and the LDA direction w = Sw⁻¹ (μs − μl).
	sw := mat.NewSymDense(C, nil)
	sw.AddSym(cs, cl)
	for b := 0; b < C; b++ {
		sw.SetSym(b, b, sw.At(b, b)+1e-9)
	}
	diff := mat.NewVecDense(C, nil)
	for b := 0; b < C; b++ {
		diff.SetVec(b, ms[b]-ml[b])
	}
	var w mat.VecDense
	if err := w.SolveVec(sw, diff); err != nil {
		t.Fatal(err)
	}
	w.ScaleVec(1/mat.Norm(&w, 2), &w)
	call := cov(all, mean(all))
	st.ldaVar = mat.Inner(&w, call, &w)

	// Fisher criterion J = dᵀ S⁻¹ d restricted to a subspace given by a C×k basis.
	fisherIn := func(basis *mat.Dense) float64 {
		var d3 mat.VecDense
		d3.MulVec(basis.T(), diff)
		var tmp, s3 mat.Dense
		tmp.Mul(basis.T(), sw)
		s3.Mul(&tmp, basis)
		var x mat.VecDense
		if err := x.SolveVec(&s3, &d3); err != nil {
			return 0
		}
		return mat.Dot(&d3, &x)
	}
	st.jPCA3 = fisherIn(mat.DenseCopyOf(vecs.Slice(0, C, 0, 3)))
	for i := 0; i < C; i++ {
		for j := i + 1; j < C; j++ {
			for k := j + 1; k < C; k++ {
				idx := []int{i, j, k}
				var s3 mat.SymDense
				s3.ReuseAsSym(3)
				d3 := mat.NewVecDense(3, nil)
				for a := 0; a < 3; a++ {
					d3.SetVec(a, diff.AtVec(idx[a]))
					for c := a; c < 3; c++ {
						s3.SetSym(a, c, sw.At(idx[a], idx[c]))
					}
				}
				var x mat.VecDense
				if err := x.SolveVec(&s3, d3); err != nil {
					continue
				}
				if J := mat.Dot(d3, &x); J > st.jBest3 && !math.IsInf(J, 0) {
					st.jBest3, st.best3 = J, [3]int{i, j, k}
				}
			}
		}
	}
	return st
}
