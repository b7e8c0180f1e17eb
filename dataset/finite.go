package dataset

import (
	"fmt"
	"math"
	"unsafe"
)

// FirstNonFinite returns the index of the first NaN or ±Inf in v, or -1 when every value is
// finite. It tests the exponent bits of two values per 64-bit word without branches (a value is
// not finite exactly when its exponent is all ones), several times faster than math.IsNaN and
// math.IsInf per element; only a block that holds a bad value is searched element by element.
func FirstNonFinite(v []float32) int {
	const blk = 1024
	for lo := 0; lo < len(v); lo += blk {
		hi := min(lo+blk, len(v))
		if allFinite(v[lo:hi]) {
			continue
		}
		for i := lo; i < hi; i++ {
			if !isFinite32(v[i]) {
				return i
			}
		}
	}
	return -1
}

// CountNonFinite counts the NaN and ±Inf values of v.
func CountNonFinite(v []float32) int {
	if FirstNonFinite(v) < 0 {
		return 0
	}
	n := 0
	for _, x := range v {
		if !isFinite32(x) {
			n++
		}
	}
	return n
}

// allFinite reports whether no value of v is NaN or ±Inf. Adding 1 to an all-ones 8-bit
// exponent (masked out of the value) carries into bit 31 of its 32-bit lane and nowhere else,
// so OR-ing those carries over the slice flags any non-finite value.
func allFinite(v []float32) bool {
	const mask, one, top = 0x7f8000007f800000, 0x0080000000800000, 0x8000000080000000
	var acc uint64
	n := len(v) / 2
	if n > 0 {
		w := unsafe.Slice((*uint64)(unsafe.Pointer(&v[0])), n)
		for len(w) >= 8 {
			q := w[:8:8]
			a := (q[0]&mask + one) | (q[1]&mask + one) | (q[2]&mask + one) | (q[3]&mask + one)
			b := (q[4]&mask + one) | (q[5]&mask + one) | (q[6]&mask + one) | (q[7]&mask + one)
			acc |= a | b
			w = w[8:]
		}
		for _, x := range w {
			acc |= x&mask + one
		}
	}
	if len(v)%2 == 1 {
		acc |= uint64(math.Float32bits(v[len(v)-1])&0x7f800000 + 0x00800000)
	}
	return acc&top == 0
}

// NonFiniteError is the first NaN or ±Inf value found in a cube being decoded.
type NonFiniteError struct {
	Source         string
	Row, Col, Band int
	Value          float32
	Index          int // element index, row-major channels-last
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%s: value %v at row %d, column %d, band %d", e.Source, e.Value, e.Row, e.Col, e.Band)
}

// checkBlock applies a NaN policy to the decoded values dst, which start at element off of a
// cube w pixels wide with c bands: with NaNZero every NaN/±Inf becomes 0, otherwise the first one
// is returned as an error.
func checkBlock(dst []float32, off, w, c int, p NaNPolicy, source string) error {
	i := FirstNonFinite(dst)
	if i < 0 {
		return nil
	}
	if p == NaNZero {
		for ; i < len(dst); i++ {
			if !isFinite32(dst[i]) {
				dst[i] = 0
			}
		}
		return nil
	}
	g := off + i
	px := g / c
	return &NonFiniteError{Source: source, Row: px / w, Col: px % w, Band: g % c, Value: dst[i], Index: g}
}
