package detect

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

const abuPath = "../../../shared/data/real/abu-airport-1.mat"

// gonumRX is global RX in float64 with gonum's SVD-based pseudo-inverse.
func gonumRX(cube []float32, n, c int) []float64 {
	mu := make([]float64, c)
	for p := 0; p < n; p++ {
		for k := 0; k < c; k++ {
			mu[k] += float64(cube[p*c+k]) / float64(n)
		}
	}
	xc := mat.NewDense(n, c, nil)
	for p := 0; p < n; p++ {
		for k := 0; k < c; k++ {
			xc.Set(p, k, float64(cube[p*c+k])-mu[k])
		}
	}
	var cov mat.Dense
	cov.Mul(xc.T(), xc)
	cov.Scale(1/float64(n-1), &cov)
	var svd mat.SVD
	svd.Factorize(&cov, mat.SVDFull)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	vals := svd.Values(nil)
	inv := mat.NewDense(c, c, nil)
	for i, sv := range vals {
		if sv <= vals[0]*float64(c)*1e-15 {
			continue
		}
		var outer mat.Dense
		outer.Outer(1/sv, v.ColView(i), u.ColView(i))
		inv.Add(inv, &outer)
	}
	out := make([]float64, n)
	for p := 0; p < n; p++ {
		row := xc.RowView(p)
		out[p] = mat.Inner(row, inv, row)
	}
	return out
}

func TestRXMatchesGonum(t *testing.T) {
	cases := []struct {
		name     string
		h, w, c  int
		singular bool
	}{
		{"full rank", 12, 9, 5, false},
		{"duplicate band (singular covariance)", 10, 10, 6, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, uint64(tc.c)))
			n := tc.h * tc.w
			cube := make([]float32, n*tc.c)
			for p := 0; p < n; p++ {
				for k := 0; k < tc.c; k++ {
					cube[p*tc.c+k] = float32(rng.NormFloat64()*float64(k+1) + 3)
				}
				if tc.singular {
					cube[p*tc.c+tc.c-1] = cube[p*tc.c]
				}
			}
			got, err := RX(cube, tc.h, tc.w, tc.c)
			if err != nil {
				t.Fatal(err)
			}
			want := gonumRX(cube, n, tc.c)
			for p := range want {
				if math.Abs(got[p]-want[p]) > 1e-8*math.Max(1, want[p]) || math.IsNaN(got[p]) {
					t.Fatalf("pixel %d: %g, gonum %g", p, got[p], want[p])
				}
			}
		})
	}
	if _, err := RX(make([]float32, 10), 2, 2, 2); err == nil {
		t.Error("RX with a wrong length succeeded")
	}
}

func TestRXNodePerImage(t *testing.T) {
	const b, h, w, c = 2, 8, 7, 4
	rng := rand.New(rand.NewPCG(3, 3))
	data := make([]float32, b*h*w*c)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	n, err := nodes.NewRegistry().New(RXTypeName, "rx", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	out, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"cube": s.FromFloat32(data, b, h, w, c)})
	if err != nil {
		t.Fatal(err)
	}
	sc := out["scores"].(*torch.Tensor)
	if sh := sc.Shape(); len(sh) != 4 || sh[3] != 1 || sh[0] != b {
		t.Fatalf("shape %v", sh)
	}
	got, _ := sc.Float32s()
	for i := 0; i < b; i++ {
		want := gonumRX(data[i*h*w*c:(i+1)*h*w*c], h*w, c)
		for p := range want {
			if math.Abs(float64(got[i*h*w+p])-want[p]) > 1e-4*math.Max(1, want[p]) {
				t.Fatalf("image %d pixel %d: %g, want %g", i, p, got[i*h*w+p], want[p])
			}
		}
	}
	if _, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"cube": s.FromFloat32(data, b*h*w*c)}); err == nil {
		t.Error("1-D cube accepted")
	}
	if _, err := NewRXDetector("rx", map[string]any{"sigma": 1}); err == nil {
		t.Error("unknown parameter accepted")
	}
}

// TestRXOnABUAirport checks the reader and RX end to end against the published global-RX
// pixel ROC AUC of 0.8221 on ABU airport-1 (Pant et al. 2025, table 5).
func TestRXOnABUAirport(t *testing.T) {
	if _, err := os.Stat(abuPath); err != nil {
		t.Skipf("ABU scene not available (%v); see /work/shared/data/real/README.md", err)
	}
	cube, gt, err := dataset.LoadScene(abuPath, dataset.SceneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gt == nil || cube.H != 100 || cube.W != 100 || cube.C != 205 {
		t.Fatalf("unexpected scene %dx%dx%d (gt %v)", cube.H, cube.W, cube.C, gt != nil)
	}
	scores, err := RX(cube.Data, cube.H, cube.W, cube.C)
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]bool, len(gt.IDs))
	for i, v := range gt.IDs {
		labels[i] = v != 0
	}
	auc := ROCAUC(scores, labels)
	t.Logf("global RX pixel ROC AUC on ABU airport-1: %.4f (published 0.8221)", auc)
	if math.Abs(auc-0.8221) > 0.001 {
		t.Errorf("AUC %.4f, want 0.8221 ± 0.001", auc)
	}
}
