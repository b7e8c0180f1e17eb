package torch

/*
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// DType is a tensor element type.
type DType int

// The element types the binding supports; the values match csrc/spectraclip.h.
const (
	Float32 DType = iota
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Uint8
	Bool
	Int8
	Int16
)

var dtypeNames = [...]string{"float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool", "int8", "int16"}

func (d DType) String() string {
	if d >= 0 && int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// ParseDType reads a dtype name such as "float32" or "bool".
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if n == strings.ToLower(s) {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("torch: unknown dtype %q (allowed: %s)", s, strings.Join(dtypeNames[:], ", "))
}

// Size returns the size of one element in bytes.
func (d DType) Size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Float64, Int64:
		return 8
	case Float16, BFloat16, Int16:
		return 2
	default:
		return 1
	}
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 || d == BFloat16 }

// DeviceType is CPU or CUDA.
type DeviceType int

const (
	DeviceCPU DeviceType = iota
	DeviceCUDA
)

// Device names where a tensor lives.
type Device struct {
	Type  DeviceType
	Index int
}

// CPU is the host device.
var CPU = Device{}

// CUDA returns the CUDA device with the given index.
func CUDA(i int) Device { return Device{Type: DeviceCUDA, Index: i} }

func (d Device) String() string {
	if d.Type == DeviceCUDA {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	return "cpu"
}

// ParseDevice reads "cpu", "cuda", "cuda:N" or "auto" (the first CUDA device when there is
// one, else the CPU). Asking for a CUDA device that does not exist is an error.
func ParseDevice(s string) (Device, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "auto" || s == "":
		if CUDAAvailable() {
			return CUDA(0), nil
		}
		return CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		i := 0
		if s != "cuda" {
			v, err := strconv.Atoi(s[5:])
			if err != nil || v < 0 {
				return CPU, fmt.Errorf("torch: bad device %q (want cpu, cuda, cuda:N or auto)", s)
			}
			i = v
		}
		if n := CUDADeviceCount(); i >= n {
			return CPU, fmt.Errorf("torch: device %q not available (%d CUDA devices; this LibTorch %s)", s, n, Version())
		}
		return CUDA(i), nil
	}
	return CPU, fmt.Errorf("torch: bad device %q (want cpu, cuda, cuda:N or auto)", s)
}

var live atomic.Int64

// LiveTensors returns the number of tensor handles currently alive.
func LiveTensors() int64 { return live.Load() }

// Tensor is a handle to a LibTorch tensor. A Tensor made by a Scope belongs to it and is
// freed by its Close; Keep hands it to the caller, who frees it with Free.
type Tensor struct {
	h       C.sc_tensor
	owner   *Scope
	slot    int
	cleanup runtime.Cleanup
	guarded bool
}

func freeHandle(h C.sc_tensor) {
	C.sc_tensor_free(h)
	live.Add(-1)
}

// newUnowned wraps a handle that no scope owns; a cleanup frees it if the caller forgets.
func newUnowned(h C.sc_tensor) *Tensor {
	live.Add(1)
	t := &Tensor{h: h}
	t.guard()
	return t
}

func (t *Tensor) guard() {
	if !t.guarded {
		t.cleanup = runtime.AddCleanup(t, freeHandle, t.h)
		t.guarded = true
	}
}

// Free releases the tensor now. It is idempotent and safe on nil.
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	if t.guarded {
		t.cleanup.Stop()
		t.guarded = false
	}
	if t.owner != nil {
		t.owner.release(t.slot)
		t.owner = nil
	}
	freeHandle(t.h)
	t.h = nil
}

// Valid reports whether the tensor still holds a handle.
func (t *Tensor) Valid() bool { return t != nil && t.h != nil }

// Dim returns the number of dimensions (0 for a freed tensor).
func (t *Tensor) Dim() int {
	if t == nil || t.h == nil {
		return 0
	}
	var n C.int64_t
	defer runtime.KeepAlive(t)
	if C.sc_tensor_dim(t.h, &n) != nil {
		return 0
	}
	return int(n)
}

// Shape returns the tensor's sizes.
func (t *Tensor) Shape() []int64 {
	n := t.Dim()
	s := make([]int64, n)
	if n > 0 {
		defer runtime.KeepAlive(t)
		if e := C.sc_tensor_shape(t.h, (*C.int64_t)(unsafe.Pointer(&s[0]))); e != nil {
			C.sc_free_string(e)
			return nil
		}
	}
	return s
}

type info struct {
	dtype        DType
	device       Device
	requiresGrad bool
	numel        int64
}

func (t *Tensor) info() (info, error) {
	if t == nil || t.h == nil {
		return info{}, &Error{Op: "info", Msg: "nil or freed tensor"}
	}
	var dt, devt, devi, rg C.int
	var n C.int64_t
	defer runtime.KeepAlive(t)
	if err := takeErr("info", C.sc_tensor_info(t.h, &dt, &devt, &devi, &rg, &n)); err != nil {
		return info{}, err
	}
	return info{DType(dt), Device{DeviceType(devt), int(devi)}, rg != 0, int64(n)}, nil
}

// DType returns the element type.
func (t *Tensor) DType() DType { i, _ := t.info(); return i.dtype }

// Device returns where the tensor lives.
func (t *Tensor) Device() Device { i, _ := t.info(); return i.device }

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 { i, _ := t.info(); return i.numel }

// RequiresGrad reports whether autograd records operations on the tensor.
func (t *Tensor) RequiresGrad() bool { i, _ := t.info(); return i.requiresGrad }

// String describes the tensor as dtype[shape]@device.
func (t *Tensor) String() string {
	if t == nil || t.h == nil {
		return "<freed tensor>"
	}
	i, err := t.info()
	if err != nil {
		return "<bad tensor>"
	}
	sh := t.Shape()
	parts := make([]string, len(sh))
	for k, v := range sh {
		parts[k] = strconv.FormatInt(v, 10)
	}
	s := i.dtype.String() + "[" + strings.Join(parts, ",") + "]"
	if i.device.Type != DeviceCPU {
		s += "@" + i.device.String()
	}
	return s
}

// SetRequiresGrad turns gradient recording for this (leaf) tensor on or off.
func (t *Tensor) SetRequiresGrad(on bool) error {
	if t == nil || t.h == nil {
		return &Error{Op: "requires_grad", Msg: "nil or freed tensor"}
	}
	defer runtime.KeepAlive(t)
	return takeErr("requires_grad", C.sc_set_requires_grad(t.h, cbool(on)))
}

// ZeroGrad zeroes the tensor's accumulated gradient (or drops it when setToNone).
func (t *Tensor) ZeroGrad(setToNone bool) error {
	if t == nil || t.h == nil {
		return &Error{Op: "zero_grad", Msg: "nil or freed tensor"}
	}
	defer runtime.KeepAlive(t)
	return takeErr("zero_grad", C.sc_zero_grad(t.h, cbool(setToNone)))
}

// Element is a Go type that maps onto a tensor dtype.
type Element interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~uint8 | ~bool | ~int8 | ~int16
}

// DTypeOf returns the dtype matching a Go element type. It goes by the type's kind, so a
// named element type (type Score float32) maps to the dtype of its underlying type.
func DTypeOf[E Element]() DType {
	switch reflect.TypeFor[E]().Kind() {
	case reflect.Float32:
		return Float32
	case reflect.Float64:
		return Float64
	case reflect.Int64:
		return Int64
	case reflect.Int32:
		return Int32
	case reflect.Uint8:
		return Uint8
	case reflect.Bool:
		return Bool
	case reflect.Int8:
		return Int8
	case reflect.Int16:
		return Int16
	}
	panic("torch: DTypeOf: unreachable element kind") // Element admits only the kinds above
}

// CopyTo copies the tensor's elements, converted to E, into dst, whose length must equal
// the tensor's element count. The copy never keeps a reference to dst.
func CopyTo[E Element](t *Tensor, dst []E) error {
	if t == nil || t.h == nil {
		return &Error{Op: "copy_out", Msg: "nil or freed tensor"}
	}
	dt := DTypeOf[E]()
	var p unsafe.Pointer
	if len(dst) > 0 {
		p = unsafe.Pointer(&dst[0])
	}
	defer runtime.KeepAlive(t)
	return takeErr("copy_out", C.sc_copy_out(t.h, p, C.int64_t(len(dst)*dt.Size()), C.int(dt)))
}

// CopyFrom overwrites the tensor's elements from src (converted from E); len(src) must
// equal the element count. It reuses the tensor's memory: no allocation on the CPU.
func CopyFrom[E Element](t *Tensor, src []E) error {
	if t == nil || t.h == nil {
		return &Error{Op: "copy_in", Msg: "nil or freed tensor"}
	}
	dt := DTypeOf[E]()
	var p unsafe.Pointer
	if len(src) > 0 {
		p = unsafe.Pointer(&src[0])
	}
	defer runtime.KeepAlive(t)
	return takeErr("copy_in", C.sc_copy_in(t.h, p, C.int64_t(len(src)*dt.Size()), C.int(dt)))
}

// Values copies the tensor's elements out into a new slice of E.
func Values[E Element](t *Tensor) ([]E, error) {
	if t == nil || t.h == nil {
		return nil, &Error{Op: "copy_out", Msg: "nil or freed tensor"}
	}
	out := make([]E, t.Numel())
	if err := CopyTo(t, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32s copies the elements out as float32.
func (t *Tensor) Float32s() ([]float32, error) { return Values[float32](t) }

// Float64s copies the elements out as float64.
func (t *Tensor) Float64s() ([]float64, error) { return Values[float64](t) }

// Int64s copies the elements out as int64.
func (t *Tensor) Int64s() ([]int64, error) { return Values[int64](t) }

// Bools copies the elements out as bool.
func (t *Tensor) Bools() ([]bool, error) { return Values[bool](t) }

// Item returns the single element of a one-element tensor as float64.
func (t *Tensor) Item() (float64, error) {
	if t == nil || t.h == nil {
		return 0, &Error{Op: "item", Msg: "nil or freed tensor"}
	}
	var v C.double
	defer runtime.KeepAlive(t)
	if err := takeErr("item", C.sc_item(t.h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
}

// Share returns a new unowned handle to the same tensor (same storage and autograd
// identity); the caller frees it.
func (t *Tensor) Share() (*Tensor, error) {
	if t == nil || t.h == nil {
		return nil, &Error{Op: "share", Msg: "nil or freed tensor"}
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(t)
	if err := takeErr("share", C.sc_tensor_shallow_clone(t.h, &out)); err != nil {
		return nil, err
	}
	return newUnowned(out), nil
}
