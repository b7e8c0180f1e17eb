package torch

import (
	"bufio"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.pt")
	if err := os.WriteFile(corrupt, []byte("not a zip archive at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	mod, err := NewModule("E")
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Free()
	if err := mod.Define("def forward(self, x):\n    return x + 1"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		op  string
		run func(s *Scope) error
	}{
		{"matmul", func(s *Scope) error {
			s.Matmul(s.Zeros([]int64{2, 3}, Float32, CPU), s.Zeros([]int64{4, 5}, Float32, CPU))
			err := s.Err()
			if err != nil && !(strings.Contains(err.Error(), "[2,3]") && strings.Contains(err.Error(), "[4,5]")) {
				t.Errorf("matmul error does not name both shapes: %v", err)
			}
			return err
		}},
		{"conv2d", func(s *Scope) error {
			s.Conv2d(s.Zeros([]int64{1, 3, 5, 5}, Float32, CPU), s.Zeros([]int64{2, 4, 1, 1}, Float32, CPU), nil, ConvOptions{})
			return s.Err()
		}},
		{"reshape", func(s *Scope) error { s.Reshape(s.Zeros([]int64{2, 3}, Float32, CPU), 7); return s.Err() }},
		{"cat", func(s *Scope) error {
			s.Cat(0, s.Zeros([]int64{2, 3}, Float32, CPU), s.Zeros([]int64{2, 4}, Float32, CPU))
			return s.Err()
		}},
		{"select", func(s *Scope) error { s.Select(s.Zeros([]int64{2, 3}, Float32, CPU), 1, 3); return s.Err() }},
		{"narrow", func(s *Scope) error { s.Narrow(s.Zeros([]int64{2, 3}, Float32, CPU), 0, 1, 5); return s.Err() }},
		{"linalg_eigh", func(s *Scope) error { s.Eigh(s.Zeros([]int64{2, 3}, Float64, CPU)); return s.Err() }},
		{"interpolate", func(s *Scope) error {
			s.Interpolate(s.Zeros([]int64{1, 4, 4}, Float32, CPU), 8, 8, Bilinear, false, false)
			return s.Err()
		}},
		{"quantile", func(s *Scope) error { s.Quantile(s.Zeros([]int64{5}, Float32, CPU), 1.5, 0, false); return s.Err() }},
		{"backward", func(s *Scope) error {
			s.Backward(s.Sum(s.Ones([]int64{3}, Float32, CPU), false), nil, false)
			return s.Err()
		}},
		{"module forward", func(s *Scope) error {
			x := s.Ones([]int64{2}, Float32, CPU)
			s.Forward(mod, x, x)
			return s.Err()
		}},
		{"load", func(s *Scope) error { _, err := LoadTensors(corrupt, CPU); return err }},
		{"load module", func(s *Scope) error { _, err := LoadModule(corrupt, CPU); return err }},
		{"define", func(s *Scope) error {
			m, _ := NewModule("Bad")
			defer m.Free()
			return m.Define("def forward(self, x):\n    return x +* 2\n")
		}},
		{"optimizer", func(s *Scope) error {
			p := s.Ones([]int64{2}, Float32, CPU)
			_, err := NewOptimizer(Adam, []*Tensor{p}, OptimConfig{LR: 0})
			return err
		}},
		{"gumbel_softmax", func(s *Scope) error {
			s.GumbelSoftmax(s.Ones([]int64{2, 3}, Float32, CPU), -1, 1e-6, false, nil)
			return s.Err()
		}},
		{"minmax", func(s *Scope) error {
			s.MinMaxNormalize(s.Ones([]int64{2, 3}, Float32, CPU), MinMaxOptions{PerImage: true})
			return s.Err()
		}},
		{"gaussian_blur", func(s *Scope) error {
			s.GaussianBlur(s.Ones([]int64{2, 3, 4, 4}, Float32, CPU), 1, 0, BlurZero)
			return s.Err()
		}},
		{"from_slice", func(s *Scope) error { s.FromFloat32([]float32{1, 2, 3}, 2, 2); return s.Err() }},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			s := newScope(t)
			err := c.run(s)
			if err == nil {
				t.Fatalf("%s: no error", c.op)
			}
			first := strings.Fields(c.op)[0]
			if c.op == "load" || c.op == "load module" {
				first = "corrupt.pt"
			}
			torchError(t, err, first)
		})
	}
	// a missing file is a clear Go error naming the path
	if _, err := LoadTensors(filepath.Join(dir, "missing.pt"), CPU); err == nil || !strings.Contains(err.Error(), "missing.pt") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// the process survived all of this and LibTorch still works
	s := newScope(t)
	if v, _ := s.Sum(s.Ones([]int64{3}, Float32, CPU), false).Item(); v != 3 {
		t.Fatalf("LibTorch unusable after errors: %v", v)
	}
}

func TestScopeStickyError(t *testing.T) {
	s := newScope(t)
	a := s.Ones([]int64{2, 3}, Float32, CPU)
	bad := s.Matmul(a, a)
	if bad != nil {
		t.Fatal("failed op returned a tensor")
	}
	first := s.Err()
	// later ops, valid or not, are no-ops returning nil and keep the first error
	if s.Add(a, a) != nil || s.Reshape(a, 99) != nil || s.Err() != first {
		t.Fatal("scope not sticky")
	}
	torchError(t, first, "matmul")
	// nil inputs from the failed op are reported, not dereferenced
	s.ClearErr()
	if s.Add(bad, a) != nil || s.Err() == nil || !strings.Contains(s.Err().Error(), "nil or freed") {
		t.Fatalf("nil input: %v", s.Err())
	}
	s.Reset()
	if s.Err() != nil || s.Len() != 0 {
		t.Fatal("Reset kept the error or tensors")
	}
	if v, _ := s.Sum(s.Ones([]int64{4}, Float32, CPU), false).Item(); v != 4 {
		t.Fatal("scope unusable after Reset")
	}
	s.Close()
	if s.Ones([]int64{1}, Float32, CPU) != nil || !strings.Contains(s.Err().Error(), "closed") {
		t.Fatalf("closed scope: %v", s.Err())
	}
	// Run returns the scope's error
	err := Run(func(s *Scope) error { s.Reshape(s.Ones([]int64{2}, Float32, CPU), 3); return nil })
	torchError(t, err, "reshape")
}

func TestMemoryLifetimes(t *testing.T) {
	base := LiveTensors()
	s := NewScope()
	a := s.Ones([]int64{4}, Float32, CPU)
	b := s.Add(a, a)
	if got := LiveTensors() - base; got != 2 || s.Len() != 2 {
		t.Fatalf("live %d, scope %d; want 2", got, s.Len())
	}
	b.Free()
	b.Free() // idempotent
	if LiveTensors()-base != 1 || s.Len() != 1 || b.Valid() {
		t.Fatal("Free did not release")
	}
	kept := s.MulScalar(a, 3)
	s.Keep(kept)
	s.Reset()
	if LiveTensors()-base != 1 || !kept.Valid() || a.Valid() {
		t.Fatalf("after Reset: live %d", LiveTensors()-base)
	}
	if v, _ := kept.Float32s(); v[0] != 3 {
		t.Fatal("kept tensor lost its value")
	}
	s.Close()
	kept.Free()
	if LiveTensors() != base {
		t.Fatalf("live %d, want %d", LiveTensors(), base)
	}
	// the cleanup safety net frees a kept tensor that is dropped without Free
	func() {
		s := NewScope()
		defer s.Close()
		s.Keep(s.Ones([]int64{1024}, Float32, CPU))
	}()
	for i := 0; i < 20 && LiveTensors() != base; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if LiveTensors() != base {
		t.Fatalf("dropped kept tensor not collected: live %d, want %d", LiveTensors(), base)
	}
}

func rssKB(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return v
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestTrainingLoopMemory runs many forward+backward+AdamW steps of a small 1×1-conv model
// with a scope Reset per step: live handles return to baseline and RSS stays flat.
func TestTrainingLoopMemory(t *testing.T) {
	steps := 5000
	if testing.Short() {
		steps = 1000
	}
	r := newRNG(100)
	base := LiveTensors()
	s := NewScope()
	w1 := s.FromFloat32(randF32(r, 16*61, -0.1, 0.1), 16, 61, 1, 1)
	b1 := s.FromFloat32(randF32(r, 16, -0.1, 0.1), 16)
	w2 := s.FromFloat32(randF32(r, 3*16, -0.1, 0.1), 3, 16, 1, 1)
	b2 := s.FromFloat32(randF32(r, 3, -0.1, 0.1), 3)
	x := s.FromFloat32(randF32(r, 2*8*8*61, 0, 1), 2, 8, 8, 61)
	target := s.FromFloat32(randF32(r, 2*3*8*8, 0, 1), 2, 3, 8, 8)
	params := []*Tensor{w1, b1, w2, b2}
	s.Keep(append(params, x, target)...)
	defer func() {
		for _, p := range append(params, x, target) {
			p.Free()
		}
	}()
	for _, p := range params {
		_ = p.SetRequiresGrad(true)
	}
	opt, err := NewOptimizer(AdamW, params, OptimConfig{LR: 1e-3, WeightDecay: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	var rss500 int64
	var first, last float64
	start := time.Now()
	for step := 1; step <= steps; step++ {
		xin := s.Permute(x, 0, 3, 1, 2)
		h := s.LeakyRelu(s.Conv2d(xin, w1, b1, ConvOptions{}), 0.01)
		y := s.Sigmoid(s.Conv2d(h, w2, b2, ConvOptions{}))
		loss := s.Mean(s.Square(s.Sub(y, target)), false)
		_ = opt.ZeroGrad()
		s.Backward(loss, nil, false)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		if step == 1 {
			first, _ = loss.Item()
		}
		if step == steps {
			last, _ = loss.Item()
		}
		s.Reset()
		if step == 500 {
			rss500 = rssKB(t)
		}
	}
	s.Close()
	rssEnd := rssKB(t)
	t.Logf("%d steps in %v, loss %.5f -> %.5f, RSS %d kB at step 500, %d kB at the end", steps, time.Since(start), first, last, rss500, rssEnd)
	if !(last < first) {
		t.Errorf("loss did not decrease: %v -> %v", first, last)
	}
	if LiveTensors() != base+int64(len(params))+2 {
		t.Errorf("live tensors %d, want %d", LiveTensors(), base+int64(len(params))+2)
	}
	const boundKB = 30 * 1024
	if rssEnd-rss500 > boundKB {
		t.Errorf("RSS grew by %d kB between step 500 and %d (bound %d kB)", rssEnd-rss500, steps, boundKB)
	}
}

func TestDevices(t *testing.T) {
	if d, err := ParseDevice("cpu"); err != nil || d != CPU {
		t.Fatalf("cpu: %v %v", d, err)
	}
	d, err := ParseDevice("auto")
	if err != nil || (CUDAAvailable() != (d.Type == DeviceCUDA)) {
		t.Fatalf("auto: %v %v", d, err)
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Error("tpu accepted")
	}
	_, err = ParseDevice("cuda:0")
	if CUDAAvailable() {
		if err != nil {
			t.Fatalf("cuda:0: %v", err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("cuda:0 without a GPU: %v", err)
	}
	if _, err := ParseDevice("cuda:64"); err == nil {
		t.Error("cuda:64 accepted")
	}
}

func TestCUDA(t *testing.T) {
	if !CUDAAvailable() {
		t.Skip("no CUDA device")
	}
	dev := CUDA(0)
	r := newRNG(110)
	s := newScope(t)
	a, b := randF64(r, 64*32, -1, 1), randF64(r, 32*16, -1, 1)
	ta, tb := s.FromFloat64(a, 64, 32), s.FromFloat64(b, 32, 16)
	ga, gb := FromSlice(s, dev, a, 64, 32), s.ToDevice(tb, dev)
	if ga.Device() != dev || gb.Device() != dev {
		t.Fatalf("devices %v %v", ga.Device(), gb.Device())
	}
	closeAll(t, "matmul cuda vs cpu", vals(t, s, s.Matmul(ga, gb)), vals(t, s, s.Matmul(ta, tb)), 1e-10, 1e-10)
	closeAll(t, "softmax cuda vs cpu", vals(t, s, s.Softmax(ga, 1)), vals(t, s, s.Softmax(ta, 1)), 1e-12, 1e-12)
	x := s.FromFloat32(randF32(r, 2*1*20*20, 0, 1), 2, 1, 20, 20)
	closeAll(t, "blur cuda vs cpu", vals(t, s, s.GaussianBlur(s.ToDevice(x, dev), 2, 0, BlurReflect)),
		vals(t, s, s.GaussianBlur(x, 2, 0, BlurReflect)), 1e-5, 0)
	h := s.To(ga, dev, Float16)
	if h.DType() != Float16 || h.Device() != dev {
		t.Fatalf("fp16 conversion: %v", h)
	}
	closeAll(t, "fp16", vals(t, s, h), a, 1e-3, 1e-3)
	if err := Synchronize(dev); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := CUDAMemory(dev); err != nil {
		t.Logf("CUDAMemory: %v", err)
	}
}

func TestThreadsAndAllocator(t *testing.T) {
	prev := NumThreads()
	defer SetNumThreads(prev)
	for _, n := range []int{1, 2} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		if got := NumThreads(); got != n {
			t.Errorf("NumThreads = %d after SetNumThreads(%d)", got, n)
		}
	}
	torchError(t, SetNumThreads(0), "set_num_threads")

	if err := SetCachingAllocator(true); err != nil {
		t.Fatal(err)
	}
	defer SetCachingAllocator(false)
	_, h0, _, err := AllocatorStats()
	if err != nil {
		t.Fatal(err)
	}
	s := newScope(t)
	x := s.Ones([]int64{1 << 20}, Float32, CPU) // 4 MiB
	for i := 0; i < 10; i++ {
		y := s.SubScalar(x, 0.5)
		if v, _ := s.Sum(y, false).Item(); math.Abs(v-float64(1<<19)) > 1 {
			t.Fatalf("sum %v", v)
		}
		y.Free()
	}
	cached, h1, misses, err := AllocatorStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cached %d B, hits %d, misses %d", cached, h1-h0, misses)
	if h1-h0 < 8 {
		t.Errorf("caching allocator hits %d after 10 repeated 4 MiB allocations, want >= 8", h1-h0)
	}
	if err := SetCachingAllocator(false); err != nil {
		t.Fatal(err)
	}
	// tensors allocated under the cache are still freed correctly after switching off
	s.Reset()
}

// TestDeterministicSetting: SetDeterministic turns LibTorch's deterministic algorithms and
// cuDNN's deterministic mode on and off, fixes cuBLAS's workspace, and on LibTorch 2.x its
// documented side effect shows: a float tensor from empty() is all NaN while it is on.
func TestDeterministicSetting(t *testing.T) {
	was, err := Deterministic()
	if err != nil {
		t.Fatal(err)
	}
	defer SetDeterministic(was)
	for _, on := range []bool{true, false, true} {
		if err := SetDeterministic(on); err != nil {
			t.Fatal(err)
		}
		if got, err := Deterministic(); err != nil || got != on {
			t.Fatalf("after SetDeterministic(%v): %v, %v", on, got, err)
		}
	}
	if os.Getenv("CUBLAS_WORKSPACE_CONFIG") == "" {
		t.Error("CUBLAS_WORKSPACE_CONFIG is not set after SetDeterministic(true)")
	}
	if major, _, _ := strings.Cut(Version(), "."); major == "0" || major == "1" {
		return // LibTorch 1.x has no fill of uninitialised memory
	}
	s := NewScope()
	defer s.Close()
	e := s.Empty([]int64{4096}, Float32, CPU)
	v, err := e.Float32s()
	if err != nil || s.Err() != nil {
		t.Fatal(err, s.Err())
	}
	for i, x := range v {
		if !math.IsNaN(float64(x)) {
			t.Fatalf("LibTorch %s, deterministic: empty()[%d] = %v, want NaN (fill of uninitialised memory)", Version(), i, x)
		}
	}
}

// TestShimKernelsRunInParallel: at::parallel_for inside the shim (which every fused kernel
// uses) runs on as many threads as SetNumThreads allows, not on one: the shim must be built
// with OpenMP, LibTorch's parallel backend, whose parallel body is inline in the headers.
func TestShimKernelsRunInParallel(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing to run in parallel")
	}
	was := NumThreads()
	defer SetNumThreads(was)
	for _, n := range []int{1, 2} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		got, err := parallelThreads(64)
		if err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("SetNumThreads(%d): the shim's parallel_for ran on %d thread(s)", n, got)
		}
	}
}
