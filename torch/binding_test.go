package torch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Named element types, allowed by Element's ~T constraints.
type (
	nF32  float32
	nF64  float64
	nI64  int64
	nI32  int32
	nU8   uint8
	nBool bool
	nI8   int8
	nI16  int16
)

func roundTrip[E Element](t *testing.T, s *Scope, name string, want DType, data []E) {
	t.Helper()
	if got := DTypeOf[E](); got != want {
		t.Errorf("%s: DTypeOf = %s, want %s", name, got, want)
	}
	x := FromSlice(s, CPU, data, int64(len(data)))
	if err := s.Err(); err != nil {
		t.Fatalf("%s: FromSlice: %v", name, err)
	}
	if x.DType() != want {
		t.Errorf("%s: tensor dtype %s, want %s", name, x.DType(), want)
	}
	back, err := Values[E](x)
	if err != nil {
		t.Fatalf("%s: Values: %v", name, err)
	}
	for i := range data {
		if back[i] != data[i] {
			t.Errorf("%s[%d] = %v, want %v", name, i, back[i], data[i])
			break
		}
	}
	// the tensor's values read as float64 agree with the Go values (a dtype mix-up
	// that happens to round-trip through the same wrong dtype is caught here)
	f, err := x.Float64s()
	if err != nil {
		t.Fatalf("%s: Float64s: %v", name, err)
	}
	for i := range data {
		var w float64
		switch v := any(data[i]).(type) {
		case nBool:
			if v {
				w = 1
			}
		case bool:
			if v {
				w = 1
			}
		default:
			w = toF64(data[i])
		}
		if f[i] != w {
			t.Errorf("%s: as float64 [%d] = %v, want %v", name, i, f[i], w)
			break
		}
	}
}

func toF64[E Element](v E) float64 {
	switch x := any(v).(type) {
	case nF32:
		return float64(x)
	case nF64:
		return float64(x)
	case nI64:
		return float64(x)
	case nI32:
		return float64(x)
	case nU8:
		return float64(x)
	case nI8:
		return float64(x)
	case nI16:
		return float64(x)
	case float32:
		return float64(x)
	case float64:
		return x
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case uint8:
		return float64(x)
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	}
	panic("unreachable")
}

// TestDTypeOfNamedTypes: a named element type (type Score float32) maps to the dtype of
// its underlying type, and FromSlice/Values round-trip it (issue 11.8).
func TestDTypeOfNamedTypes(t *testing.T) {
	r := newRNG(11)
	s := newScope(t)
	n := 17
	f32 := make([]nF32, n)
	f64 := make([]nF64, n)
	i64 := make([]nI64, n)
	i32 := make([]nI32, n)
	u8 := make([]nU8, n)
	bl := make([]nBool, n)
	i8 := make([]nI8, n)
	i16 := make([]nI16, n)
	for i := 0; i < n; i++ {
		f32[i] = nF32(r.Float64()*200 - 100)
		f64[i] = nF64(r.NormFloat64() * 1e5)
		i64[i] = nI64(r.Int64() - r.Int64())
		i32[i] = nI32(r.Int32() - r.Int32())
		u8[i] = nU8(r.IntN(256))
		bl[i] = nBool(r.IntN(2) == 1)
		i8[i] = nI8(r.IntN(256) - 128)
		i16[i] = nI16(r.IntN(65536) - 32768)
	}
	roundTrip(t, s, "named float32", Float32, f32)
	roundTrip(t, s, "named float64", Float64, f64)
	roundTrip(t, s, "named int64", Int64, i64)
	roundTrip(t, s, "named int32", Int32, i32)
	roundTrip(t, s, "named uint8", Uint8, u8)
	roundTrip(t, s, "named bool", Bool, bl)
	roundTrip(t, s, "named int8", Int8, i8)
	roundTrip(t, s, "named int16", Int16, i16)
	// the plain types still map as before
	roundTrip(t, s, "float32", Float32, []float32{1.5, -2})
	roundTrip(t, s, "int16", Int16, []int16{-3, 7})
	roundTrip(t, s, "bool", Bool, []bool{true, false})
}

// TestSaveTensorsNilEntryFreesCStrings: a nil map entry after valid ones is reported by
// name and leaves no C string behind (issue 11.12).
func TestSaveTensorsNilEntryFreesCStrings(t *testing.T) {
	s := newScope(t)
	a := s.Ones([]int64{2}, Float32, CPU)
	path := filepath.Join(t.TempDir(), "t.pt")
	base := liveCStrings.Load()
	err := SaveTensors(path, map[string]*Tensor{"a": a, "b": a, "c": nil})
	if err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Fatalf("want an error naming key \"c\", got %v", err)
	}
	if d := liveCStrings.Load() - base; d != 0 {
		t.Errorf("%d C strings leaked by a failed save", d)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("failed save left %s behind (%v)", path, err)
	}
}

// TestCopyFromBumpsVersion: overwriting a tensor that autograd saved for backward through
// CopyFrom (the CPU memcpy fast path) makes backward fail as PyTorch does, instead of
// silently using the new values (issue 11.12).
func TestCopyFromBumpsVersion(t *testing.T) {
	r := newRNG(12)
	s := newScope(t)
	p := FromSlice(s, CPU, randF32(r, 6, -1, 1), 6)
	if err := p.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	b := FromSlice(s, CPU, randF32(r, 6, -1, 1), 6) // saved by mul for p's gradient
	loss := s.Sum(s.Mul(p, b), false)
	if err := CopyFrom(b, randF32(r, 6, -1, 1)); err != nil {
		t.Fatal(err)
	}
	s.Backward(loss, nil, false)
	err := s.Err()
	if err == nil {
		t.Fatal("backward after overwriting a saved tensor succeeded; autograd did not see the write")
	}
	if !strings.Contains(err.Error(), "modified by an inplace operation") {
		t.Errorf("error %q does not say the tensor was modified in place", err)
	}
}

// TestZeroGradSetsToNone: Optimizer.ZeroGrad drops gradients (Grad returns nil), as
// PyTorch 2.x's zero_grad(set_to_none=True) does, on every LibTorch; a parameter that gets
// no gradient in a step is then left alone by the step (no weight decay, no momentum) and
// its step count does not advance. Checked against a float64 closed form (issue 11.11).
func TestZeroGradSetsToNone(t *testing.T) {
	for k, c := range []struct {
		name string
		kind OptimKind
		cfg  OptimConfig
	}{
		{"adamw", AdamW, OptimConfig{LR: 0.05, WeightDecay: 0.1}},
		{"sgd momentum wd", SGD, OptimConfig{LR: 0.05, Momentum: 0.9, WeightDecay: 0.01}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRNG(uint64(110 + k))
			p0, q0 := randF64(r, 4, -1, 1), randF64(r, 3, -1, 1)
			cp, cq := randF64(r, 4, -1, 1), randF64(r, 3, -1, 1)
			s := newScope(t)
			p, q := s.FromFloat64(p0, 4), s.FromFloat64(q0, 3)
			s.Keep(p, q)
			defer p.Free()
			defer q.Free()
			for _, x := range []*Tensor{p, q} {
				if err := x.SetRequiresGrad(true); err != nil {
					t.Fatal(err)
				}
			}
			o, err := NewOptimizer(c.kind, []*Tensor{p, q}, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Free()
			mk := func() *optRef {
				return &optRef{kind: c.kind, lr: c.cfg.LR, b1: 0.9, b2: 0.999, eps: 1e-8, wd: c.cfg.WeightDecay, m: c.cfg.Momentum}
			}
			rp, rq := mk(), mk()
			pr, qr := slices.Clone(p0), slices.Clone(q0)
			// q takes part in steps 1 and 3 only
			for step, withQ := range []bool{true, false, true, true} {
				ss := NewScope()
				if err := o.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				if ss.Grad(p) != nil || ss.Grad(q) != nil {
					t.Fatalf("step %d: gradients not dropped by ZeroGrad", step+1)
				}
				loss := ss.Add(ss.Sum(ss.Mul(ss.FromFloat64(cp, 4), p), false), ss.DivScalar(ss.Sum(ss.PowScalar(p, 4), false), 4))
				if withQ {
					loss = ss.Add(loss, ss.Add(ss.Sum(ss.Mul(ss.FromFloat64(cq, 3), q), false), ss.DivScalar(ss.Sum(ss.PowScalar(q, 4), false), 4)))
				}
				ss.Backward(loss, nil, false)
				if err := ss.Err(); err != nil {
					t.Fatal(err)
				}
				if !withQ && ss.Grad(q) != nil {
					t.Fatalf("step %d: q has a gradient though the loss does not use it", step+1)
				}
				ss.Close()
				if err := o.Step(); err != nil {
					t.Fatal(err)
				}
				rp.update(pr, lossGrad(pr, cp))
				if withQ {
					rq.update(qr, lossGrad(qr, cq))
				}
				gp, _ := p.Float64s()
				gq, _ := q.Float64s()
				closeAll(t, fmt.Sprintf("step %d p", step+1), gp, pr, 1e-12, 1e-12)
				closeAll(t, fmt.Sprintf("step %d q", step+1), gq, qr, 1e-12, 1e-12)
			}
		})
	}
}

// TestNumThreadsOnEveryOSThread: SetNumThreads on one OS thread applies to ops that run
// on another OS thread whose LibTorch state was initialised before the call (LibTorch keeps
// the count per OS thread; issue 11.10).
func TestNumThreadsOnEveryOSThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := NumThreads()
	defer SetNumThreads(prev)

	ready, goOn := make(chan int), make(chan struct{})
	type report struct{ afterOp, query int }
	done := make(chan report)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		s := NewScope()
		defer s.Close()
		s.Add(s.Ones([]int64{8}, Float32, CPU), s.Ones([]int64{8}, Float32, CPU)) // initialises this thread
		ready <- threadNumThreads()
		<-goOn
		s.Add(s.Ones([]int64{8}, Float32, CPU), s.Ones([]int64{8}, Float32, CPU))
		done <- report{threadNumThreads(), NumThreads()}
	}()
	before := <-ready
	want := before + 1
	if err := SetNumThreads(want); err != nil {
		t.Fatal(err)
	}
	if got := threadNumThreads(); got != want {
		t.Errorf("calling thread: %d threads after SetNumThreads(%d)", got, want)
	}
	close(goOn)
	r := <-done
	if r.afterOp != want {
		t.Errorf("another OS thread runs ops with %d threads after SetNumThreads(%d) (had %d before)", r.afterOp, want, before)
	}
	if r.query != want {
		t.Errorf("NumThreads on another OS thread = %d, want %d", r.query, want)
	}
}

// TestSaveTensorsWeightsOnly: files written by SaveTensors are read by torch.load with
// weights_only=True (the default since PyTorch 2.6; 1.13 already has the flag) and the
// values match exactly (issue 12).
func TestSaveTensorsWeightsOnly(t *testing.T) {
	r := newRNG(120)
	s := newScope(t)
	big := s.FromFloat32(randF32(r, 20, -3, 3), 4, 5)
	in := map[string]*Tensor{
		"f32":        s.FromFloat32(randF32(r, 12, -2, 2), 3, 4),
		"f64":        s.FromFloat64(randF64(r, 5, -1e6, 1e6), 5),
		"i64":        s.FromInt64([]int64{r.Int64(), -r.Int64(), 7}, 3),
		"u8":         FromSlice(s, CPU, []uint8{0, 255, uint8(r.IntN(256))}, 3),
		"mask":       s.FromBool([]bool{true, false, r.IntN(2) == 1}, 3),
		"i16":        FromSlice(s, CPU, []int16{-32768, int16(r.IntN(1000)), 32767}, 3),
		"scalar":     s.Scalar(r.Float64(), Float64, CPU),
		"transposed": s.Transpose(big, 0, 1),
		"narrowed":   s.Narrow(big, 1, 2, 3),
		"nested/key": s.FromFloat32(randF32(r, 2, 0, 1), 2),
		"f16":        s.ToDType(s.FromFloat32(randF32(r, 4, -8, 8), 4), Float16),
		"bf16":       s.ToDType(s.FromFloat32(randF32(r, 4, -8, 8), 2, 2), BFloat16),
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.pt")
	if err := SaveTensors(path, in); err != nil {
		t.Fatal(err)
	}
	got := pythonTorch(t, `
import json, sys, torch
d = torch.load(sys.argv[1], weights_only=True)
assert type(d) is dict, type(d)
print(json.dumps({k: [str(v.dtype).replace("torch.", ""), list(v.shape), v.double().flatten().tolist()] for k, v in d.items()}))
`, path)
	var py map[string][]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(got)), &py); err != nil {
		t.Fatalf("python output %q: %v", got, err)
	}
	if len(py) != len(in) {
		t.Fatalf("python read %d tensors, want %d", len(py), len(in))
	}
	for k, v := range in {
		e, ok := py[k]
		if !ok {
			t.Errorf("%s missing in python's dict", k)
			continue
		}
		if e[0].(string) != v.DType().String() {
			t.Errorf("%s: python dtype %v, want %s", k, e[0], v.DType())
		}
		var shape []int64
		for _, d := range e[1].([]any) {
			shape = append(shape, int64(d.(float64)))
		}
		if !shapeEq(shape, v.Shape()) && !(len(shape) == 0 && len(v.Shape()) == 0) {
			t.Errorf("%s: python shape %v, want %v", k, shape, v.Shape())
		}
		want := vals(t, s, v)
		pv := e[2].([]any)
		if len(pv) != len(want) {
			t.Errorf("%s: python has %d values, want %d", k, len(pv), len(want))
			continue
		}
		for i := range want {
			// int64 values beyond 2^53 go through float64 on both sides
			if pv[i].(float64) != want[i] {
				t.Errorf("%s[%d]: python %v, want %v", k, i, pv[i], want[i])
				break
			}
		}
	}
}

// TestAllowTF32: the TF32 flags start at LibTorch's defaults (matmul off since 1.12,
// convolutions on), can be set together or separately and read back, on a CPU-only build
// too (issue 12).
func TestAllowTF32(t *testing.T) {
	m0, c0, err := AllowTF32()
	if err != nil {
		t.Fatal(err)
	}
	defer SetAllowTF32Each(m0, c0)
	if m0 || !c0 {
		t.Errorf("defaults: matmul %v, conv %v; LibTorch's are false, true", m0, c0)
	}
	for _, on := range []bool{true, false} {
		if err := SetAllowTF32(on); err != nil {
			t.Fatal(err)
		}
		if m, c, err := AllowTF32(); err != nil || m != on || c != on {
			t.Errorf("after SetAllowTF32(%v): matmul %v, conv %v, %v", on, m, c, err)
		}
	}
	if err := SetAllowTF32Each(true, false); err != nil {
		t.Fatal(err)
	}
	if m, c, _ := AllowTF32(); !m || c {
		t.Errorf("after SetAllowTF32Each(true, false): matmul %v, conv %v", m, c)
	}
}
