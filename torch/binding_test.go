package torch

import (
	"os"
	"path/filepath"
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
