package torch

/*
#cgo noescape sc_unary
#cgo nocallback sc_unary
#cgo noescape sc_unary_
#cgo nocallback sc_unary_
#cgo noescape sc_binary
#cgo nocallback sc_binary
#cgo noescape sc_binary_
#cgo nocallback sc_binary_
#cgo noescape sc_binary_out
#cgo nocallback sc_binary_out
#cgo noescape sc_reduce
#cgo nocallback sc_reduce
#cgo noescape sc_shape_op
#cgo nocallback sc_shape_op
#cgo noescape sc_tensor_free
#cgo nocallback sc_tensor_free
#cgo noescape sc_tensor_free_many
#cgo nocallback sc_tensor_free_many
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// ---- creation ----

func (s *Scope) fromData(op string, p unsafe.Pointer, nbytes int, shape []int64, dt DType, dev Device) *Tensor {
	if !s.ready(op) {
		return nil
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			s.Fail(&Error{Op: op, Msg: fmt.Sprintf("negative size in shape %v", shape)})
			return nil
		}
		n *= d
	}
	if int64(nbytes) != n*int64(dt.Size()) {
		s.Fail(&Error{Op: op, Msg: fmt.Sprintf("%d elements do not fill shape %v", nbytes/dt.Size(), shape)})
		return nil
	}
	sp, nd := int64s(shape)
	var out C.sc_tensor
	e := C.sc_from_data(p, C.int64_t(nbytes), sp, nd, C.int(dt), C.int(dev.Type), C.int(dev.Index), &out)
	return s.result(op, e, out)
}

// FromSlice copies data into a new tensor of the given shape on dev. The tensor never
// refers to data after the call.
func FromSlice[E Element](s *Scope, dev Device, data []E, shape ...int64) *Tensor {
	dt := DTypeOf[E]()
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return s.fromData("from_slice", p, len(data)*dt.Size(), shape, dt, dev)
}

// FromFloat32 copies data into a new CPU float32 tensor of the given shape.
func (s *Scope) FromFloat32(data []float32, shape ...int64) *Tensor {
	return FromSlice(s, CPU, data, shape...)
}

// FromFloat64 copies data into a new CPU float64 tensor of the given shape.
func (s *Scope) FromFloat64(data []float64, shape ...int64) *Tensor {
	return FromSlice(s, CPU, data, shape...)
}

// FromInt64 copies data into a new CPU int64 tensor of the given shape.
func (s *Scope) FromInt64(data []int64, shape ...int64) *Tensor {
	return FromSlice(s, CPU, data, shape...)
}

// FromBool copies data into a new CPU bool tensor of the given shape.
func (s *Scope) FromBool(data []bool, shape ...int64) *Tensor {
	return FromSlice(s, CPU, data, shape...)
}

// Empty returns an uninitialised tensor.
func (s *Scope) Empty(shape []int64, dt DType, dev Device) *Tensor {
	if !s.ready("empty") {
		return nil
	}
	sp, nd := int64s(shape)
	var out C.sc_tensor
	return s.result("empty", C.sc_empty(sp, nd, C.int(dt), C.int(dev.Type), C.int(dev.Index), &out), out)
}

// Full returns a tensor filled with v.
func (s *Scope) Full(shape []int64, v float64, dt DType, dev Device) *Tensor {
	if !s.ready("full") {
		return nil
	}
	sp, nd := int64s(shape)
	var out C.sc_tensor
	return s.result("full", C.sc_full(sp, nd, C.double(v), C.int(dt), C.int(dev.Type), C.int(dev.Index), &out), out)
}

// Zeros returns a tensor of zeros.
func (s *Scope) Zeros(shape []int64, dt DType, dev Device) *Tensor { return s.Full(shape, 0, dt, dev) }

// Ones returns a tensor of ones.
func (s *Scope) Ones(shape []int64, dt DType, dev Device) *Tensor { return s.Full(shape, 1, dt, dev) }

// Scalar returns a 0-dimensional tensor holding v.
func (s *Scope) Scalar(v float64, dt DType, dev Device) *Tensor { return s.Full(nil, v, dt, dev) }

// Arange returns [start, end) in steps of step.
func (s *Scope) Arange(start, end, step float64, dt DType, dev Device) *Tensor {
	if !s.ready("arange") {
		return nil
	}
	var out C.sc_tensor
	return s.result("arange", C.sc_arange(C.double(start), C.double(end), C.double(step), C.int(dt), C.int(dev.Type), C.int(dev.Index), &out), out)
}

// Eye returns the n×n identity.
func (s *Scope) Eye(n int64, dt DType, dev Device) *Tensor {
	if !s.ready("eye") {
		return nil
	}
	var out C.sc_tensor
	return s.result("eye", C.sc_eye(C.int64_t(n), C.int(dt), C.int(dev.Type), C.int(dev.Index), &out), out)
}

func (s *Scope) random(op string, kind int, shape []int64, lo, hi float64, dt DType, dev Device, g *Generator) *Tensor {
	if !s.ready(op) {
		return nil
	}
	var gh C.sc_gen
	if g != nil {
		if g.h == nil {
			s.Fail(&Error{Op: op, Msg: "generator is freed"})
			return nil
		}
		gh = g.h
	}
	sp, nd := int64s(shape)
	var out C.sc_tensor
	defer runtime.KeepAlive(g)
	e := C.sc_random(C.int(kind), sp, nd, C.double(lo), C.double(hi), C.int(dt), C.int(dev.Type), C.int(dev.Index), gh, &out)
	return s.result(op, e, out)
}

// Rand samples U[0,1); g may be nil for the default generator.
func (s *Scope) Rand(shape []int64, dt DType, dev Device, g *Generator) *Tensor {
	return s.random("rand", 0, shape, 0, 1, dt, dev, g)
}

// Randn samples N(0,1); g may be nil for the default generator.
func (s *Scope) Randn(shape []int64, dt DType, dev Device, g *Generator) *Tensor {
	return s.random("randn", 1, shape, 0, 1, dt, dev, g)
}

// Uniform samples U[lo,hi); g may be nil for the default generator.
func (s *Scope) Uniform(shape []int64, lo, hi float64, dt DType, dev Device, g *Generator) *Tensor {
	return s.random("uniform", 2, shape, lo, hi, dt, dev, g)
}

// RandInt samples integers in [lo,hi).
func (s *Scope) RandInt(shape []int64, lo, hi int64, dt DType, dev Device, g *Generator) *Tensor {
	return s.random("randint", 3, shape, float64(lo), float64(hi), dt, dev, g)
}

// To converts a tensor to another dtype and/or device (dt < 0 keeps the dtype). It returns
// a new handle even when nothing changes.
func (s *Scope) To(a *Tensor, dev Device, dt DType) *Tensor {
	if !s.ready("to", a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_to(s.mode(), a.h, C.int(dt), C.int(dev.Type), C.int(dev.Index), 0, &out)
	return s.result("to", e, out, a)
}

// ToDType converts the dtype, keeping the device.
func (s *Scope) ToDType(a *Tensor, dt DType) *Tensor {
	if !s.ready("to", a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_to(s.mode(), a.h, C.int(dt), -1, 0, 0, &out)
	return s.result("to", e, out, a)
}

// ToDevice moves a tensor, keeping its dtype.
func (s *Scope) ToDevice(a *Tensor, dev Device) *Tensor { return s.To(a, dev, -1) }

// ---- unary ----

const (
	uNeg = iota
	uExp
	uLog
	uSigmoid
	uRelu
	uTanh
	uSqrt
	uAbs
	uSquare
	uLeakyRelu
	uClamp
	uClampMin
	uClampMax
	uPow
	uAddS
	uMulS
	uSubS
	uDivS
	uRSubS
	uNot
	uIsNaN
	uIsFinite
	uFloor
	uRound
	uDetach
	uClone
	uContiguous
	uLog1p
	uReciprocal
	uSign
	uEqS
	uNeS
	uLtS
	uLeS
	uGtS
	uGeS
	uSoftplus
	uRsqrt
	uCeil
	uFullLike
	uZerosLike
	uOnesLike
	uNanToNum
	uSin
	uCos
	uLogSigmoid
	uCumsum
	uSoftmax
)

var unaryNames = [...]string{"neg", "exp", "log", "sigmoid", "relu", "tanh", "sqrt", "abs", "square",
	"leaky_relu", "clamp", "clamp_min", "clamp_max", "pow", "add", "mul", "sub", "div", "rsub",
	"logical_not", "isnan", "isfinite", "floor", "round", "detach", "clone", "contiguous", "log1p",
	"reciprocal", "sign", "eq", "ne", "lt", "le", "gt", "ge", "softplus", "rsqrt", "ceil", "full_like",
	"zeros_like", "ones_like", "nan_to_num", "sin", "cos", "log_sigmoid", "cumsum", "softmax"}

func (s *Scope) unary(op int, a *Tensor, s1, s2 float64) *Tensor {
	name := unaryNames[op]
	if !s.ready(name, a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_unary(C.int(op), s.mode(), a.h, C.double(s1), C.double(s2), &out)
	return s.result(name, e, out, a)
}

// opNames appends suffix to every name once, so the per-op fast paths never build strings.
func opNames(names []string, suffix string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + suffix
	}
	return out
}

var (
	unaryInPlaceNames  = opNames(unaryNames[:], "_")
	binaryInPlaceNames = opNames(binaryNames[:], "_")
	binaryOutNames     = opNames(binaryNames[:], "_out")
)

func (s *Scope) unaryInPlace(op int, a *Tensor, s1, s2 float64) *Tensor {
	name := unaryInPlaceNames[op]
	if !s.ready(name, a) {
		return nil
	}
	if e := C.sc_unary_(C.int(op), s.mode(), a.h, C.double(s1), C.double(s2)); e != nil {
		s.fail(name, e, a)
		return nil
	}
	return a
}

func (s *Scope) Neg(a *Tensor) *Tensor                      { return s.unary(uNeg, a, 0, 0) }
func (s *Scope) Exp(a *Tensor) *Tensor                      { return s.unary(uExp, a, 0, 0) }
func (s *Scope) Log(a *Tensor) *Tensor                      { return s.unary(uLog, a, 0, 0) }
func (s *Scope) Sigmoid(a *Tensor) *Tensor                  { return s.unary(uSigmoid, a, 0, 0) }
func (s *Scope) Relu(a *Tensor) *Tensor                     { return s.unary(uRelu, a, 0, 0) }
func (s *Scope) Tanh(a *Tensor) *Tensor                     { return s.unary(uTanh, a, 0, 0) }
func (s *Scope) Sqrt(a *Tensor) *Tensor                     { return s.unary(uSqrt, a, 0, 0) }
func (s *Scope) Abs(a *Tensor) *Tensor                      { return s.unary(uAbs, a, 0, 0) }
func (s *Scope) Square(a *Tensor) *Tensor                   { return s.unary(uSquare, a, 0, 0) }
func (s *Scope) LeakyRelu(a *Tensor, slope float64) *Tensor { return s.unary(uLeakyRelu, a, slope, 0) }
func (s *Scope) Clamp(a *Tensor, lo, hi float64) *Tensor    { return s.unary(uClamp, a, lo, hi) }
func (s *Scope) ClampMin(a *Tensor, lo float64) *Tensor     { return s.unary(uClampMin, a, lo, 0) }
func (s *Scope) ClampMax(a *Tensor, hi float64) *Tensor     { return s.unary(uClampMax, a, hi, 0) }
func (s *Scope) PowScalar(a *Tensor, p float64) *Tensor     { return s.unary(uPow, a, p, 0) }
func (s *Scope) AddScalar(a *Tensor, v float64) *Tensor     { return s.unary(uAddS, a, v, 0) }
func (s *Scope) MulScalar(a *Tensor, v float64) *Tensor     { return s.unary(uMulS, a, v, 0) }
func (s *Scope) SubScalar(a *Tensor, v float64) *Tensor     { return s.unary(uSubS, a, v, 0) }
func (s *Scope) DivScalar(a *Tensor, v float64) *Tensor     { return s.unary(uDivS, a, v, 0) }

// RSubScalar returns v - a.
func (s *Scope) RSubScalar(a *Tensor, v float64) *Tensor { return s.unary(uRSubS, a, v, 0) }
func (s *Scope) LogicalNot(a *Tensor) *Tensor            { return s.unary(uNot, a, 0, 0) }
func (s *Scope) IsNaN(a *Tensor) *Tensor                 { return s.unary(uIsNaN, a, 0, 0) }
func (s *Scope) IsFinite(a *Tensor) *Tensor              { return s.unary(uIsFinite, a, 0, 0) }
func (s *Scope) Floor(a *Tensor) *Tensor                 { return s.unary(uFloor, a, 0, 0) }
func (s *Scope) Ceil(a *Tensor) *Tensor                  { return s.unary(uCeil, a, 0, 0) }
func (s *Scope) Round(a *Tensor) *Tensor                 { return s.unary(uRound, a, 0, 0) }

// Detach returns a view that shares storage but is cut from the autograd graph.
func (s *Scope) Detach(a *Tensor) *Tensor              { return s.unary(uDetach, a, 0, 0) }
func (s *Scope) Clone(a *Tensor) *Tensor               { return s.unary(uClone, a, 0, 0) }
func (s *Scope) Contiguous(a *Tensor) *Tensor          { return s.unary(uContiguous, a, 0, 0) }
func (s *Scope) Log1p(a *Tensor) *Tensor               { return s.unary(uLog1p, a, 0, 0) }
func (s *Scope) Reciprocal(a *Tensor) *Tensor          { return s.unary(uReciprocal, a, 0, 0) }
func (s *Scope) Sign(a *Tensor) *Tensor                { return s.unary(uSign, a, 0, 0) }
func (s *Scope) EqScalar(a *Tensor, v float64) *Tensor { return s.unary(uEqS, a, v, 0) }
func (s *Scope) NeScalar(a *Tensor, v float64) *Tensor { return s.unary(uNeS, a, v, 0) }
func (s *Scope) LtScalar(a *Tensor, v float64) *Tensor { return s.unary(uLtS, a, v, 0) }
func (s *Scope) LeScalar(a *Tensor, v float64) *Tensor { return s.unary(uLeS, a, v, 0) }
func (s *Scope) GtScalar(a *Tensor, v float64) *Tensor { return s.unary(uGtS, a, v, 0) }
func (s *Scope) GeScalar(a *Tensor, v float64) *Tensor { return s.unary(uGeS, a, v, 0) }
func (s *Scope) Softplus(a *Tensor) *Tensor            { return s.unary(uSoftplus, a, 0, 0) }
func (s *Scope) Rsqrt(a *Tensor) *Tensor               { return s.unary(uRsqrt, a, 0, 0) }
func (s *Scope) FullLike(a *Tensor, v float64) *Tensor { return s.unary(uFullLike, a, v, 0) }
func (s *Scope) ZerosLike(a *Tensor) *Tensor           { return s.unary(uZerosLike, a, 0, 0) }
func (s *Scope) OnesLike(a *Tensor) *Tensor            { return s.unary(uOnesLike, a, 0, 0) }

// NanToNum replaces NaN by nan and ±Inf by ±inf.
func (s *Scope) NanToNum(a *Tensor, nan, inf float64) *Tensor { return s.unary(uNanToNum, a, nan, inf) }
func (s *Scope) Sin(a *Tensor) *Tensor                        { return s.unary(uSin, a, 0, 0) }
func (s *Scope) Cos(a *Tensor) *Tensor                        { return s.unary(uCos, a, 0, 0) }
func (s *Scope) LogSigmoid(a *Tensor) *Tensor                 { return s.unary(uLogSigmoid, a, 0, 0) }
func (s *Scope) Cumsum(a *Tensor, dim int64) *Tensor          { return s.unary(uCumsum, a, float64(dim), 0) }

// In-place variants return their input (nil on error).
func (s *Scope) AddScalar_(a *Tensor, v float64) *Tensor  { return s.unaryInPlace(uAddS, a, v, 0) }
func (s *Scope) MulScalar_(a *Tensor, v float64) *Tensor  { return s.unaryInPlace(uMulS, a, v, 0) }
func (s *Scope) SubScalar_(a *Tensor, v float64) *Tensor  { return s.unaryInPlace(uSubS, a, v, 0) }
func (s *Scope) DivScalar_(a *Tensor, v float64) *Tensor  { return s.unaryInPlace(uDivS, a, v, 0) }
func (s *Scope) Clamp_(a *Tensor, lo, hi float64) *Tensor { return s.unaryInPlace(uClamp, a, lo, hi) }
func (s *Scope) ClampMin_(a *Tensor, lo float64) *Tensor  { return s.unaryInPlace(uClampMin, a, lo, 0) }
func (s *Scope) Sigmoid_(a *Tensor) *Tensor               { return s.unaryInPlace(uSigmoid, a, 0, 0) }
func (s *Scope) Exp_(a *Tensor) *Tensor                   { return s.unaryInPlace(uExp, a, 0, 0) }
func (s *Scope) LeakyRelu_(a *Tensor, slope float64) *Tensor {
	return s.unaryInPlace(uLeakyRelu, a, slope, 0)
}
func (s *Scope) Fill_(a *Tensor, v float64) *Tensor { return s.unaryInPlace(uFullLike, a, v, 0) }
func (s *Scope) Zero_(a *Tensor) *Tensor            { return s.unaryInPlace(uZerosLike, a, 0, 0) }

// ---- binary ----

const (
	bAdd = iota
	bSub
	bMul
	bDiv
	bPow
	bMaximum
	bMinimum
	bEq
	bNe
	bLt
	bLe
	bGt
	bGe
	bAnd
	bOr
	bMatmul
	bBmm
	bMm
	bBCEWithLogits
	bXor
)

var binaryNames = [...]string{"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le",
	"gt", "ge", "logical_and", "logical_or", "matmul", "bmm", "mm", "binary_cross_entropy_with_logits", "logical_xor"}

func (s *Scope) binary(op int, a, b *Tensor) *Tensor {
	name := binaryNames[op]
	if !s.ready(name, a, b) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_binary(C.int(op), s.mode(), a.h, b.h, &out)
	return s.result(name, e, out, a, b)
}

func (s *Scope) binaryInPlace(op int, a, b *Tensor) *Tensor {
	name := binaryInPlaceNames[op]
	if !s.ready(name, a, b) {
		return nil
	}
	if e := C.sc_binary_(C.int(op), s.mode(), a.h, b.h); e != nil {
		s.fail(name, e, a, b)
		return nil
	}
	return a
}

func (s *Scope) binaryOut(op int, out, a, b *Tensor) *Tensor {
	name := binaryOutNames[op]
	if !s.ready(name, out, a, b) {
		return nil
	}
	if e := C.sc_binary_out(C.int(op), s.mode(), a.h, b.h, out.h); e != nil {
		s.fail(name, e, a, b, out)
		return nil
	}
	return out
}

func (s *Scope) Add(a, b *Tensor) *Tensor        { return s.binary(bAdd, a, b) }
func (s *Scope) Sub(a, b *Tensor) *Tensor        { return s.binary(bSub, a, b) }
func (s *Scope) Mul(a, b *Tensor) *Tensor        { return s.binary(bMul, a, b) }
func (s *Scope) Div(a, b *Tensor) *Tensor        { return s.binary(bDiv, a, b) }
func (s *Scope) Pow(a, b *Tensor) *Tensor        { return s.binary(bPow, a, b) }
func (s *Scope) Maximum(a, b *Tensor) *Tensor    { return s.binary(bMaximum, a, b) }
func (s *Scope) Minimum(a, b *Tensor) *Tensor    { return s.binary(bMinimum, a, b) }
func (s *Scope) Eq(a, b *Tensor) *Tensor         { return s.binary(bEq, a, b) }
func (s *Scope) Ne(a, b *Tensor) *Tensor         { return s.binary(bNe, a, b) }
func (s *Scope) Lt(a, b *Tensor) *Tensor         { return s.binary(bLt, a, b) }
func (s *Scope) Le(a, b *Tensor) *Tensor         { return s.binary(bLe, a, b) }
func (s *Scope) Gt(a, b *Tensor) *Tensor         { return s.binary(bGt, a, b) }
func (s *Scope) Ge(a, b *Tensor) *Tensor         { return s.binary(bGe, a, b) }
func (s *Scope) LogicalAnd(a, b *Tensor) *Tensor { return s.binary(bAnd, a, b) }
func (s *Scope) LogicalOr(a, b *Tensor) *Tensor  { return s.binary(bOr, a, b) }
func (s *Scope) LogicalXor(a, b *Tensor) *Tensor { return s.binary(bXor, a, b) }
func (s *Scope) Matmul(a, b *Tensor) *Tensor     { return s.binary(bMatmul, a, b) }
func (s *Scope) Bmm(a, b *Tensor) *Tensor        { return s.binary(bBmm, a, b) }
func (s *Scope) Mm(a, b *Tensor) *Tensor         { return s.binary(bMm, a, b) }

// BCEWithLogits is the mean binary cross-entropy of logits a against targets b.
func (s *Scope) BCEWithLogits(a, b *Tensor) *Tensor { return s.binary(bBCEWithLogits, a, b) }

func (s *Scope) Add_(a, b *Tensor) *Tensor { return s.binaryInPlace(bAdd, a, b) }
func (s *Scope) Sub_(a, b *Tensor) *Tensor { return s.binaryInPlace(bSub, a, b) }
func (s *Scope) Mul_(a, b *Tensor) *Tensor { return s.binaryInPlace(bMul, a, b) }
func (s *Scope) Div_(a, b *Tensor) *Tensor { return s.binaryInPlace(bDiv, a, b) }

// AddOut writes a+b into out (resized if needed) without allocating when out fits.
func (s *Scope) AddOut(out, a, b *Tensor) *Tensor    { return s.binaryOut(bAdd, out, a, b) }
func (s *Scope) SubOut(out, a, b *Tensor) *Tensor    { return s.binaryOut(bSub, out, a, b) }
func (s *Scope) MulOut(out, a, b *Tensor) *Tensor    { return s.binaryOut(bMul, out, a, b) }
func (s *Scope) DivOut(out, a, b *Tensor) *Tensor    { return s.binaryOut(bDiv, out, a, b) }
func (s *Scope) MatmulOut(out, a, b *Tensor) *Tensor { return s.binaryOut(bMatmul, out, a, b) }
func (s *Scope) MmOut(out, a, b *Tensor) *Tensor     { return s.binaryOut(bMm, out, a, b) }

// ---- reductions ----

const (
	rSum = iota
	rMean
	rAmax
	rAmin
	rProd
	rVar
	rStd
	rNorm
	rLogSumExp
	rAll
	rAny
	rArgmax
	rArgmin
	rCountNonzero
)

var reduceNames = [...]string{"sum", "mean", "amax", "amin", "prod", "var", "std", "norm", "logsumexp", "all", "any", "argmax", "argmin", "count_nonzero"}

func (s *Scope) reduce(op int, a *Tensor, dims []int64, keepdim bool, p float64) *Tensor {
	name := reduceNames[op]
	if !s.ready(name, a) {
		return nil
	}
	dp, nd := int64s(dims)
	var out C.sc_tensor
	e := C.sc_reduce(C.int(op), s.mode(), a.h, dp, nd, cbool(keepdim), C.double(p), &out)
	return s.result(name, e, out, a)
}

// Sum reduces over dims (all dims when none are given).
func (s *Scope) Sum(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rSum, a, dims, keepdim, 0)
}

// Mean reduces over dims (all dims when none are given).
func (s *Scope) Mean(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rMean, a, dims, keepdim, 0)
}

// Amax is the maximum over dims (all dims when none are given).
func (s *Scope) Amax(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rAmax, a, dims, keepdim, 0)
}

// Amin is the minimum over dims (all dims when none are given).
func (s *Scope) Amin(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rAmin, a, dims, keepdim, 0)
}

// Prod is the product over one dim (or all when none is given).
func (s *Scope) Prod(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rProd, a, dims, keepdim, 0)
}

// Var is the variance (unbiased: N-1) over dims.
func (s *Scope) Var(a *Tensor, unbiased, keepdim bool, dims ...int64) *Tensor {
	p := 0.0
	if unbiased {
		p = 1
	}
	return s.reduce(rVar, a, dims, keepdim, p)
}

// Std is the standard deviation (unbiased: N-1) over dims.
func (s *Scope) Std(a *Tensor, unbiased, keepdim bool, dims ...int64) *Tensor {
	p := 0.0
	if unbiased {
		p = 1
	}
	return s.reduce(rStd, a, dims, keepdim, p)
}

// Norm is the p-norm over dims.
func (s *Scope) Norm(a *Tensor, p float64, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rNorm, a, dims, keepdim, p)
}

// LogSumExp over dims.
func (s *Scope) LogSumExp(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rLogSumExp, a, dims, keepdim, 0)
}

// All is true where every element along the dim (or of the tensor) is non-zero.
func (s *Scope) All(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rAll, a, dims, keepdim, 0)
}

// Any is true where some element along the dim (or of the tensor) is non-zero.
func (s *Scope) Any(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rAny, a, dims, keepdim, 0)
}

// Argmax along one dim (of the flattened tensor when none is given).
func (s *Scope) Argmax(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rArgmax, a, dims, keepdim, 0)
}

// Argmin along one dim (of the flattened tensor when none is given).
func (s *Scope) Argmin(a *Tensor, keepdim bool, dims ...int64) *Tensor {
	return s.reduce(rArgmin, a, dims, keepdim, 0)
}

// CountNonzero over dims.
func (s *Scope) CountNonzero(a *Tensor, dims ...int64) *Tensor {
	return s.reduce(rCountNonzero, a, dims, false, 0)
}

// ---- shape ----

const (
	shReshape = iota
	shPermute
	shExpand
	shSqueeze
	shUnsqueeze
	shFlatten
	shTranspose
	shRepeat
	shFlip
	shView
	shT
	shMovedim
	shDiag
	shOneHot
	shTriu
)

var shapeNames = [...]string{"reshape", "permute", "expand", "squeeze", "unsqueeze", "flatten", "transpose", "repeat", "flip", "view", "t", "movedim", "diag", "one_hot", "triu"}

func (s *Scope) shapeOp(op int, a *Tensor, ints []int64) *Tensor {
	name := shapeNames[op]
	if !s.ready(name, a) {
		return nil
	}
	ip, n := int64s(ints)
	var out C.sc_tensor
	e := C.sc_shape_op(C.int(op), s.mode(), a.h, ip, n, &out)
	if e != nil {
		s.fail(name, e, a)
		if te, ok := s.err.(*Error); ok && len(ints) > 0 {
			te.Msg += fmt.Sprintf(" with arguments %v", ints)
		}
		return nil
	}
	return s.own(out)
}

func (s *Scope) Reshape(a *Tensor, shape ...int64) *Tensor { return s.shapeOp(shReshape, a, shape) }
func (s *Scope) View(a *Tensor, shape ...int64) *Tensor    { return s.shapeOp(shView, a, shape) }
func (s *Scope) Permute(a *Tensor, dims ...int64) *Tensor  { return s.shapeOp(shPermute, a, dims) }
func (s *Scope) Expand(a *Tensor, shape ...int64) *Tensor  { return s.shapeOp(shExpand, a, shape) }

// Squeeze drops size-1 dims (only dim when given).
func (s *Scope) Squeeze(a *Tensor, dim ...int64) *Tensor { return s.shapeOp(shSqueeze, a, dim) }
func (s *Scope) Unsqueeze(a *Tensor, dim int64) *Tensor {
	return s.shapeOp(shUnsqueeze, a, []int64{dim})
}
func (s *Scope) Flatten(a *Tensor, start, end int64) *Tensor {
	return s.shapeOp(shFlatten, a, []int64{start, end})
}
func (s *Scope) Transpose(a *Tensor, d0, d1 int64) *Tensor {
	return s.shapeOp(shTranspose, a, []int64{d0, d1})
}
func (s *Scope) Repeat(a *Tensor, times ...int64) *Tensor { return s.shapeOp(shRepeat, a, times) }
func (s *Scope) Flip(a *Tensor, dims ...int64) *Tensor    { return s.shapeOp(shFlip, a, dims) }
func (s *Scope) T(a *Tensor) *Tensor                      { return s.shapeOp(shT, a, nil) }
func (s *Scope) Movedim(a *Tensor, src, dst int64) *Tensor {
	return s.shapeOp(shMovedim, a, []int64{src, dst})
}
func (s *Scope) Diag(a *Tensor) *Tensor { return s.shapeOp(shDiag, a, nil) }
func (s *Scope) OneHot(a *Tensor, classes int64) *Tensor {
	return s.shapeOp(shOneHot, a, []int64{classes})
}
func (s *Scope) Triu(a *Tensor, k int64) *Tensor { return s.shapeOp(shTriu, a, []int64{k}) }

// Softmax along dim.
func (s *Scope) Softmax(a *Tensor, dim int64) *Tensor {
	if !s.ready("softmax", a) {
		return nil
	}
	var out C.sc_tensor
	return s.result("softmax", C.sc_softmax(0, s.mode(), a.h, C.int64_t(dim), &out), out, a)
}

// LogSoftmax along dim.
func (s *Scope) LogSoftmax(a *Tensor, dim int64) *Tensor {
	if !s.ready("log_softmax", a) {
		return nil
	}
	var out C.sc_tensor
	return s.result("log_softmax", C.sc_softmax(1, s.mode(), a.h, C.int64_t(dim), &out), out, a)
}

// Narrow returns the view a[..., start:start+length, ...] along dim.
func (s *Scope) Narrow(a *Tensor, dim, start, length int64) *Tensor {
	if !s.ready("narrow", a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_narrow(s.mode(), a.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), &out)
	return s.result("narrow", e, out, a)
}

// Select returns the view a[..., index, ...] along dim (dropping dim).
func (s *Scope) Select(a *Tensor, dim, index int64) *Tensor {
	if !s.ready("select", a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_select(s.mode(), a.h, C.int64_t(dim), C.int64_t(index), &out)
	return s.result("select", e, out, a)
}

// IndexSelect gathers whole slices along dim by an int64 index tensor.
func (s *Scope) IndexSelect(a *Tensor, dim int64, index *Tensor) *Tensor {
	if !s.ready("index_select", a, index) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_index_select(s.mode(), a.h, C.int64_t(dim), index.h, &out)
	return s.result("index_select", e, out, a, index)
}

// Gather picks elements along dim by an int64 index tensor of the output's shape.
func (s *Scope) Gather(a *Tensor, dim int64, index *Tensor) *Tensor {
	if !s.ready("gather", a, index) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_gather(s.mode(), a.h, C.int64_t(dim), index.h, &out)
	return s.result("gather", e, out, a, index)
}

// MaskedSelect returns the 1-D tensor of elements where mask is true.
func (s *Scope) MaskedSelect(a, mask *Tensor) *Tensor {
	if !s.ready("masked_select", a, mask) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_masked_select(s.mode(), a.h, mask.h, &out)
	return s.result("masked_select", e, out, a, mask)
}

func (s *Scope) catStack(op string, stack bool, dim int64, ts []*Tensor) *Tensor {
	if !s.ready(op, ts...) {
		return nil
	}
	if len(ts) == 0 {
		s.Fail(&Error{Op: op, Msg: "no tensors"})
		return nil
	}
	hs := make([]C.sc_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.h
	}
	p := (*C.sc_tensor)(C.malloc(C.size_t(len(hs)) * C.size_t(unsafe.Sizeof(hs[0]))))
	defer C.free(unsafe.Pointer(p))
	copy(unsafe.Slice(p, len(hs)), hs)
	var out C.sc_tensor
	e := C.sc_cat(s.mode(), p, C.int(len(hs)), C.int64_t(dim), cbool(stack), &out)
	return s.result(op, e, out, ts...)
}

// Cat concatenates along an existing dim.
func (s *Scope) Cat(dim int64, ts ...*Tensor) *Tensor { return s.catStack("cat", false, dim, ts) }

// Stack joins along a new dim.
func (s *Scope) Stack(dim int64, ts ...*Tensor) *Tensor { return s.catStack("stack", true, dim, ts) }

// Where picks a where cond is true, else b.
func (s *Scope) Where(cond, a, b *Tensor) *Tensor {
	if !s.ready("where", cond, a, b) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_where(s.mode(), cond.h, a.h, b.h, &out)
	return s.result("where", e, out, cond, a, b)
}

// ClampT clamps a between tensors lo and hi (broadcast).
func (s *Scope) ClampT(a, lo, hi *Tensor) *Tensor {
	if !s.ready("clamp", a, lo, hi) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_clamp_t(s.mode(), a.h, lo.h, hi.h, &out)
	return s.result("clamp", e, out, a, lo, hi)
}

// Copy_ copies src into dst (broadcast, converted), outside autograd.
func (s *Scope) Copy_(dst, src *Tensor) *Tensor {
	if !s.ready("copy_", dst, src) {
		return nil
	}
	if e := C.sc_copy_(dst.h, src.h); e != nil {
		s.fail("copy_", e, dst, src)
		return nil
	}
	return dst
}

// ---- nn functional ----

// Linear computes x·wᵀ + b; b may be nil.
func (s *Scope) Linear(x, w, b *Tensor) *Tensor {
	ins := []*Tensor{x, w}
	var bh C.sc_tensor
	if b != nil {
		ins = append(ins, b)
		bh = b.h
	}
	if !s.ready("linear", ins...) {
		return nil
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(b)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(x)
	return s.result("linear", C.sc_linear(s.mode(), x.h, w.h, bh, &out), out, ins...)
}

// ConvOptions are conv2d's geometry; zero values mean stride 1, padding 0, dilation 1,
// groups 1.
type ConvOptions struct {
	Stride, Padding, Dilation [2]int64
	Groups                    int64
}

// Conv2d convolves x [N,C,H,W] with w [O,C/groups,kH,kW]; b may be nil.
func (s *Scope) Conv2d(x, w, b *Tensor, o ConvOptions) *Tensor {
	ins := []*Tensor{x, w}
	var bh C.sc_tensor
	if b != nil {
		ins = append(ins, b)
		bh = b.h
	}
	if !s.ready("conv2d", ins...) {
		return nil
	}
	if o.Stride == [2]int64{} {
		o.Stride = [2]int64{1, 1}
	}
	if o.Dilation == [2]int64{} {
		o.Dilation = [2]int64{1, 1}
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(b)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(x)
	e := C.sc_conv2d(s.mode(), x.h, w.h, bh, (*C.int64_t)(&o.Stride[0]), (*C.int64_t)(&o.Padding[0]),
		(*C.int64_t)(&o.Dilation[0]), C.int64_t(o.Groups), &out)
	return s.result("conv2d", e, out, ins...)
}

// InterpMode selects the interpolation kernel.
type InterpMode int

const (
	Nearest InterpMode = iota
	Bilinear
	Bicubic
)

// Interpolate resizes x [N,C,H,W] to oh×ow. antialias applies to bilinear and bicubic
// (the PIL-like filter used when shrinking).
func (s *Scope) Interpolate(x *Tensor, oh, ow int64, mode InterpMode, alignCorners, antialias bool) *Tensor {
	if !s.ready("interpolate", x) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_interpolate(s.mode(), x.h, C.int64_t(oh), C.int64_t(ow), C.int(mode), cbool(alignCorners), cbool(antialias), &out)
	return s.result("interpolate", e, out, x)
}

// AvgPool2d averages x [N,C,H,W] over kernel windows.
func (s *Scope) AvgPool2d(x *Tensor, kernel, stride, padding [2]int64, countIncludePad bool) *Tensor {
	if !s.ready("avg_pool2d", x) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_avg_pool2d(s.mode(), x.h, (*C.int64_t)(&kernel[0]), (*C.int64_t)(&stride[0]), (*C.int64_t)(&padding[0]), cbool(countIncludePad), &out)
	return s.result("avg_pool2d", e, out, x)
}

// PadMode selects how Pad fills the border.
type PadMode int

const (
	PadConstant PadMode = iota
	PadReflect
	PadReplicate
)

// Pad pads the last dims of x; pads are (left, right, top, bottom) as in PyTorch.
func (s *Scope) Pad(x *Tensor, pads []int64, mode PadMode, value float64) *Tensor {
	if !s.ready("pad", x) {
		return nil
	}
	pp, n := int64s(pads)
	var out C.sc_tensor
	return s.result("pad", C.sc_pad(s.mode(), x.h, pp, n, C.int(mode), C.double(value), &out), out, x)
}

// ---- sorting and selection ----

// TopK returns the k largest (or smallest) values along dim and their indices.
func (s *Scope) TopK(a *Tensor, k, dim int64, largest, sorted bool) (*Tensor, *Tensor) {
	if !s.ready("topk", a) {
		return nil, nil
	}
	var v, i C.sc_tensor
	e := C.sc_topk(s.mode(), a.h, C.int64_t(k), C.int64_t(dim), cbool(largest), cbool(sorted), &v, &i)
	return s.result2("topk", e, v, i, a)
}

// Sort sorts along dim.
func (s *Scope) Sort(a *Tensor, dim int64, descending bool) (*Tensor, *Tensor) {
	if !s.ready("sort", a) {
		return nil, nil
	}
	var v, i C.sc_tensor
	e := C.sc_sort(s.mode(), a.h, C.int64_t(dim), cbool(descending), &v, &i)
	return s.result2("sort", e, v, i, a)
}

// KthValue returns the k-th smallest value (1-based) along dim.
func (s *Scope) KthValue(a *Tensor, k, dim int64, keepdim bool) (*Tensor, *Tensor) {
	if !s.ready("kthvalue", a) {
		return nil, nil
	}
	var v, i C.sc_tensor
	e := C.sc_kthvalue(s.mode(), a.h, C.int64_t(k), C.int64_t(dim), cbool(keepdim), &v, &i)
	return s.result2("kthvalue", e, v, i, a)
}

// AllDims asks Quantile to reduce over every element.
const AllDims int64 = -1000

// Quantile is the q-quantile with linear interpolation along dim (or of all elements
// with AllDims), as torch.quantile.
func (s *Scope) Quantile(a *Tensor, q float64, dim int64, keepdim bool) *Tensor {
	if !s.ready("quantile", a) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_quantile(s.mode(), a.h, C.double(q), C.int64_t(dim), cbool(keepdim), &out)
	return s.result("quantile", e, out, a)
}

// MaxDim returns the maximum along dim and its index.
func (s *Scope) MaxDim(a *Tensor, dim int64, keepdim bool) (*Tensor, *Tensor) {
	if !s.ready("max", a) {
		return nil, nil
	}
	var v, i C.sc_tensor
	e := C.sc_max_dim(s.mode(), a.h, C.int64_t(dim), cbool(keepdim), 0, &v, &i)
	return s.result2("max", e, v, i, a)
}

// MinDim returns the minimum along dim and its index.
func (s *Scope) MinDim(a *Tensor, dim int64, keepdim bool) (*Tensor, *Tensor) {
	if !s.ready("min", a) {
		return nil, nil
	}
	var v, i C.sc_tensor
	e := C.sc_max_dim(s.mode(), a.h, C.int64_t(dim), cbool(keepdim), 1, &v, &i)
	return s.result2("min", e, v, i, a)
}

// ---- linear algebra (use float64 for accuracy) ----

// Eigh returns the eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.
func (s *Scope) Eigh(a *Tensor) (*Tensor, *Tensor) {
	if !s.ready("linalg_eigh", a) {
		return nil, nil
	}
	var v, w C.sc_tensor
	return s.result2("linalg_eigh", C.sc_eigh(a.h, &v, &w), v, w, a)
}

// SVD returns U, S, Vh.
func (s *Scope) SVD(a *Tensor, fullMatrices bool) (*Tensor, *Tensor, *Tensor) {
	if !s.ready("linalg_svd", a) {
		return nil, nil, nil
	}
	var u, sv, vh C.sc_tensor
	if e := C.sc_svd(a.h, cbool(fullMatrices), &u, &sv, &vh); e != nil {
		s.fail("linalg_svd", e, a)
		return nil, nil, nil
	}
	return s.own(u), s.own(sv), s.own(vh)
}

// Pinv is the Moore-Penrose pseudo-inverse.
func (s *Scope) Pinv(a *Tensor) *Tensor {
	if !s.ready("linalg_pinv", a) {
		return nil
	}
	var out C.sc_tensor
	return s.result("linalg_pinv", C.sc_pinv(a.h, &out), out, a)
}
