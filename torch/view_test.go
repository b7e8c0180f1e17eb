package torch

import (
	"math"
	"testing"
)

// CPUView is the tensor's own memory: it reads the values a tensor holds, what is written
// into it is what LibTorch ops then compute with (a sum against float64 arithmetic on the
// same values), and it refuses the wrong element type and a non-contiguous tensor.
func TestCPUViewIsTheTensorsMemory(t *testing.T) {
	r := newRNG(11)
	s := newScope(t)
	src := make([]float32, 3*5*7)
	for i := range src {
		src[i] = float32(r.Float64()*4 - 2)
	}
	x := s.FromFloat32(src, 3, 5, 7)
	v, err := CPUView[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != len(src) {
		t.Fatalf("view of %d values, want %d", len(v), len(src))
	}
	for i := range v {
		if v[i] != src[i] {
			t.Fatalf("view[%d] = %v, want %v", i, v[i], src[i])
		}
	}
	want := 0.0
	for i := range v {
		v[i] = float32(r.Float64()*10 - 5)
		want += float64(v[i])
	}
	got, err := s.Sum(x, false).Item()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-4*float64(len(v)) {
		t.Fatalf("sum after writing through the view = %v, want %v", got, want)
	}
	if _, err := CPUView[float64](x); err == nil {
		t.Error("a float64 view of a float32 tensor was allowed")
	}
	if _, err := CPUView[float32](s.Permute(x, 2, 0, 1)); err == nil {
		t.Error("a view of a non-contiguous tensor was allowed")
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}
