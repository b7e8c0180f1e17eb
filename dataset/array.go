package dataset

import (
	"fmt"
	"math"
)

// Cube is one hyperspectral image held channels-last (H×W×C) in float32, the layout every
// node of the pipeline consumes, so that readers of any on-disk interleave hand over the same
// thing.
type Cube struct {
	H, W, C int
	// Data holds H*W*C values; element (row r, column c, band b) is Data[(r*W+c)*C+b].
	Data []float32
	// Wavelengths holds C centre wavelengths in nm, or nil where the source has none.
	Wavelengths []float32
	// Source names the file the cube came from, for error messages further down.
	Source string
	// Owner, when set, owns the memory Data lies in where that is not Go's (a LibTorch
	// tensor's, so that a pipeline reads the cube without copying it: see package scene).
	// Data is valid only while Owner is: whoever keeps Data keeps the cube or Owner too.
	Owner any
}

// At returns the value at row r, column c, band b; it panics on out-of-range indices like a
// slice access would, because callers index with loop variables they control.
func (c *Cube) At(r, col, b int) float32 { return c.Data[(r*c.W+col)*c.C+b] }

// Array is an N-dimensional numeric array read from .npy, .npz or .mat, already converted to
// row-major (C) order so that Shape[0] is the slowest axis, whatever order the file used.
//
// Values are converted to float32 because every consumer (cube, label map) works in float32 or
// small integers; int32/int64/uint32/uint64 values above 2^24 and float64 values lose precision.
type Array struct {
	Name  string
	Shape []int
	// DType is the element type stored in the file: bool, int8, uint8, int16, uint16, int32,
	// uint32, int64, uint64, float32 or float64.
	DType string
	// Class is the MATLAB class (double, single, uint8, ...) for arrays read from .mat files;
	// it may be wider than DType because MATLAB stores e.g. integer-valued doubles as uint8.
	Class string
	// Complex reports that the file also held an imaginary part, which is dropped.
	Complex bool
	Data    []float32
}

// Len returns the number of elements implied by Shape.
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// ToCube interprets a 3-D array as rows × columns × bands; source names the file for errors.
func (a *Array) ToCube(source string) (*Cube, error) {
	if len(a.Shape) != 3 {
		return nil, fmt.Errorf("%s: variable %q has shape %v; a cube needs 3 dimensions (rows × columns × bands)", source, a.Name, a.Shape)
	}
	if a.Complex {
		return nil, fmt.Errorf("%s: variable %q is complex; a cube must be real", source, a.Name)
	}
	if a.Shape[0] < 1 || a.Shape[1] < 1 || a.Shape[2] < 1 {
		return nil, fmt.Errorf("%s: variable %q is empty (shape %d×%d×%d); a cube needs at least one row, column and band", source, a.Name, a.Shape[0], a.Shape[1], a.Shape[2])
	}
	return &Cube{H: a.Shape[0], W: a.Shape[1], C: a.Shape[2], Data: a.Data, Source: source}, nil
}

// ToLabels interprets a 2-D array (or a 3-D one with a trailing singleton axis) as a class-id
// map; every value must be an integer in int32 range.
func (a *Array) ToLabels(source string) (*LabelImage, error) {
	shape := a.Shape
	if len(shape) == 3 && shape[2] == 1 {
		shape = shape[:2]
	}
	if len(shape) != 2 {
		return nil, fmt.Errorf("%s: variable %q has shape %v; a ground-truth map needs 2 dimensions (rows × columns)", source, a.Name, a.Shape)
	}
	ids := make([]int32, len(a.Data))
	for i, v := range a.Data {
		if v != float32(math.Trunc(float64(v))) || v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("%s: variable %q holds %v at element %d; class ids must be integers", source, a.Name, v, i)
		}
		ids[i] = int32(v)
	}
	return &LabelImage{H: shape[0], W: shape[1], IDs: ids, Source: source}, nil
}

// LabelImage is a class-id map (row-major H×W) such as a rasterised COCO file or a ground-truth
// variable.
type LabelImage struct {
	H, W   int
	IDs    []int32
	Source string
}

// checkedMul multiplies non-negative sizes and reports overflow past limit, so that sizes read
// from untrusted headers can never wrap around or trigger a huge allocation.
func checkedMul(limit int64, xs ...int64) (int64, bool) {
	p := int64(1)
	for _, x := range xs {
		if x < 0 {
			return 0, false
		}
		if x != 0 && p > limit/x {
			return 0, false
		}
		p *= x
	}
	return p, p <= limit
}

// colMajorToRowMajor reorders data stored column-major (first index fastest, as MATLAB and
// Fortran-ordered .npy write it) for the given shape into row-major order.
func colMajorToRowMajor(src []float32, shape []int) []float32 {
	k := len(shape)
	if k <= 1 || len(src) == 0 {
		return src
	}
	dst := make([]float32, len(src))
	if k == 3 {
		d0, d1, d2 := shape[0], shape[1], shape[2]
		i := 0
		for c := 0; c < d2; c++ {
			for b := 0; b < d1; b++ {
				o := b*d2 + c
				step := d1 * d2
				for a := 0; a < d0; a++ {
					dst[o] = src[i]
					o += step
					i++
				}
			}
		}
		return dst
	}
	strides := make([]int, k)
	s := 1
	for i := k - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	idx := make([]int, k)
	off := 0
	for l := range src {
		dst[off] = src[l]
		for a := 0; a < k; a++ {
			idx[a]++
			off += strides[a]
			if idx[a] < shape[a] {
				break
			}
			off -= strides[a] * shape[a]
			idx[a] = 0
		}
	}
	return dst
}

// colMajorWalker places the elements of an array stored column-major (first index fastest, as
// MATLAB and Fortran-ordered .npy write it) at their row-major positions while they are decoded,
// so that a reader fills the final array directly instead of reordering a copy.
type colMajorWalker struct {
	shape, strides, idx []int
	off                 int
}

func newColMajorWalker(shape []int) *colMajorWalker {
	w := &colMajorWalker{shape: shape, strides: make([]int, len(shape)), idx: make([]int, len(shape))}
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		w.strides[i] = s
		s *= shape[i]
	}
	return w
}

// scatter writes src, the next len(src) elements in column-major order, into dst (row-major).
func (w *colMajorWalker) scatter(dst, src []float32) {
	k := len(w.shape)
	if k <= 1 {
		copy(dst[w.off:], src)
		w.off += len(src)
		return
	}
	d0, s0 := w.shape[0], w.strides[0]
	for _, v := range src {
		dst[w.off] = v
		w.idx[0]++
		w.off += s0
		if w.idx[0] < d0 {
			continue
		}
		w.off -= s0 * d0
		w.idx[0] = 0
		for a := 1; a < k; a++ {
			w.idx[a]++
			w.off += w.strides[a]
			if w.idx[a] < w.shape[a] {
				break
			}
			w.off -= w.strides[a] * w.shape[a]
			w.idx[a] = 0
		}
	}
}
