package torch

/*
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// CPUView returns the elements of a contiguous CPU tensor of element type E as a Go slice
// over the tensor's own memory (no copy): what is written into it is the tensor's content.
// It lets a reader decode a file straight into the tensor a pipeline consumes next.
//
// The slice is valid only while the tensor lives: the caller must keep the tensor (not Free
// it, not let its scope Reset or Close) for as long as it uses the slice, and must not write
// to it while a LibTorch op reads the tensor. Other devices, other element types and
// non-contiguous tensors are errors.
func CPUView[E Element](t *Tensor) ([]E, error) {
	if t == nil || t.h == nil {
		return nil, &Error{Op: "cpu_view", Msg: "nil or freed tensor"}
	}
	i, err := t.info()
	if err != nil {
		return nil, err
	}
	if dt := DTypeOf[E](); i.dtype != dt {
		return nil, &Error{Op: "cpu_view", Msg: fmt.Sprintf("tensor is %s, the view %s", i.dtype, dt)}
	}
	var p unsafe.Pointer
	var n C.int64_t
	defer runtime.KeepAlive(t)
	if err := takeErr("cpu_view", C.sc_cpu_data(t.h, &p, &n)); err != nil {
		return nil, err
	}
	var e E
	if n == 0 || p == nil {
		return []E{}, nil
	}
	return unsafe.Slice((*E)(p), int(n)/int(unsafe.Sizeof(e))), nil
}
