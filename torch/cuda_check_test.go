package torch

// CUDA tests run by scripts/gpu_check.sh on a GPU machine (they skip elsewhere). Each
// compares CUDA results with a float64 reference computed on the CPU. Tolerances: float64
// on CUDA is held to 1e-12 (same arithmetic, other summation order); float32 convolutions
// and matmuls get 2e-3 relative because LibTorch allows TF32 on Hopper for them by default
// (10-bit mantissa inputs), and fp16 gets 1e-2.

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func needCUDA(t *testing.T) Device {
	t.Helper()
	if !CUDAAvailable() {
		t.Skip("no CUDA device")
	}
	return CUDA(0)
}

func cudaGen(t *testing.T, seed uint64, dev Device) *Generator {
	t.Helper()
	g, err := NewGenerator(seed, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Free)
	return g
}

// TestCUDAFusedKernels checks the fused Gumbel-Softmax (CUDA generator), min-max and blur
// forward and backward on CUDA against the CPU float64 references of fused_test.go.
func TestCUDAFusedKernels(t *testing.T) {
	dev := needCUDA(t)
	r := newRNG(301)
	s := newScope(t)

	t.Run("gumbel", func(t *testing.T) {
		const R, K, tau, eps = 6, 61, 0.5, 1e-6
		l := randF64(r, R*K, -2, 2)
		c := randF64(r, R*K, -1, 1)
		u := vals(t, s, s.Rand([]int64{R, K}, Float64, dev, cudaGen(t, 9, dev)))
		tl := FromSlice(s, dev, l, R, K)
		_ = tl.SetRequiresGrad(true)
		y := s.GumbelSoftmax(tl, tau, eps, false, cudaGen(t, 9, dev))
		s.Backward(s.Sum(s.Mul(y, FromSlice(s, dev, c, R, K)), false), nil, false)
		if y.Device() != dev {
			t.Fatalf("output on %v", y.Device())
		}
		want := gumbelRef(l, u, R, K, tau, eps)
		closeAll(t, "forward vs CPU float64 (same CUDA noise)", vals(t, s, y), want, 1e-12, 1e-12)
		// d/dl Σ c·softmax(z)/τ = y ⊙ (c − Σ c·y) / τ
		g := make([]float64, len(l))
		for i := 0; i < R; i++ {
			dot := 0.0
			for j := 0; j < K; j++ {
				dot += c[i*K+j] * want[i*K+j]
			}
			for j := 0; j < K; j++ {
				g[i*K+j] = want[i*K+j] * (c[i*K+j] - dot) / tau
			}
		}
		closeAll(t, "backward vs closed form", vals(t, s, s.Grad(tl)), g, 1e-12, 1e-10)
	})

	t.Run("minmax", func(t *testing.T) {
		const B, H, W, C = 2, 9, 7, 3
		for _, o := range []MinMaxOptions{{Eps: 1e-6}, {PerImage: true, Eps: 1e-6}, {UseGiven: true, Lo: -0.5, Hi: 0.6, Eps: 1e-6, Clamp: true}} {
			x := randF64(r, B*H*W*C, -1, 1)
			tx := FromSlice(s, dev, x, B, H, W, C)
			y := s.MinMaxNormalize(tx, o)
			closeAll(t, fmt.Sprintf("%+v", o), vals(t, s, y), minmaxRef(x, B, H, W, C, o), 1e-12, 1e-12)
		}
	})

	t.Run("blur", func(t *testing.T) {
		const h, w = 40, 37
		for _, pad := range []BlurPad{BlurZero, BlurReflect} {
			x := randF64(r, 2*h*w, 0, 1)
			rad := 13
			if pad == BlurReflect {
				rad = 16
			}
			want := blurRef(x, 2, h, w, 4, rad, pad == BlurReflect)
			y := s.GaussianBlur(FromSlice(s, dev, x, 2, h, w), 4, int64(rad), pad)
			closeAll(t, "float64", vals(t, s, y), want, 1e-12, 0)
			y32 := s.GaussianBlur(s.ToDType(FromSlice(s, dev, x, 2, h, w), Float32), 4, int64(rad), pad)
			closeAll(t, "float32 (TF32 allowed)", vals(t, s, y32), want, 2e-3, 0)
		}
	})
}

// TestCUDAAdamWZeroGrad checks one AdamW step on CUDA against its closed form (first step:
// p ← p(1 − lr·wd) − lr·g/(|g| + eps)), that ZeroGrad leaves no gradient (set to none, as
// PyTorch 2.x), and that a parameter without a gradient in a step is not decayed.
func TestCUDAAdamWZeroGrad(t *testing.T) {
	dev := needCUDA(t)
	r := newRNG(302)
	s := newScope(t)
	const n, lr, wd = 33, 0.01, 0.1
	p0, c, q0 := randF64(r, n, -1, 1), randF64(r, n, -1, 1), randF64(r, n, -1, 1)
	p := FromSlice(s, dev, p0, n)
	q := FromSlice(s, dev, q0, n)
	s.Keep(p, q)
	defer p.Free()
	defer q.Free()
	_ = p.SetRequiresGrad(true)
	_ = q.SetRequiresGrad(true)
	opt, err := NewOptimizer(AdamW, []*Tensor{p, q}, OptimConfig{LR: lr, WeightDecay: wd})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	// loss = Σ c·p² (q unused): g = 2c·p
	s.Backward(s.Sum(s.Mul(FromSlice(s, dev, c, n), s.Square(p)), false), nil, false)
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, n)
	for i := range want {
		g := 2 * c[i] * p0[i]
		want[i] = p0[i]*(1-lr*wd) - lr*g/(math.Abs(g)+1e-8)
	}
	closeAll(t, "AdamW step", vals(t, s, p), want, 1e-12, 1e-10)
	closeAll(t, "no gradient, no decay", vals(t, s, q), q0, 0, 0)
	if err := opt.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	if g := s.Grad(p); g != nil && g.Valid() {
		t.Errorf("gradient after ZeroGrad: %v, want none", g)
	}
}

// TestCUDAModule defines, saves, loads and runs a TorchScript module on CUDA, in float32
// and float16, against the CPU in float64.
func TestCUDAModule(t *testing.T) {
	dev := needCUDA(t)
	r := newRNG(303)
	s := newScope(t)
	w := randF64(r, 8*3, -1, 1)
	m, err := NewModule("CudaDemo")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	for i, err := range []error{
		m.RegisterBuffer("w", s.FromFloat32(f32s(w), 8, 3)),
		m.Define("def forward(self, x):\n    return torch.relu(torch.matmul(x, self.w)) + 0.5"),
	} {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	path := filepath.Join(t.TempDir(), "m.pt")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	lm, err := LoadModule(path, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Free()
	x := randF64(r, 5*8, -1, 1)
	want := make([]float64, 5*3)
	for i := 0; i < 5; i++ {
		for j := 0; j < 3; j++ {
			acc := 0.0
			for k := 0; k < 8; k++ {
				acc += float64(float32(x[i*8+k])) * float64(float32(w[k*3+j]))
			}
			want[i*3+j] = math.Max(acc, 0) + 0.5
		}
	}
	out := s.Forward(lm, s.To(s.FromFloat64(x, 5, 8), dev, Float32))
	if err := s.Err(); err != nil || len(out) != 1 {
		t.Fatalf("forward: %v (%d outputs)", err, len(out))
	}
	if out[0].Device() != dev {
		t.Errorf("output on %v", out[0].Device())
	}
	closeAll(t, "float32 (TF32 allowed)", vals(t, s, out[0]), want, 2e-3, 2e-3)
	if err := lm.To(dev, Float16); err != nil {
		t.Fatal(err)
	}
	out = s.Forward(lm, s.To(s.FromFloat64(x, 5, 8), dev, Float16))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if out[0].DType() != Float16 {
		t.Errorf("fp16 module returned %v", out[0].DType())
	}
	closeAll(t, "float16", vals(t, s, out[0]), want, 1e-2, 1e-2)
}

// TestCUDACopyAndSave copies host data into a CUDA tensor and saves and loads CUDA tensors.
func TestCUDACopyAndSave(t *testing.T) {
	dev := needCUDA(t)
	r := newRNG(304)
	s := newScope(t)
	a := randF32(r, 4*5, -1, 1)
	x := s.Zeros([]int64{4, 5}, Float32, dev)
	if err := CopyFrom(x, a); err != nil {
		t.Fatal(err)
	}
	got, err := x.Float32s()
	if err != nil || !slices.Equal(got, a) {
		t.Fatalf("copy into CUDA: %v %v", err, got)
	}
	path := filepath.Join(t.TempDir(), "t.pt")
	if err := SaveTensors(path, map[string]*Tensor{"x": x}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []Device{CPU, dev} {
		m, err := LoadTensors(path, to)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := m["x"].Float32s()
		if m["x"].Device() != to || !slices.Equal(v, a) {
			t.Errorf("loaded to %v: on %v, equal %v", to, m["x"].Device(), slices.Equal(v, a))
		}
		FreeAll(m)
	}
}

// TestCUDAMemoryBaseline: after a scope closes, CUDA memory in use and live handles are
// back where they started.
func TestCUDAMemoryBaseline(t *testing.T) {
	dev := needCUDA(t)
	if err := Synchronize(dev); err != nil {
		t.Fatal(err)
	}
	a0, _, _, err := CUDAMemory(dev)
	if err != nil {
		t.Fatal(err)
	}
	h0 := LiveTensors()
	s := NewScope()
	x := s.Randn([]int64{1024, 1024}, Float32, dev, nil)
	for i := 0; i < 10; i++ {
		x = s.Tanh(s.Matmul(x, x))
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	a1, _, _, _ := CUDAMemory(dev)
	s.Close()
	if err := Synchronize(dev); err != nil {
		t.Fatal(err)
	}
	a2, _, _, _ := CUDAMemory(dev)
	if a1 <= a0 {
		t.Errorf("allocated %d during the scope, %d before: the counter does not move", a1, a0)
	}
	if a2 != a0 || LiveTensors() != h0 {
		t.Errorf("after Close: allocated %d B (before %d), live handles %d (before %d)", a2, a0, LiveTensors(), h0)
	}
}

// TestCUDAOutOfMemory asks for far more than the card has: an error, and the process and
// the device carry on.
func TestCUDAOutOfMemory(t *testing.T) {
	dev := needCUDA(t)
	s := newScope(t)
	s.Empty([]int64{1 << 40}, Float32, dev) // 4 TiB
	err := s.Err()
	if err == nil {
		t.Fatal("a 4 TiB CUDA allocation succeeded")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "out of memory") {
		t.Errorf("error does not say out of memory: %v", err)
	}
	s2 := newScope(t)
	v, err := s2.Sum(s2.Ones([]int64{1000}, Float32, dev), false).Item()
	if err != nil || v != 1000 {
		t.Fatalf("after OOM: %v %v", v, err)
	}
}

// TestCUDAConcurrentScopes runs CUDA work from two goroutines at once, each against its own
// CPU float64 result.
func TestCUDAConcurrentScopes(t *testing.T) {
	dev := needCUDA(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for gi := 0; gi < 2; gi++ {
		wg.Add(1)
		go func(gi int) {
			defer wg.Done()
			r := newRNG(uint64(310 + gi))
			s := NewScope()
			defer s.Close()
			a := randF64(r, 64*64, -1, 1)
			x, xc := FromSlice(s, dev, a, 64, 64), s.FromFloat64(a, 64, 64)
			for i := 0; i < 50; i++ {
				x = s.Tanh(s.Matmul(x, x))
				xc = s.Tanh(s.Matmul(xc, xc))
			}
			g, err1 := x.Float64s()
			c, err2 := xc.Float64s()
			if err := s.Err(); err != nil || err1 != nil || err2 != nil {
				errs <- fmt.Errorf("goroutine %d: %v %v %v", gi, err, err1, err2)
				return
			}
			if d := maxAbsDiff(g, c); d > 1e-10 {
				errs <- fmt.Errorf("goroutine %d: CUDA and CPU differ by %g", gi, d)
			}
		}(gi)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
