package torch

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// gumbelRef is softmax((logits + g)/tau) per row with g = -log(-log(u+eps)+eps).
func gumbelRef(l, u []float64, rows, k int, tau, eps float64) []float64 {
	out := make([]float64, len(l))
	for r := 0; r < rows; r++ {
		z := make([]float64, k)
		for j := range z {
			g := -math.Log(-math.Log(u[r*k+j]+eps) + eps)
			z[j] = (l[r*k+j] + g) / tau
		}
		m := slices.Max(z)
		sum := 0.0
		for j := range z {
			z[j] = math.Exp(z[j] - m)
			sum += z[j]
		}
		for j := range z {
			out[r*k+j] = z[j] / sum
		}
	}
	return out
}

func TestGumbelSoftmax(t *testing.T) {
	r := newRNG(70)
	const R, K = 5, 7
	const tau, eps = 0.7, 1e-6
	l := randF64(r, R*K, -2, 2)
	c := randF64(r, R*K, -1, 1)
	s := newScope(t)
	gen := func(seed uint64) *Generator {
		g, err := NewGenerator(seed, CPU)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Free)
		return g
	}
	// fused runs the op on fresh leaves and returns output and gradient of Σ c·y.
	fused := func(hard bool, seed uint64) ([]float64, []float64) {
		tl := s.FromFloat64(l, R, K)
		_ = tl.SetRequiresGrad(true)
		y := s.GumbelSoftmax(tl, tau, eps, hard, gen(seed))
		s.Backward(s.Sum(s.Mul(y, s.FromFloat64(c, R, K)), false), nil, false)
		return vals(t, s, y), vals(t, s, s.Grad(tl))
	}
	// composed builds the same function from separate ops with the same uniform noise.
	tu := s.Rand([]int64{R, K}, Float64, CPU, gen(5))
	u := vals(t, s, tu)
	tl := s.FromFloat64(l, R, K)
	_ = tl.SetRequiresGrad(true)
	g := s.Neg(s.Log(s.AddScalar(s.Neg(s.Log(s.AddScalar(tu, eps))), eps)))
	yc := s.Softmax(s.DivScalar(s.Add(tl, g), tau), -1)
	s.Backward(s.Sum(s.Mul(yc, s.FromFloat64(c, R, K)), false), nil, false)
	gradComposed := vals(t, s, s.Grad(tl))

	y, grad := fused(false, 5)
	want := gumbelRef(l, u, R, K, tau, eps)
	closeAll(t, "soft forward vs Go", y, want, 1e-12, 1e-12)
	closeAll(t, "soft forward vs composed", y, vals(t, s, yc), 1e-12, 1e-12)
	closeAll(t, "soft backward vs composed", grad, gradComposed, 1e-10, 1e-10)
	for i := 0; i < R; i++ {
		sum := 0.0
		for j := 0; j < K; j++ {
			sum += y[i*K+j]
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("row %d sums to %v", i, sum)
		}
	}
	y2, _ := fused(false, 5)
	if !slices.Equal(y, y2) {
		t.Error("same seed gave different samples")
	}
	if y3, _ := fused(false, 6); slices.Equal(y, y3) {
		t.Error("different seeds gave the same sample")
	}
	// hard: one-hot at the soft argmax, soft gradient (straight-through)
	yh, gh := fused(true, 5)
	for i := 0; i < R; i++ {
		row := want[i*K : (i+1)*K]
		am := slices.Index(row, slices.Max(row))
		for j := 0; j < K; j++ {
			if yh[i*K+j] != b2f(j == am) {
				t.Fatalf("hard row %d = %v, want one-hot at %d", i, yh[i*K:(i+1)*K], am)
			}
		}
	}
	closeAll(t, "hard gradient = soft gradient", gh, grad, 1e-12, 1e-12)
}

func TestGumbelSoftmaxFrequencies(t *testing.T) {
	s := newScope(t)
	const N = 20000
	logits := []float32{0.5, -1, 1.2, 0}
	big := s.Expand(s.FromFloat32(logits, 1, 4), N, 4)
	g, _ := NewGenerator(71, CPU)
	defer g.Free()
	var idx []int64
	s.NoGrad(func() {
		idx, _ = s.Argmax(s.GumbelSoftmax(big, 1, 1e-10, false, g), false, 1).Int64s()
	})
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	counts := make([]float64, 4)
	for _, i := range idx {
		counts[i]++
	}
	z := 0.0
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	for j, v := range logits {
		p := math.Exp(float64(v)) / z
		if f := counts[j] / N; math.Abs(f-p) > 0.015 {
			t.Errorf("class %d: frequency %.4f, softmax %.4f (bound 0.015)", j, f, p)
		}
	}
}

// minmaxRef normalises [B,H,W,C] data per image and channel, or globally, or with given
// statistics, in float64.
func minmaxRef(x []float64, b, h, w, c int, o MinMaxOptions) []float64 {
	out := make([]float64, len(x))
	norm := func(idx []int, lo, hi float64) {
		d := math.Max(hi-lo, o.Eps)
		for _, i := range idx {
			v := (x[i] - lo) / d
			if o.Clamp {
				v = math.Min(math.Max(v, 0), 1)
			}
			out[i] = v
		}
	}
	stats := func(idx []int) (float64, float64) {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, i := range idx {
			lo, hi = math.Min(lo, x[i]), math.Max(hi, x[i])
		}
		return lo, hi
	}
	if o.PerImage {
		for bi := 0; bi < b; bi++ {
			for ci := 0; ci < c; ci++ {
				var idx []int
				for p := 0; p < h*w; p++ {
					idx = append(idx, (bi*h*w+p)*c+ci)
				}
				lo, hi := stats(idx)
				norm(idx, lo, hi)
			}
		}
		return out
	}
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	lo, hi := o.Lo, o.Hi
	if !o.UseGiven {
		lo, hi = stats(idx)
	}
	norm(idx, lo, hi)
	return out
}

func TestMinMaxNormalize(t *testing.T) {
	const B, H, W, C = 2, 4, 5, 3
	cases := []struct {
		name string
		o    MinMaxOptions
		ties bool
	}{
		{"global", MinMaxOptions{Eps: 1e-6}, false},
		{"global ties", MinMaxOptions{Eps: 1e-6}, true},
		{"per image", MinMaxOptions{PerImage: true, Eps: 1e-6}, false},
		{"per image ties", MinMaxOptions{PerImage: true, Eps: 1e-6}, true},
		{"per image clamp", MinMaxOptions{PerImage: true, Eps: 1e-6, Clamp: true}, false},
		{"given", MinMaxOptions{UseGiven: true, Lo: -0.5, Hi: 0.6, Eps: 1e-6}, false},
		{"given clamp", MinMaxOptions{UseGiven: true, Lo: -0.5, Hi: 0.6, Eps: 1e-6, Clamp: true}, false},
		{"given eps", MinMaxOptions{UseGiven: true, Lo: 0.2, Hi: 0.2, Eps: 0.25}, false},
		{"per image eps", MinMaxOptions{PerImage: true, Eps: 3}, false},
	}
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRNG(uint64(80 + k))
			x := randF64(r, B*H*W*C, -1, 1)
			if c.ties {
				// three copies of each image-channel's minimum and two of its maximum
				for i := 0; i < len(x); i += 7 {
					x[i] = -1.5
				}
				for i := 3; i < len(x); i += 11 {
					x[i] = 1.5
				}
			}
			cw := randF64(r, len(x), -1, 1)
			want := minmaxRef(x, B, H, W, C, c.o)
			s := newScope(t)
			tx := s.FromFloat64(x, B, H, W, C)
			_ = tx.SetRequiresGrad(true)
			y := s.MinMaxNormalize(tx, c.o)
			closeAll(t, "forward", vals(t, s, y), want, 1e-12, 1e-12)
			s.Backward(s.Sum(s.Mul(y, s.FromFloat64(cw, B, H, W, C)), false), nil, false)
			got := vals(t, s, s.Grad(tx))

			tx2 := s.FromFloat64(x, B, H, W, C)
			_ = tx2.SetRequiresGrad(true)
			var lo, hi *Tensor
			switch {
			case c.o.UseGiven:
				lo, hi = s.Scalar(c.o.Lo, Float64, CPU), s.Scalar(c.o.Hi, Float64, CPU)
			case c.o.PerImage:
				lo, hi = s.Amin(tx2, true, 1, 2), s.Amax(tx2, true, 1, 2)
			default:
				lo, hi = s.Amin(tx2, false), s.Amax(tx2, false)
			}
			yc := s.Div(s.Sub(tx2, lo), s.ClampMin(s.Sub(hi, lo), c.o.Eps))
			if c.o.Clamp {
				yc = s.Clamp(yc, 0, 1)
			}
			s.Backward(s.Sum(s.Mul(yc, s.FromFloat64(cw, B, H, W, C)), false), nil, false)
			closeAll(t, "forward vs composed", vals(t, s, y), vals(t, s, yc), 1e-12, 1e-12)
			closeAll(t, "backward vs composed", got, vals(t, s, s.Grad(tx2)), 1e-10, 1e-10)
		})
	}
}

// blurRef convolves each [h,w] plane with a normalised Gaussian of radius rad, reading
// outside pixels as zero (reflect=false) or by scipy's half-sample symmetric reflection.
func blurRef(x []float64, n, h, w int, sigma float64, rad int, reflect bool) []float64 {
	k := make([]float64, 2*rad+1)
	sum := 0.0
	for i := -rad; i <= rad; i++ {
		k[i+rad] = math.Exp(-float64(i*i) / (2 * sigma * sigma))
		sum += k[i+rad]
	}
	for i := range k {
		k[i] /= sum
	}
	at := func(p []float64, i, j int) float64 {
		if reflect {
			for i < 0 || i >= h {
				if i < 0 {
					i = -i - 1
				} else {
					i = 2*h - 1 - i
				}
			}
			for j < 0 || j >= w {
				if j < 0 {
					j = -j - 1
				} else {
					j = 2*w - 1 - j
				}
			}
		} else if i < 0 || i >= h || j < 0 || j >= w {
			return 0
		}
		return p[i*w+j]
	}
	out := make([]float64, len(x))
	for b := 0; b < n; b++ {
		p := x[b*h*w : (b+1)*h*w]
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				acc := 0.0
				for di := -rad; di <= rad; di++ {
					for dj := -rad; dj <= rad; dj++ {
						acc += k[di+rad] * k[dj+rad] * at(p, i+di, j+dj)
					}
				}
				out[(b*h+i)*w+j] = acc
			}
		}
	}
	return out
}

func TestGaussianBlur(t *testing.T) {
	cases := []struct {
		name    string
		sigma   float64
		radius  int64
		pad     BlurPad
		h, w    int
		fourDim bool
	}{
		{"zero sigma1", 1, 0, BlurZero, 9, 11, false},
		{"zero sigma4", 4, 0, BlurZero, 30, 28, true},
		{"zero sigma0.6", 0.6, 0, BlurZero, 5, 6, false},
		{"reflect sigma1.5", 1.5, 6, BlurReflect, 10, 9, true},    // radius int(4·1.5+0.5)
		{"reflect radius > size", 2, 8, BlurReflect, 5, 4, false}, // radius int(4·2+0.5)
	}
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRNG(uint64(90 + k))
			x := randF64(r, 2*c.h*c.w, 0, 1)
			rad := int(c.radius)
			if rad <= 0 {
				rad = int(math.Floor(3*c.sigma)) + 1
			}
			want := blurRef(x, 2, c.h, c.w, c.sigma, rad, c.pad == BlurReflect)
			s := newScope(t)
			shape := []int64{2, int64(c.h), int64(c.w)}
			if c.fourDim {
				shape = []int64{2, 1, int64(c.h), int64(c.w)}
			}
			tx := s.FromFloat64(x, shape...)
			_ = tx.SetRequiresGrad(true)
			y := s.GaussianBlur(tx, c.sigma, c.radius, c.pad)
			if !shapeEq(y.Shape(), shape) {
				t.Fatalf("shape %v, want %v", y.Shape(), shape)
			}
			closeAll(t, "blur", vals(t, s, y), want, 1e-12, 0)
			// the blur is linear: the gradient of Σ c·blur(x) is the Go reference's
			// response to unit inputs, weighted by c
			cw := randF64(r, len(x), -1, 1)
			s.Backward(s.Sum(s.Mul(y, s.FromFloat64(cw, shape...)), false), nil, false)
			got := vals(t, s, s.Grad(tx))
			if len(x) > 200 {
				// the 2-D reference is slow on big maps; the forward check suffices there
				return
			}
			wantG := make([]float64, len(x))
			unit := make([]float64, len(x))
			for i := range x {
				unit[i] = 1
				resp := blurRef(unit, 2, c.h, c.w, c.sigma, rad, c.pad == BlurReflect)
				unit[i] = 0
				for j, v := range resp {
					wantG[i] += cw[j] * v
				}
			}
			closeAll(t, "blur gradient", got, wantG, 1e-12, 0)
		})
	}
}

// TestGaussianBlurFloat32BatchIndependent: the float32 CPU blur (the detector's map smoothing)
// gives every image of a batch exactly the result it gets alone, for every padding mode and
// thread count, so a served batch equals unbatched scoring bit for bit; forward and gradient
// agree with the float64 references (forward within float32 rounding, 2e-6 absolute on maps in
// [0,1]; gradient against the float64 path, 1e-5).
func TestGaussianBlurFloat32BatchIndependent(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	r := newRNG(uint64(rand.Int64()))
	const b, h, w = 5, 32, 29
	for _, threads := range []int{1, 2} {
		if err := SetNumThreads(threads); err != nil {
			t.Fatal(err)
		}
		for _, pad := range []BlurPad{BlurZero, BlurReflect, BlurMirror, BlurReplicate} {
			x := randF64(r, b*h*w, 0, 1)
			cw := randF64(r, b*h*w, -1, 1)
			const sigma, rad = 2, 9
			s := newScope(t)
			run := func(lo, n int) ([]float32, []float64) {
				tx := s.ToDType(s.FromFloat64(x[lo*h*w:(lo+n)*h*w], int64(n), h, w), Float32)
				_ = tx.SetRequiresGrad(true)
				y := s.GaussianBlur(tx, sigma, rad, pad)
				s.Backward(s.Sum(s.Mul(y, s.ToDType(s.FromFloat64(cw[lo*h*w:(lo+n)*h*w], int64(n), h, w), Float32)), false), nil, false)
				v, err := y.Float32s()
				if err != nil || s.Err() != nil {
					t.Fatal(err, s.Err())
				}
				return v, vals(t, s, s.Grad(tx))
			}
			all, gradAll := run(0, b)
			for i := 0; i < b; i++ {
				one, gradOne := run(i, 1)
				for j := range one {
					if one[j] != all[i*h*w+j] || gradOne[j] != gradAll[i*h*w+j] {
						t.Fatalf("threads %d pad %d image %d pixel %d: alone %v (grad %v), in the batch %v (grad %v)",
							threads, pad, i, j, one[j], gradOne[j], all[i*h*w+j], gradAll[i*h*w+j])
					}
				}
			}
			if pad == BlurZero || pad == BlurReflect {
				closeAll(t, "float32 forward vs float64 reference", f64s(all), blurRef(x, b, h, w, sigma, rad, pad == BlurReflect), 2e-6, 0)
			}
			// the gradient against the float64 path (index_select + conv2d, autograd)
			t64 := s.FromFloat64(x, b, h, w)
			_ = t64.SetRequiresGrad(true)
			y64 := s.GaussianBlur(t64, sigma, rad, pad)
			s.Backward(s.Sum(s.Mul(y64, s.FromFloat64(cw, b, h, w)), false), nil, false)
			closeAll(t, fmt.Sprintf("pad %d gradient vs float64", pad), gradAll, vals(t, s, s.Grad(t64)), 1e-5, 0)
		}
	}
}

// TestConv1x1MatchesFloat64 checks the reducers' 1×1 convolution (oneDNN for float32 on the
// CPU) on a channels-last view against a float64 loop, forward and all three gradients of
// Σ c·y, at one and two threads (at one thread conv2d would take im2col + BLAS instead).
func TestConv1x1MatchesFloat64(t *testing.T) {
	const B, H, W, C, O = 2, 5, 7, 61, 16
	r := newRNG(181)
	x := randF32(r, B*H*W*C, -1, 1)
	w := randF32(r, O*C, -0.3, 0.3)
	b := randF32(r, O, -0.5, 0.5)
	c := randF64(r, B*H*W*O, -1, 1) // c is [B,H,W,O]
	// float64 reference: y[p,o] = Σ_k x[p,k]·w[o,k] + b[o]
	P := B * H * W
	want := make([]float64, P*O)
	gx := make([]float64, P*C)
	gw := make([]float64, O*C)
	gb := make([]float64, O)
	for p := 0; p < P; p++ {
		for o := 0; o < O; o++ {
			acc := float64(b[o])
			cv := c[p*O+o]
			for k := 0; k < C; k++ {
				acc += float64(x[p*C+k]) * float64(w[o*C+k])
				gx[p*C+k] += cv * float64(w[o*C+k])
				gw[o*C+k] += cv * float64(x[p*C+k])
			}
			want[p*O+o] = acc
			gb[o] += cv
		}
	}
	prev := NumThreads()
	t.Cleanup(func() { _ = SetNumThreads(prev) })
	for _, threads := range []int{1, 2} {
		if err := SetNumThreads(threads); err != nil {
			t.Fatal(err)
		}
		s := newScope(t)
		tx := FromSlice(s, CPU, x, B, H, W, C)
		tw := FromSlice(s, CPU, w, O, C, 1, 1)
		tb := FromSlice(s, CPU, b, O)
		for _, l := range []*Tensor{tx, tw, tb} {
			if err := l.SetRequiresGrad(true); err != nil {
				t.Fatal(err)
			}
		}
		y := s.Permute(s.Conv1x1(s.Permute(tx, 0, 3, 1, 2), tw, tb), 0, 2, 3, 1) // [B,H,W,O]
		if sh := y.Shape(); !shapeEq(sh, []int64{B, H, W, O}) {
			t.Fatalf("shape %v", sh)
		}
		s.Backward(s.Sum(s.Mul(y, s.FromFloat64(c, B, H, W, O)), false), nil, false)
		name := fmt.Sprintf("%d threads", threads)
		closeAll(t, name+" forward", vals(t, s, y), want, 1e-5, 1e-5)
		closeAll(t, name+" grad x", vals(t, s, s.Grad(tx)), gx, 1e-5, 1e-5)
		closeAll(t, name+" grad w", vals(t, s, s.Grad(tw)), gw, 1e-4, 1e-5)
		closeAll(t, name+" grad b", vals(t, s, s.Grad(tb)), gb, 1e-4, 1e-5)
	}
	// a kernel that is not 1×1 is a clear error, not an abort
	s := newScope(t)
	s.Conv1x1(s.Zeros([]int64{1, 3, 4, 4}, Float32, CPU), s.Zeros([]int64{2, 3, 3, 3}, Float32, CPU), nil)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "conv1x1") {
		t.Fatalf("3×3 kernel: want a conv1x1 error, got %v", err)
	}
}

// mixRef is the mixer chain in float64: x [P,C], ws[i] [O,I] row-major, bs[i] [O] or nil.
func mixRef(x []float32, P, C int, ws [][]float32, bs [][]float32, scheme []int, slope float64, actHidden, actLast bool) []float64 {
	cur := f64s(x)
	in := C
	for l := range ws {
		out := scheme[l+1]
		next := make([]float64, P*out)
		act := actHidden
		if l == len(ws)-1 {
			act = actLast
		}
		for p := 0; p < P; p++ {
			for o := 0; o < out; o++ {
				acc := 0.0
				if bs[l] != nil {
					acc = float64(bs[l][o])
				}
				for i := 0; i < in; i++ {
					acc += cur[p*in+i] * float64(ws[l][o*in+i])
				}
				if act && acc < 0 {
					acc *= slope
				}
				next[p*out+o] = acc
			}
		}
		cur, in = next, out
	}
	return cur
}

// TestMixChainMatchesFloat64 checks the fused DRCNN forward against a float64 chain for
// the default scheme and for widths that take the generic (non-template) path, with and
// without biases and the last activation, at one and two threads; an image's result is the
// same bits alone and in a batch; gradients on with trainable weights is a clear error.
func TestMixChainMatchesFloat64(t *testing.T) {
	const B, H, W = 3, 9, 11
	r := newRNG(182)
	prev := NumThreads()
	t.Cleanup(func() { _ = SetNumThreads(prev) })
	cases := []struct {
		scheme        []int
		bias, actLast bool
		threads       int
		slope         float64
	}{
		{[]int{61, 16, 8, 3}, true, false, 1, 0.1},
		{[]int{61, 16, 8, 3}, true, true, 2, 0.01},
		{[]int{61, 37, 3}, false, false, 2, 0.2}, // 37 pads to 40: the generic path
		{[]int{7, 3}, true, true, 1, 0.1},        // one layer
	}
	for _, c := range cases {
		name := fmt.Sprint(c.scheme, " bias ", c.bias, " actLast ", c.actLast, " threads ", c.threads)
		if err := SetNumThreads(c.threads); err != nil {
			t.Fatal(err)
		}
		C := c.scheme[0]
		x := randF32(r, B*H*W*C, -1, 2)
		var ws, bs [][]float32
		s := newScope(t)
		var tws, tbs []*Tensor
		for l := 0; l+1 < len(c.scheme); l++ {
			in, out := c.scheme[l], c.scheme[l+1]
			w := randF32(r, out*in, -0.5, 0.5)
			ws = append(ws, w)
			tws = append(tws, FromSlice(s, CPU, w, int64(out), int64(in), 1, 1))
			var b []float32
			var tb *Tensor
			if c.bias {
				b = randF32(r, out, -0.3, 0.3)
				tb = FromSlice(s, CPU, b, int64(out))
			}
			bs = append(bs, b)
			tbs = append(tbs, tb)
		}
		want := mixRef(x, B*H*W, C, ws, bs, c.scheme, c.slope, true, c.actLast)
		s.SetGradEnabled(false)
		tx := FromSlice(s, CPU, x, B, H, W, int64(C))
		y := s.MixChain(tx, tws, tbs, c.slope, true, c.actLast)
		O := int64(c.scheme[len(c.scheme)-1])
		if sh := y.Shape(); !shapeEq(sh, []int64{B, H, W, O}) {
			t.Fatalf("%s: shape %v", name, sh)
		}
		got := vals(t, s, y)
		closeAll(t, name, got, want, 1e-5, 1e-5)
		// the second image alone gives the same bits as in the batch
		one := vals(t, s, s.MixChain(s.Narrow(tx, 0, 1, 1), tws, tbs, c.slope, true, c.actLast))
		n := int(H * W * O)
		if !slices.Equal(one, got[n:2*n]) {
			t.Errorf("%s: image 1 alone differs from image 1 in the batch (max %g)", name, maxAbsDiff(one, got[n:2*n]))
		}
	}
	s := newScope(t)
	w := s.Zeros([]int64{3, 5, 1, 1}, Float32, CPU)
	_ = w.SetRequiresGrad(true)
	s.SetGradEnabled(true)
	s.MixChain(s.Zeros([]int64{1, 2, 2, 5}, Float32, CPU), []*Tensor{w}, nil, 0.1, true, false)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "forward only") {
		t.Fatalf("gradients on: want a forward-only error, got %v", err)
	}
	s2 := newScope(t)
	s2.SetGradEnabled(false)
	s2.MixChain(s2.Zeros([]int64{1, 2, 2, 6}, Float32, CPU), []*Tensor{s2.Zeros([]int64{3, 5, 1, 1}, Float32, CPU)}, nil, 0.1, true, false)
	if err := s2.Err(); err == nil || !strings.Contains(err.Error(), "mix_chain") || !strings.Contains(err.Error(), "[O,6,1,1]") {
		t.Fatalf("wrong band count: want a mix_chain error naming the 6 input channels, got %v", err)
	}
}

// composedPreprocess is the detector node's composed pre-processing (nodes/detect).
func composedPreprocess(s *Scope, x *Tensor, size int64, mean, std *Tensor) *Tensor {
	mx := s.Amax(s.Detach(x), true, 1, 2, 3)
	big := s.ToDType(s.GtScalar(mx, 1), Float32)
	factor := s.RSubScalar(s.MulScalar(big, 1-1.0/255), 1)
	x = s.Clamp(s.Mul(x, factor), 0, 1)
	x = s.Contiguous(s.Permute(x, 0, 3, 1, 2))
	if sh := x.Shape(); sh[2] != size || sh[3] != size {
		x = s.Interpolate(x, size, size, Bicubic, false, true)
	}
	return s.Div(s.Sub(x, mean), std)
}

// TestClipPreprocessMatchesComposedAndPython checks the fused detector pre-processing
// against the composed LibTorch ops (the same bits) and against PyTorch's F.interpolate
// (antialias) path in Python (1e-5), for a batch holding a [0,1] image, a [0,255] image
// and one with values outside [0,1], resized down, up and not at all, at 1 and 2 threads.
func TestClipPreprocessMatchesComposedAndPython(t *testing.T) {
	r := newRNG(183)
	prev := NumThreads()
	t.Cleanup(func() { _ = SetNumThreads(prev) })
	mean := []float32{0.48145466, 0.4578275, 0.40821073}
	std := []float32{0.26862954, 0.26130258, 0.27577711}
	for _, c := range []struct {
		h, w    int64
		size    int64
		threads int
	}{{40, 36, 24, 1}, {20, 30, 32, 2}, {24, 24, 24, 2}} {
		if err := SetNumThreads(c.threads); err != nil {
			t.Fatal(err)
		}
		const B = 3
		n := int(c.h * c.w * 3)
		x := append(append(randF32(r, n, 0, 1), randF32(r, n, 0, 255)...), randF32(r, n, -0.3, 1)...)
		s := newScope(t)
		s.SetGradEnabled(false)
		tx := FromSlice(s, CPU, x, B, c.h, c.w, 3)
		tm, ts := FromSlice(s, CPU, mean, 1, 3, 1, 1), FromSlice(s, CPU, std, 1, 3, 1, 1)
		got := s.ClipPreprocess(tx, c.size, tm, ts)
		want := composedPreprocess(s, tx, c.size, tm, ts)
		name := fmt.Sprintf("%dx%d -> %d, %d threads", c.h, c.w, c.size, c.threads)
		if sh := got.Shape(); !shapeEq(sh, []int64{B, 3, c.size, c.size}) {
			t.Fatalf("%s: shape %v", name, sh)
		}
		gv, wv := vals(t, s, got), vals(t, s, want)
		if !slices.Equal(gv, wv) {
			t.Errorf("%s: differs from the composed ops (max %g)", name, maxAbsDiff(gv, wv))
		}
		path := filepath.Join(t.TempDir(), "x.pt")
		if err := SaveTensors(path, map[string]*Tensor{"x": tx}); err != nil {
			t.Fatal(err)
		}
		out := pythonTorch(t, `
import json, sys, torch
import torch.nn.functional as F
x = torch.load(sys.argv[1])["x"].double()
S = int(sys.argv[2])
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], dtype=torch.float64).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711], dtype=torch.float64).view(1, 3, 1, 1)
big = (x.amax(dim=(1, 2, 3), keepdim=True) > 1).double()
y = (x * (1 - big * (1 - 1 / 255))).clamp(0, 1).permute(0, 3, 1, 2)
if y.shape[2] != S or y.shape[3] != S:
    y = F.interpolate(y.float(), size=(S, S), mode="bicubic", align_corners=False, antialias=True).double()
print(json.dumps(((y - mean) / std).flatten().tolist()))
`, path, fmt.Sprint(c.size))
		var py []float64
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &py); err != nil {
			t.Fatalf("python output: %v", err)
		}
		closeAll(t, name+" vs python", gv, py, 1e-5, 1e-5)
	}
	s := newScope(t)
	s.SetGradEnabled(false)
	s.ClipPreprocess(s.Zeros([]int64{1, 4, 4, 4}, Float32, CPU), 8, s.Zeros([]int64{3}, Float32, CPU), s.Zeros([]int64{3}, Float32, CPU))
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "clip_preprocess") || !strings.Contains(err.Error(), "[B,H,W,3]") {
		t.Fatalf("4 channels: want a clip_preprocess error naming [B,H,W,3], got %v", err)
	}
}

// TrimCPUCache gives back the blocks the caching allocator holds unused, and a block freed
// afterwards (allocated before the trim) is still freed correctly.
func TestTrimCPUCache(t *testing.T) {
	if err := SetCachingAllocator(true); err != nil {
		t.Fatal(err)
	}
	defer SetCachingAllocator(false)
	s := newScope(t)
	keep := s.Ones([]int64{3 << 20}, Float32, CPU) // 12 MiB, alive across the trim
	a := s.Ones([]int64{5 << 20}, Float32, CPU)    // 20 MiB, freed into the cache
	a.Free()
	cached, _, _, err := AllocatorStats()
	if err != nil {
		t.Fatal(err)
	}
	if cached < 20<<20 {
		t.Fatalf("cached %d B after freeing 20 MiB, want at least that", cached)
	}
	released, err := TrimCPUCache()
	if err != nil {
		t.Fatal(err)
	}
	after, _, _, err := AllocatorStats()
	if err != nil {
		t.Fatal(err)
	}
	if released != cached || after != 0 {
		t.Fatalf("trim released %d B of %d cached, %d B left", released, cached, after)
	}
	if v, _ := s.Sum(keep, false).Item(); v != 3<<20 {
		t.Fatalf("kept tensor sums to %v after the trim", v)
	}
	keep.Free() // back into the (now empty) cache
	if c, _, _, _ := AllocatorStats(); c < 12<<20 {
		t.Fatalf("cached %d B after freeing the kept 12 MiB block", c)
	}
}
