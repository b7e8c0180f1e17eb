package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

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

// MixChain is the DRCNN channel mixer's forward in one pass over a float32 CPU
// channels-last cube x [B,H,W,C]: layers ws[i] ([O,I,1,1] or [O,I]) with biases bs[i] (bs,
// or any entry, may be nil), LeakyReLU(slope) after the hidden layers when actHidden and
// after the last when actLast; it returns [B,H,W,O_last]. Each tile of pixels goes through
// every layer in registers (AVX2+FMA where the CPU has them), so the cube is read once and
// no 16- or 8-channel intermediate is written. It records no graph: with gradients on and an
// input that requires them it fails; training takes the layer-by-layer path.
func (s *Scope) MixChain(x *Tensor, ws, bs []*Tensor, slope float64, actHidden, actLast bool) *Tensor {
	ins := append([]*Tensor{x}, ws...)
	for _, b := range bs {
		if b != nil {
			ins = append(ins, b)
		}
	}
	if !s.ready("mix_chain", ins...) {
		return nil
	}
	if len(ws) == 0 || len(bs) > len(ws) {
		s.Fail(&Error{Op: "mix_chain", Msg: fmt.Sprintf("%d weights and %d biases: want at least one weight and no more biases than weights", len(ws), len(bs))})
		return nil
	}
	wp, free, err := handles(ws)
	if err != nil {
		s.Fail(err)
		return nil
	}
	defer free()
	n := len(ws)
	bp := (*C.sc_tensor)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.sc_tensor(nil)))))
	defer C.free(unsafe.Pointer(bp))
	barr := unsafe.Slice(bp, n)
	for i, b := range bs {
		if b != nil {
			barr[i] = b.h
		}
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(ins)
	e := C.sc_mix_chain(s.mode(), x.h, wp, bp, C.int(n), C.double(slope), cbool(actHidden), cbool(actLast), &out)
	runtime.KeepAlive(x)
	runtime.KeepAlive(ws)
	return s.result("mix_chain", e, out, ins...)
}

// ClipPreprocess is the detector's pre-processing of rgb [B,H,W,3] float32 on the CPU in
// three passes instead of eight: per image, the value range (max > 1 means [0,255], that
// image is scaled by 1/255), clamp to [0,1] and the BHWC→BCHW transpose in one pass; the
// antialiased bicubic resize to size×size (skipped when H = W = size); CLIP normalisation
// (x − mean)/std with mean and std of 3 values each, in place. The result is the same bits
// as the composed ops (Amax, Mul, Clamp, Permute, Interpolate, Sub, Div). It records no
// graph: with gradients on and rgb requiring them it fails.
func (s *Scope) ClipPreprocess(rgb *Tensor, size int64, mean, std *Tensor) *Tensor {
	if !s.ready("clip_preprocess", rgb, mean, std) {
		return nil
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(std)
	defer runtime.KeepAlive(mean)
	defer runtime.KeepAlive(rgb)
	return s.result("clip_preprocess", C.sc_clip_preprocess(s.mode(), rgb.h, C.int64_t(size), mean.h, std.h, &out), out, rgb, mean, std)
}

// TrimCPUCache frees every block the caching CPU allocator (SetCachingAllocator) holds
// unused and returns how many bytes that was. Blocks are reused only at their exact rounded
// size, so the temporaries of a one-off phase — a statistical fit's float64 copies of the
// cube — stay resident until trimmed. The C heap's free pages are handed back as well
// (malloc_trim), where the blocks under glibc's mmap threshold went.
func TrimCPUCache() (int64, error) {
	var n C.int64_t
	err := takeErr("cpu_allocator_trim", C.sc_cpu_allocator_trim(&n))
	return int64(n), err
}
