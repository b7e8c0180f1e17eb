package anynum

import (
	"math"
	"testing"
)

func TestFloat(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want float64
		ok   bool
	}{
		{0, 0, true},
		{-3, -3, true},
		{int64(1) << 40, 1 << 40, true},
		{uint64(math.MaxUint64), math.MaxUint64, true},
		{2.5, 2.5, true},
		{math.Inf(-1), math.Inf(-1), true},
		{float32(2.5), 0, false},
		{int32(7), 0, false},
		{uint(7), 0, false},
		{"3", 0, false},
		{nil, 0, false},
		{true, 0, false},
		{[]any{1}, 0, false},
	} {
		got, ok := Float(tc.v)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Float(%#v) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
	if f, ok := Float(math.NaN()); !ok || !math.IsNaN(f) {
		t.Errorf("Float(NaN) = %v, %v", f, ok)
	}
}
