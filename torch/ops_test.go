package torch

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func TestArithmetic(t *testing.T) {
	r := newRNG(1)
	s := newScope(t)
	a := randF64(r, 24, -2, 2)
	b := randF64(r, 24, 0.5, 2)
	ta, tb := s.FromFloat64(a, 4, 6), s.FromFloat64(b, 4, 6)
	cases := []struct {
		name string
		got  *Tensor
		f    func(x, y float64) float64
	}{
		{"add", s.Add(ta, tb), func(x, y float64) float64 { return x + y }},
		{"sub", s.Sub(ta, tb), func(x, y float64) float64 { return x - y }},
		{"mul", s.Mul(ta, tb), func(x, y float64) float64 { return x * y }},
		{"div", s.Div(ta, tb), func(x, y float64) float64 { return x / y }},
		{"maximum", s.Maximum(ta, tb), math.Max},
		{"minimum", s.Minimum(ta, tb), math.Min},
		{"pow", s.Pow(tb, ta), func(x, y float64) float64 { return math.Pow(y, x) }},
		{"addscalar", s.AddScalar(ta, 1.5), func(x, y float64) float64 { return x + 1.5 }},
		{"mulscalar", s.MulScalar(ta, -3), func(x, y float64) float64 { return -3 * x }},
		{"rsub", s.RSubScalar(ta, 2), func(x, y float64) float64 { return 2 - x }},
		{"exp", s.Exp(ta), func(x, y float64) float64 { return math.Exp(x) }},
		{"log", s.Log(tb), func(x, y float64) float64 { return math.Log(y) }},
		{"sqrt", s.Sqrt(tb), func(x, y float64) float64 { return math.Sqrt(y) }},
		{"sigmoid", s.Sigmoid(ta), func(x, y float64) float64 { return 1 / (1 + math.Exp(-x)) }},
		{"leaky_relu", s.LeakyRelu(ta, 0.1), func(x, y float64) float64 {
			if x < 0 {
				return 0.1 * x
			}
			return x
		}},
		{"clamp", s.Clamp(ta, -0.5, 0.7), func(x, y float64) float64 { return math.Min(math.Max(x, -0.5), 0.7) }},
		{"tanh", s.Tanh(ta), func(x, y float64) float64 { return math.Tanh(x) }},
		{"abs", s.Abs(ta), func(x, y float64) float64 { return math.Abs(x) }},
		{"where", s.Where(s.Gt(ta, tb), ta, tb), func(x, y float64) float64 {
			if x > y {
				return x
			}
			return y
		}},
		{"gt", s.ToDType(s.Gt(ta, tb), Float64), func(x, y float64) float64 { return b2f(x > y) }},
		{"le", s.ToDType(s.Le(ta, tb), Float64), func(x, y float64) float64 { return b2f(x <= y) }},
		{"eq_self", s.ToDType(s.Eq(ta, ta), Float64), func(x, y float64) float64 { return 1 }},
		{"ltscalar", s.ToDType(s.LtScalar(ta, 0.25), Float64), func(x, y float64) float64 { return b2f(x < 0.25) }},
		{"gescalar", s.ToDType(s.GeScalar(ta, 0.25), Float64), func(x, y float64) float64 { return b2f(x >= 0.25) }},
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := make([]float64, len(a))
			for i := range a {
				want[i] = c.f(a[i], b[i])
			}
			closeAll(t, c.name, vals(t, s, c.got), want, 1e-12, 1e-12)
		})
	}
	// broadcasting: [4,6] + [6]
	row := s.FromFloat64(b[:6], 6)
	want := make([]float64, 24)
	for i := range want {
		want[i] = a[i] + b[i%6]
	}
	closeAll(t, "broadcast add", vals(t, s, s.Add(ta, row)), want, 1e-12, 0)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestMatmul(t *testing.T) {
	r := newRNG(2)
	s := newScope(t)
	for _, dt := range []DType{Float64, Float32} {
		m, k, n := 5, 7, 4
		a, b := randF64(r, m*k, -1, 1), randF64(r, k*n, -1, 1)
		want := make([]float64, m*n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				for l := 0; l < k; l++ {
					want[i*n+j] += a[i*k+l] * b[l*n+j]
				}
			}
		}
		ta := s.ToDType(s.FromFloat64(a, int64(m), int64(k)), dt)
		tb := s.ToDType(s.FromFloat64(b, int64(k), int64(n)), dt)
		tol := 1e-12
		if dt == Float32 {
			tol = 1e-5
		}
		closeAll(t, "matmul "+dt.String(), vals(t, s, s.Matmul(ta, tb)), want, tol, 0)
		closeAll(t, "mm "+dt.String(), vals(t, s, s.Mm(ta, tb)), want, tol, 0)
		out := s.Empty([]int64{int64(m), int64(n)}, dt, CPU)
		closeAll(t, "matmul_out "+dt.String(), vals(t, s, s.MatmulOut(out, ta, tb)), want, tol, 0)
	}
}

// conv2dRef is a direct float64 convolution of x [N,C,H,W] with w [O,C,kh,kw].
func conv2dRef(x []float64, n, c, h, w int, wt []float64, o, kh, kw int, bias []float64, stride, pad int) ([]float64, int, int) {
	oh := (h+2*pad-kh)/stride + 1
	ow := (w+2*pad-kw)/stride + 1
	out := make([]float64, n*o*oh*ow)
	for b := 0; b < n; b++ {
		for oc := 0; oc < o; oc++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					acc := 0.0
					if bias != nil {
						acc = bias[oc]
					}
					for ic := 0; ic < c; ic++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								iy, ix := y*stride+i-pad, xx*stride+j-pad
								if iy < 0 || iy >= h || ix < 0 || ix >= w {
									continue
								}
								acc += x[((b*c+ic)*h+iy)*w+ix] * wt[((oc*c+ic)*kh+i)*kw+j]
							}
						}
					}
					out[((b*o+oc)*oh+y)*ow+xx] = acc
				}
			}
		}
	}
	return out, oh, ow
}

func TestConv2d(t *testing.T) {
	r := newRNG(3)
	cases := []struct {
		name           string
		k, stride, pad int
		bias           bool
	}{
		{"1x1", 1, 1, 0, true},
		{"3x3 pad1", 3, 1, 1, false},
		{"3x3 stride2 pad1", 3, 2, 1, true},
		{"3x3 stride2 pad0", 3, 2, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScope(t)
			n, ci, h, w, o := 2, 3, 7, 6, 4
			x := randF64(r, n*ci*h*w, -1, 1)
			wt := randF64(r, o*ci*c.k*c.k, -1, 1)
			var bias []float64
			var tb *Tensor
			if c.bias {
				bias = randF64(r, o, -1, 1)
				tb = s.FromFloat64(bias, int64(o))
			}
			want, oh, ow := conv2dRef(x, n, ci, h, w, wt, o, c.k, c.k, bias, c.stride, c.pad)
			y := s.Conv2d(s.FromFloat64(x, int64(n), int64(ci), int64(h), int64(w)),
				s.FromFloat64(wt, int64(o), int64(ci), int64(c.k), int64(c.k)), tb,
				ConvOptions{Stride: [2]int64{int64(c.stride), int64(c.stride)}, Padding: [2]int64{int64(c.pad), int64(c.pad)}})
			got := vals(t, s, y)
			if !shapeEq(y.Shape(), []int64{int64(n), int64(o), int64(oh), int64(ow)}) {
				t.Fatalf("shape %v, want [%d %d %d %d]", y.Shape(), n, o, oh, ow)
			}
			closeAll(t, "conv2d", got, want, 1e-12, 0)
		})
	}
}

func TestShapeOps(t *testing.T) {
	r := newRNG(4)
	s := newScope(t)
	const A, B, C = 2, 3, 4
	x := randF64(r, A*B*C, -1, 1)
	tx := s.FromFloat64(x, A, B, C)
	at := func(i, j, k int) float64 { return x[(i*B+j)*C+k] }

	p := s.Permute(tx, 2, 0, 1) // [C,A,B]
	got := vals(t, s, s.Contiguous(p))
	if !shapeEq(p.Shape(), []int64{C, A, B}) {
		t.Fatalf("permute shape %v", p.Shape())
	}
	for k := 0; k < C; k++ {
		for i := 0; i < A; i++ {
			for j := 0; j < B; j++ {
				if got[(k*A+i)*B+j] != at(i, j, k) {
					t.Fatalf("permute[%d,%d,%d] = %v, want %v", k, i, j, got[(k*A+i)*B+j], at(i, j, k))
				}
			}
		}
	}
	rs := s.Reshape(tx, 4, -1)
	if !shapeEq(rs.Shape(), []int64{4, 6}) || !slices.Equal(vals(t, s, rs), x) {
		t.Fatalf("reshape: shape %v or values changed", rs.Shape())
	}
	nr := s.Narrow(tx, 2, 1, 2) // [A,B,2]
	got = vals(t, s, nr)
	for i := 0; i < A; i++ {
		for j := 0; j < B; j++ {
			for k := 0; k < 2; k++ {
				if got[(i*B+j)*2+k] != at(i, j, k+1) {
					t.Fatalf("narrow mismatch at %d,%d,%d", i, j, k)
				}
			}
		}
	}
	sel := s.Select(tx, 1, 2) // [A,C]
	got = vals(t, s, sel)
	for i := 0; i < A; i++ {
		for k := 0; k < C; k++ {
			if got[i*C+k] != at(i, 2, k) {
				t.Fatalf("select mismatch at %d,%d", i, k)
			}
		}
	}
	tr := s.Transpose(tx, 0, 2)
	if !shapeEq(tr.Shape(), []int64{C, B, A}) {
		t.Fatalf("transpose shape %v", tr.Shape())
	}
	if sh := s.Unsqueeze(tx, 1).Shape(); !shapeEq(sh, []int64{A, 1, B, C}) {
		t.Fatalf("unsqueeze shape %v", sh)
	}
	if sh := s.Squeeze(s.Unsqueeze(tx, 0)).Shape(); !shapeEq(sh, []int64{A, B, C}) {
		t.Fatalf("squeeze shape %v", sh)
	}
	if sh := s.Flatten(tx, 1, 2).Shape(); !shapeEq(sh, []int64{A, B * C}) {
		t.Fatalf("flatten shape %v", sh)
	}
	// cat and stack
	y := randF64(r, A*B*C, -1, 1)
	ty := s.FromFloat64(y, A, B, C)
	ct := s.Cat(0, tx, ty)
	if !shapeEq(ct.Shape(), []int64{2 * A, B, C}) || !slices.Equal(vals(t, s, ct), append(slices.Clone(x), y...)) {
		t.Fatalf("cat dim 0 wrong (shape %v)", ct.Shape())
	}
	c2 := vals(t, s, s.Cat(2, tx, ty))
	for i := 0; i < A; i++ {
		for j := 0; j < B; j++ {
			for k := 0; k < 2*C; k++ {
				want := 0.0
				if k < C {
					want = at(i, j, k)
				} else {
					want = y[(i*B+j)*C+k-C]
				}
				if c2[(i*B+j)*2*C+k] != want {
					t.Fatalf("cat dim 2 mismatch at %d,%d,%d", i, j, k)
				}
			}
		}
	}
	st := s.Stack(1, tx, ty) // [A,2,B,C]
	got = vals(t, s, st)
	if !shapeEq(st.Shape(), []int64{A, 2, B, C}) {
		t.Fatalf("stack shape %v", st.Shape())
	}
	for i := 0; i < A; i++ {
		for j := 0; j < B*C; j++ {
			if got[(i*2)*B*C+j] != x[i*B*C+j] || got[(i*2+1)*B*C+j] != y[i*B*C+j] {
				t.Fatalf("stack mismatch at %d,%d", i, j)
			}
		}
	}
}

func TestReductions(t *testing.T) {
	r := newRNG(5)
	s := newScope(t)
	const A, B, C = 3, 4, 5
	x := randF64(r, A*B*C, -3, 3)
	tx := s.FromFloat64(x, A, B, C)
	// groups returns, for each output index, the flat input indices reduced into it.
	groups := func(dims []int) [][]int {
		red := map[int]bool{}
		for _, d := range dims {
			red[d] = true
		}
		sz := []int{A, B, C}
		m := map[string][]int{}
		var keys []string
		for i := 0; i < A; i++ {
			for j := 0; j < B; j++ {
				for k := 0; k < C; k++ {
					idx := []int{i, j, k}
					key := ""
					for d := 0; d < 3; d++ {
						if !red[d] {
							key += strconv.Itoa(idx[d]) + ","
						}
					}
					if _, ok := m[key]; !ok {
						keys = append(keys, key)
					}
					m[key] = append(m[key], (i*B+j)*C+k)
					_ = sz
				}
			}
		}
		out := make([][]int, len(keys))
		for i, k := range keys {
			out[i] = m[k]
		}
		return out
	}
	stat := func(name string, v []float64) float64 {
		n := float64(len(v))
		sum, mn, mx := 0.0, math.Inf(1), math.Inf(-1)
		for _, e := range v {
			sum += e
			mn, mx = math.Min(mn, e), math.Max(mx, e)
		}
		mean := sum / n
		ss := 0.0
		for _, e := range v {
			ss += (e - mean) * (e - mean)
		}
		switch name {
		case "sum":
			return sum
		case "mean":
			return mean
		case "amax":
			return mx
		case "amin":
			return mn
		case "var":
			return ss / (n - 1)
		case "std":
			return math.Sqrt(ss / (n - 1))
		case "var_biased":
			return ss / n
		}
		panic(name)
	}
	ops := map[string]func(dims ...int64) *Tensor{
		"sum":        func(d ...int64) *Tensor { return s.Sum(tx, false, d...) },
		"mean":       func(d ...int64) *Tensor { return s.Mean(tx, false, d...) },
		"amax":       func(d ...int64) *Tensor { return s.Amax(tx, false, d...) },
		"amin":       func(d ...int64) *Tensor { return s.Amin(tx, false, d...) },
		"var":        func(d ...int64) *Tensor { return s.Var(tx, true, false, d...) },
		"std":        func(d ...int64) *Tensor { return s.Std(tx, true, false, d...) },
		"var_biased": func(d ...int64) *Tensor { return s.Var(tx, false, false, d...) },
	}
	for _, dims := range [][]int{{1}, {0, 2}, {2}, {0, 1, 2}} {
		for name, f := range ops {
			t.Run(name+"/"+strconv.Itoa(len(dims)), func(t *testing.T) {
				d64 := make([]int64, len(dims))
				for i, d := range dims {
					d64[i] = int64(d)
				}
				var got *Tensor
				if len(dims) == 3 {
					got = f() // all dims
				} else {
					got = f(d64...)
				}
				var want []float64
				for _, g := range groups(dims) {
					v := make([]float64, len(g))
					for i, k := range g {
						v[i] = x[k]
					}
					want = append(want, stat(name, v))
				}
				closeAll(t, name, vals(t, s, got), want, 1e-12, 1e-12)
			})
		}
	}
	if sh := s.Sum(tx, true, 1).Shape(); !shapeEq(sh, []int64{A, 1, C}) {
		t.Errorf("keepdim shape %v", sh)
	}
}

func TestSoftmax(t *testing.T) {
	r := newRNG(6)
	s := newScope(t)
	const R, K = 4, 7
	x := randF64(r, R*K, -4, 4)
	tx := s.FromFloat64(x, R, K)
	want, wantLog := make([]float64, R*K), make([]float64, R*K)
	for i := 0; i < R; i++ {
		row := x[i*K : (i+1)*K]
		m := slices.Max(row)
		z := 0.0
		for _, v := range row {
			z += math.Exp(v - m)
		}
		for j, v := range row {
			want[i*K+j] = math.Exp(v-m) / z
			wantLog[i*K+j] = v - m - math.Log(z)
		}
	}
	closeAll(t, "softmax", vals(t, s, s.Softmax(tx, 1)), want, 1e-12, 1e-12)
	closeAll(t, "softmax -1", vals(t, s, s.Softmax(tx, -1)), want, 1e-12, 1e-12)
	closeAll(t, "log_softmax", vals(t, s, s.LogSoftmax(tx, 1)), wantLog, 1e-12, 1e-12)
}

func TestSortingAndQuantile(t *testing.T) {
	r := newRNG(7)
	s := newScope(t)
	const R, K = 3, 11
	x := randF64(r, R*K, -5, 5)
	tx := s.FromFloat64(x, R, K)
	sortedRows := make([][]float64, R)
	for i := range sortedRows {
		sortedRows[i] = slices.Clone(x[i*K : (i+1)*K])
		sort.Float64s(sortedRows[i])
	}
	sv, si := s.Sort(tx, 1, false)
	gv, gi := vals(t, s, sv), vals(t, s, si)
	tv, ti := s.TopK(tx, 3, 1, true, true)
	tvv, tiv := vals(t, s, tv), vals(t, s, ti)
	kv, _ := s.KthValue(tx, 4, 1, false)
	kvv := vals(t, s, kv)
	for i := 0; i < R; i++ {
		for j := 0; j < K; j++ {
			if gv[i*K+j] != sortedRows[i][j] {
				t.Fatalf("sort row %d col %d = %v, want %v", i, j, gv[i*K+j], sortedRows[i][j])
			}
			if x[i*K+int(gi[i*K+j])] != gv[i*K+j] {
				t.Fatalf("sort index row %d col %d points at %v", i, j, x[i*K+int(gi[i*K+j])])
			}
		}
		for j := 0; j < 3; j++ {
			if tvv[i*3+j] != sortedRows[i][K-1-j] || x[i*K+int(tiv[i*3+j])] != tvv[i*3+j] {
				t.Fatalf("topk row %d: %v", i, tvv[i*3:i*3+3])
			}
		}
		if kvv[i] != sortedRows[i][3] {
			t.Fatalf("kthvalue row %d = %v, want %v", i, kvv[i], sortedRows[i][3])
		}
	}
	// quantile with linear interpolation vs a Go implementation
	quant := func(sorted []float64, q float64) float64 {
		pos := q * float64(len(sorted)-1)
		lo := math.Floor(pos)
		hi := math.Min(lo+1, float64(len(sorted)-1))
		return sorted[int(lo)] + (pos-lo)*(sorted[int(hi)]-sorted[int(lo)])
	}
	all := slices.Clone(x)
	sort.Float64s(all)
	for _, q := range []float64{0, 0.1, 0.5, 0.73, 0.995, 1} {
		got := vals(t, s, s.Quantile(tx, q, 1, false))
		for i := 0; i < R; i++ {
			if w := quant(sortedRows[i], q); math.Abs(got[i]-w) > 1e-12 {
				t.Errorf("quantile q=%v row %d = %v, want %v", q, i, got[i], w)
			}
		}
		ga := vals(t, s, s.Quantile(tx, q, AllDims, false))
		if w := quant(all, q); math.Abs(ga[0]-w) > 1e-12 {
			t.Errorf("quantile(all) q=%v = %v, want %v", q, ga[0], w)
		}
	}
}

// bilinearRef resizes one [h,w] plane as PyTorch's upsample_bilinear2d (no antialias).
func bilinearRef(x []float64, h, w, oh, ow int, alignCorners bool) []float64 {
	src := func(d, in, out int) float64 {
		if alignCorners {
			if out == 1 {
				return 0
			}
			return float64(d) * float64(in-1) / float64(out-1)
		}
		v := (float64(d)+0.5)*float64(in)/float64(out) - 0.5
		return math.Max(v, 0)
	}
	out := make([]float64, oh*ow)
	for y := 0; y < oh; y++ {
		sy := src(y, h, oh)
		y0 := int(math.Floor(sy))
		y1 := min(y0+1, h-1)
		ly := sy - float64(y0)
		for xx := 0; xx < ow; xx++ {
			sx := src(xx, w, ow)
			x0 := int(math.Floor(sx))
			x1 := min(x0+1, w-1)
			lx := sx - float64(x0)
			out[y*ow+xx] = (1-ly)*((1-lx)*x[y0*w+x0]+lx*x[y0*w+x1]) + ly*((1-lx)*x[y1*w+x0]+lx*x[y1*w+x1])
		}
	}
	return out
}

func TestInterpolateBilinear(t *testing.T) {
	r := newRNG(8)
	cases := []struct {
		h, w, oh, ow int
		ac           bool
	}{
		{5, 7, 11, 9, true}, {5, 7, 11, 9, false}, {37, 37, 64, 64, true}, {12, 10, 5, 4, false}, {6, 6, 6, 6, false},
	}
	for _, c := range cases {
		t.Run(strconv.Itoa(c.h)+"to"+strconv.Itoa(c.oh)+"ac"+strconv.FormatBool(c.ac), func(t *testing.T) {
			s := newScope(t)
			x := randF64(r, 2*c.h*c.w, -1, 1)
			y := s.Interpolate(s.FromFloat64(x, 1, 2, int64(c.h), int64(c.w)), int64(c.oh), int64(c.ow), Bilinear, c.ac, false)
			got := vals(t, s, y)
			var want []float64
			for ch := 0; ch < 2; ch++ {
				want = append(want, bilinearRef(x[ch*c.h*c.w:(ch+1)*c.h*c.w], c.h, c.w, c.oh, c.ow, c.ac)...)
			}
			closeAll(t, "bilinear", got, want, 1e-12, 0)
		})
	}
}

func TestInterpolateBicubicAntialias(t *testing.T) {
	r := newRNG(9)
	s := newScope(t)
	// constant image stays constant when shrunk
	c := s.Full([]int64{1, 3, 40, 50}, 0.37, Float64, CPU)
	y := s.Interpolate(c, 13, 17, Bicubic, false, true)
	got := vals(t, s, y)
	if !shapeEq(y.Shape(), []int64{1, 3, 13, 17}) {
		t.Fatalf("shape %v", y.Shape())
	}
	for i, v := range got {
		if math.Abs(v-0.37) > 1e-12 {
			t.Fatalf("constant image not constant at %d: %v", i, v)
		}
	}
	// range: antialiased bicubic of [0,1] data stays within a small overshoot of [0,1];
	// smoothness: shrinking white noise reduces the variance (the filter averages).
	x := randF64(r, 64*64, 0, 1)
	tx := s.FromFloat64(x, 1, 1, 64, 64)
	small := vals(t, s, s.Interpolate(tx, 16, 16, Bicubic, false, true))
	plain := vals(t, s, s.Interpolate(tx, 16, 16, Bicubic, false, false))
	variance := func(v []float64) float64 {
		m := 0.0
		for _, e := range v {
			m += e
		}
		m /= float64(len(v))
		ss := 0.0
		for _, e := range v {
			ss += (e - m) * (e - m)
		}
		return ss / float64(len(v))
	}
	for _, v := range small {
		if v < -0.2 || v > 1.2 {
			t.Fatalf("antialiased value %v outside [-0.2,1.2]", v)
		}
	}
	if va, vp := variance(small), variance(plain); !(va < 0.5*vp) {
		t.Errorf("antialias did not smooth: var %v vs plain %v", va, vp)
	}
	// against PyTorch itself when available
	t.Run("python", func(t *testing.T) {
		dir := t.TempDir()
		in := dir + "/in.pt"
		x32 := s.ToDType(tx, Float32)
		if err := SaveTensors(in, map[string]*Tensor{"x": x32}); err != nil {
			t.Fatal(err)
		}
		out := pythonTorch(t, `
import sys, torch, torch.nn.functional as F
x = torch.load(sys.argv[1])["x"]
y = F.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
print(" ".join(repr(float(v)) for v in y.flatten()))
`, in)
		want := parseFloats(t, out)
		got := vals(t, s, s.Interpolate(x32, 16, 16, Bicubic, false, true))
		closeAll(t, "bicubic aa vs python", got, want, 1e-5, 0)
	})
}

func parseFloats(t *testing.T, s string) []float64 {
	t.Helper()
	var out []float64
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("parse %q: %v", f, err)
		}
		out = append(out, v)
	}
	return out
}

func TestAvgPool(t *testing.T) {
	r := newRNG(10)
	s := newScope(t)
	const H, W = 6, 8
	x := randF64(r, H*W, -1, 1)
	y := s.AvgPool2d(s.FromFloat64(x, 1, 1, H, W), [2]int64{3, 3}, [2]int64{1, 1}, [2]int64{1, 1}, false)
	got := vals(t, s, y)
	for i := 0; i < H; i++ {
		for j := 0; j < W; j++ {
			sum, n := 0.0, 0
			for di := -1; di <= 1; di++ {
				for dj := -1; dj <= 1; dj++ {
					if i+di >= 0 && i+di < H && j+dj >= 0 && j+dj < W {
						sum += x[(i+di)*W+j+dj]
						n++
					}
				}
			}
			if math.Abs(got[i*W+j]-sum/float64(n)) > 1e-12 {
				t.Fatalf("avg_pool at %d,%d = %v, want %v", i, j, got[i*W+j], sum/float64(n))
			}
		}
	}
}

func TestLinalg(t *testing.T) {
	r := newRNG(11)
	s := newScope(t)
	const N = 6
	m := randF64(r, N*N, -1, 1)
	sym := make([]float64, N*N)
	for i := 0; i < N; i++ {
		for j := 0; j < N; j++ {
			sym[i*N+j] = m[i*N+j] + m[j*N+i]
		}
	}
	w, v := s.Eigh(s.FromFloat64(sym, N, N))
	wv, vv := vals(t, s, w), vals(t, s, v)
	for i := 1; i < N; i++ {
		if wv[i] < wv[i-1] {
			t.Fatalf("eigenvalues not ascending: %v", wv)
		}
	}
	rec := make([]float64, N*N)
	for i := 0; i < N; i++ {
		for j := 0; j < N; j++ {
			for k := 0; k < N; k++ {
				rec[i*N+j] += vv[i*N+k] * wv[k] * vv[j*N+k]
			}
		}
	}
	closeAll(t, "eigh reconstruction", rec, sym, 1e-10, 0)

	const M, K = 7, 4
	a := randF64(r, M*K, -1, 1)
	u, sv, vh := s.SVD(s.FromFloat64(a, M, K), false)
	uv, svv, vhv := vals(t, s, u), vals(t, s, sv), vals(t, s, vh)
	rec = make([]float64, M*K)
	for i := 0; i < M; i++ {
		for j := 0; j < K; j++ {
			for k := 0; k < K; k++ {
				rec[i*K+j] += uv[i*K+k] * svv[k] * vhv[k*K+j]
			}
		}
	}
	closeAll(t, "svd reconstruction", rec, a, 1e-10, 0)
	// pinv: A⁺A = I for a full-column-rank A
	pi := vals(t, s, s.Pinv(s.FromFloat64(a, M, K)))
	for i := 0; i < K; i++ {
		for j := 0; j < K; j++ {
			acc := 0.0
			for k := 0; k < M; k++ {
				acc += pi[i*M+k] * a[k*K+j]
			}
			if math.Abs(acc-b2f(i == j)) > 1e-10 {
				t.Fatalf("pinv(A)·A [%d,%d] = %v", i, j, acc)
			}
		}
	}
}

func TestRandomSeeded(t *testing.T) {
	s := newScope(t)
	const n = 20000
	draw := func(seed uint64, kind string) []float64 {
		g, err := NewGenerator(seed, CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Free()
		switch kind {
		case "rand":
			return vals(t, s, s.Rand([]int64{n}, Float64, CPU, g))
		case "randn":
			return vals(t, s, s.Randn([]int64{n}, Float64, CPU, g))
		default:
			return vals(t, s, s.Uniform([]int64{n}, -2, 3, Float64, CPU, g))
		}
	}
	cases := []struct {
		kind           string
		mean, variance float64
		lo, hi         float64
	}{
		{"rand", 0.5, 1.0 / 12, 0, 1},
		{"randn", 0, 1, math.Inf(-1), math.Inf(1)},
		{"uniform", 0.5, 25.0 / 12, -2, 3},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			a, b, other := draw(42, c.kind), draw(42, c.kind), draw(43, c.kind)
			if !slices.Equal(a, b) {
				t.Fatal("same seed gave different values")
			}
			if slices.Equal(a, other) {
				t.Fatal("different seeds gave the same values")
			}
			m, v := 0.0, 0.0
			for _, e := range a {
				if e < c.lo || e >= c.hi {
					t.Fatalf("value %v outside [%v,%v)", e, c.lo, c.hi)
				}
				m += e
			}
			m /= n
			for _, e := range a {
				v += (e - m) * (e - m)
			}
			v /= n - 1
			sd := math.Sqrt(c.variance)
			// 5 standard errors of the mean; 5% on the variance
			if math.Abs(m-c.mean) > 5*sd/math.Sqrt(n) {
				t.Errorf("mean %v, want %v", m, c.mean)
			}
			if math.Abs(v-c.variance) > 0.05*c.variance {
				t.Errorf("variance %v, want %v", v, c.variance)
			}
		})
	}
	// ManualSeed makes the default generator reproducible too.
	if err := ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	a := vals(t, s, s.Rand([]int64{16}, Float32, CPU, nil))
	if err := ManualSeed(7); err != nil {
		t.Fatal(err)
	}
	if b := vals(t, s, s.Rand([]int64{16}, Float32, CPU, nil)); !slices.Equal(a, b) {
		t.Error("ManualSeed did not reproduce the default generator")
	}
}

func TestDTypeRoundTrip(t *testing.T) {
	r := newRNG(12)
	src := randF64(r, 12, -3, 3)
	for i := range src {
		src[i] = math.Round(src[i]*4) / 4 // exactly representable in every float type
	}
	for _, dt := range []DType{Float32, Float16, BFloat16, Float64, Int64, Int32, Uint8, Bool} {
		t.Run(dt.String(), func(t *testing.T) {
			s := newScope(t)
			want := make([]float64, len(src))
			for i, v := range src {
				switch {
				case dt == Bool:
					want[i] = b2f(v != 0)
				case dt == Uint8:
					want[i] = math.Trunc(math.Abs(v))
				case !dt.IsFloat():
					want[i] = math.Trunc(v)
				default:
					want[i] = v
				}
			}
			if dt == Uint8 {
				for i := range src {
					src[i] = math.Abs(src[i])
				}
			}
			x := s.ToDType(s.FromFloat64(src, 3, 4), dt)
			if x.DType() != dt || x.Numel() != 12 {
				t.Fatalf("dtype %v numel %d", x.DType(), x.Numel())
			}
			closeAll(t, "to "+dt.String(), vals(t, s, x), want, 0, 0)
			// CopyFrom with float32 then CopyTo float32 and int64
			in := make([]float32, 12)
			for i := range in {
				in[i] = float32(want[len(want)-1-i])
			}
			if err := CopyFrom(x, in); err != nil {
				t.Fatal(err)
			}
			out := make([]float32, 12)
			if err := CopyTo(x, out); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(in, out) {
				t.Fatalf("CopyFrom/CopyTo: %v != %v", out, in)
			}
			// FromSlice in the native Go type, where one exists.
			var y *Tensor
			switch dt {
			case Int64:
				y = FromSlice(s, CPU, []int64{1, -2, 3}, 3)
			case Int32:
				y = FromSlice(s, CPU, []int32{1, -2, 3}, 3)
			case Uint8:
				y = FromSlice(s, CPU, []uint8{1, 2, 255}, 3)
			case Bool:
				y = FromSlice(s, CPU, []bool{true, false, true}, 3)
			case Float64:
				y = FromSlice(s, CPU, []float64{1.5, -2, 1e-300}, 3)
			default:
				y = s.ToDType(FromSlice(s, CPU, []float32{1.5, -2, 0.25}, 3), dt)
			}
			if y.DType() != dt {
				t.Fatalf("FromSlice dtype %v", y.DType())
			}
			b, err := Values[bool](y)
			if err != nil || len(b) != 3 || !b[0] {
				t.Fatalf("Values[bool]: %v %v", b, err)
			}
			if dt == Uint8 {
				u, _ := Values[uint8](y)
				if u[2] != 255 {
					t.Fatalf("uint8 round trip %v", u)
				}
			}
			if dt == Float64 {
				f, _ := y.Float64s()
				if f[2] != 1e-300 {
					t.Fatalf("float64 round trip lost precision: %v", f)
				}
			}
		})
	}
}
