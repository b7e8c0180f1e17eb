package detect

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/spectraclip/spectraclip/torch"
)

// boxMean is avg_pool2d with stride 1, padding k/2 and count_include_pad=False, in float64.
func boxMean(img []float64, h, w, k int) []float64 {
	out := make([]float64, h*w)
	r := k / 2
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			sum, n := 0.0, 0
			for yy := y - r; yy <= y+r; yy++ {
				for xx := x - r; xx <= x+r; xx++ {
					if yy >= 0 && yy < h && xx >= 0 && xx < w {
						sum += img[yy*w+xx]
						n++
					}
				}
			}
			out[y*w+x] = sum / float64(n)
		}
	}
	return out
}

// referenceBuiltin scores one CLIP-normalised [3,h,w] image the way the built-in detector is
// documented to, entirely in float64 with gonum's inverse.
func referenceBuiltin(x []float32, h, w int, scales []int, ridge float64) (pix []float64, img float64) {
	n := h * w
	var feats [][]float64
	var rgb [3][]float64
	for c := 0; c < 3; c++ {
		rgb[c] = make([]float64, n)
		for p := 0; p < n; p++ {
			rgb[c][p] = float64(x[c*n+p])*float64(clipStd[c]) + float64(clipMean[c])
		}
	}
	var base [3][]float64
	for c := 0; c < 3; c++ {
		base[c] = boxMean(rgb[c], h, w, 3)
		feats = append(feats, base[c])
	}
	for _, k := range scales {
		for c := 0; c < 3; c++ {
			m := boxMean(rgb[c], h, w, k)
			f := make([]float64, n)
			for p := range f {
				f[p] = base[c][p] - m[p]
			}
			feats = append(feats, f)
		}
	}
	nf := len(feats)
	mu := make([]float64, nf)
	for i, f := range feats {
		for _, v := range f {
			mu[i] += v
		}
		mu[i] /= float64(n)
	}
	cov := mat.NewSymDense(nf, nil)
	tr := 0.0
	for i := 0; i < nf; i++ {
		for j := i; j < nf; j++ {
			s := 0.0
			for p := 0; p < n; p++ {
				s += (feats[i][p] - mu[i]) * (feats[j][p] - mu[j])
			}
			cov.SetSym(i, j, s/float64(n-1))
		}
		tr += cov.At(i, i)
	}
	add := tr/float64(nf)*ridge + 1e-12
	for i := 0; i < nf; i++ {
		cov.SetSym(i, i, cov.At(i, i)+add)
	}
	var inv mat.Dense
	if err := inv.Inverse(cov); err != nil {
		panic(err)
	}
	pix = make([]float64, n)
	v := make([]float64, nf)
	for p := 0; p < n; p++ {
		for i := range v {
			v[i] = feats[i][p] - mu[i]
		}
		vv := mat.NewVecDense(nf, v)
		d := mat.Inner(vv, &inv, vv)
		pix[p] = 1 - math.Exp(-math.Max(d, 0)/(2*float64(nf)))
	}
	sorted := append([]float64(nil), pix...)
	sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
	k := max(1, n/100)
	for _, s := range sorted[:k] {
		img += s
	}
	return pix, img / float64(k)
}

func TestBuiltinMatchesFloat64Reference(t *testing.T) {
	cases := []struct {
		name   string
		opts   BuiltinOptions
		h, w   int
		scales []int
	}{
		{"default scales", BuiltinOptions{ImageSize: 32}, 32, 32, []int{3, 7, 15}},
		{"one scale, non-square", BuiltinOptions{ImageSize: 24, Scales: []int{5}, Ridge: 0.01}, 24, 20, []int{5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := BuildBuiltin(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			rng := rand.New(rand.NewPCG(11, uint64(tc.h)))
			x := make([]float32, 3*tc.h*tc.w)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			ridge := tc.opts.Ridge
			if ridge == 0 {
				ridge = 1e-3
			}
			want, wantImg := referenceBuiltin(x, tc.h, tc.w, tc.scales, ridge)
			s := torch.NewScope()
			defer s.Close()
			outs := s.Forward(m, s.FromFloat32(x, 1, 3, int64(tc.h), int64(tc.w)))
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			got, _ := outs[0].Float32s()
			gotImg, _ := outs[1].Item()
			worst := 0.0
			for i := range want {
				worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
			}
			if worst > 2e-4 {
				t.Errorf("pixel scores differ from the float64 reference by up to %g (tolerance 2e-4)", worst)
			}
			if math.Abs(gotImg-wantImg) > 2e-4 {
				t.Errorf("image score %g, reference %g", gotImg, wantImg)
			}
		})
	}
}

func TestBuiltinContractAfterSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "builtin.pt")
	if err := WriteBuiltin(path, BuiltinOptions{ImageSize: 64, Prompt: "lentils"}); err != nil {
		t.Fatal(err)
	}
	m, err := torch.LoadModule(path, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	attrs := []struct {
		name, kind, str string
		i               int64
	}{
		{"image_size", "int", "", 64},
		{"contract_version", "int", "", ContractVersion},
		{"backbone", "string", "none", 0},
		{"prompt", "string", "lentils", 0},
		{"weight_name", "string", "none", 0},
		{"detector_name", "string", BuiltinName, 0},
	}
	for _, a := range attrs {
		v, err := m.Attr(a.name)
		if err != nil {
			t.Fatal(err)
		}
		if v.Kind != a.kind || v.String != a.str || v.Int != a.i {
			t.Errorf("attribute %s = %+v, want kind %s %q/%d", a.name, v, a.kind, a.str, a.i)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	g, _ := torch.NewGenerator(3, torch.CPU)
	defer g.Free()
	outs := s.Forward(m, s.Randn([]int64{3, 3, 64, 64}, torch.Float32, torch.CPU, g))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 {
		t.Fatalf("forward returned %d outputs, want 2", len(outs))
	}
	if sh := outs[0].Shape(); len(sh) != 3 || sh[0] != 3 || sh[1] != 64 || sh[2] != 64 {
		t.Errorf("pixel scores shape %v, want [3,64,64]", sh)
	}
	if sh := outs[1].Shape(); len(sh) != 1 || sh[0] != 3 {
		t.Errorf("image scores shape %v, want [3]", sh)
	}
	for _, o := range outs {
		v, _ := o.Float32s()
		for _, x := range v {
			if !(x >= 0 && x <= 1) {
				t.Fatalf("score %g outside [0,1]", x)
			}
		}
	}
}

func TestBuiltinOptionErrors(t *testing.T) {
	cases := []BuiltinOptions{{ImageSize: 4}, {Scales: []int{4}}, {Scales: []int{1}}, {ImageSize: 16, Scales: []int{17}}, {Ridge: -1}}
	for _, o := range cases {
		if m, err := BuildBuiltin(o); err == nil {
			m.Free()
			t.Errorf("BuildBuiltin(%+v) succeeded, want an error", o)
		}
	}
	if err := WriteBuiltin(filepath.Join(t.TempDir(), "no", "such", "dir.pt"), BuiltinOptions{}); err == nil {
		t.Error("WriteBuiltin into a missing folder succeeded")
	}
	if _, err := os.Stat(filepath.Join(t.TempDir(), "no")); err == nil {
		t.Error("WriteBuiltin left a folder behind")
	}
}
