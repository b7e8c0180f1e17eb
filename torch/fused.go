package torch

/*
#include "spectraclip.h"
*/
import "C"

import "runtime"

// Conv1x1 is Conv2d with a [O,C,1,1] kernel, stride 1 and no padding, on x [B,C,H,W]
// (usually the BCHW view of a channels-last cube); b may be nil. A float32 CPU call runs
// oneDNN's convolution directly: LibTorch 1.13's conv2d sends a 1×1 kernel with a batch
// under 16 at one thread through im2col and the system BLAS, 10–20× slower with Debian's
// reference BLAS. Other dtypes and devices take conv2d. The output of a channels-last
// input is channels-last, so permuting it back to BHWC costs no copy.
func (s *Scope) Conv1x1(x, w, b *Tensor) *Tensor {
	ins := []*Tensor{x, w}
	var bh C.sc_tensor
	if b != nil {
		ins = append(ins, b)
		bh = b.h
	}
	if !s.ready("conv1x1", ins...) {
		return nil
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(b)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(x)
	return s.result("conv1x1", C.sc_conv1x1(s.mode(), x.h, w.h, bh, &out), out, ins...)
}
