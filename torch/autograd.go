package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Backward accumulates gradients of t (a scalar, or with grad given) into the leaves.
func (s *Scope) Backward(t *Tensor, grad *Tensor, retainGraph bool) {
	ins := []*Tensor{t}
	var gh C.sc_tensor
	if grad != nil {
		ins = append(ins, grad)
		gh = grad.h
	}
	if !s.ready("backward", ins...) {
		return
	}
	defer runtime.KeepAlive(grad)
	defer runtime.KeepAlive(t)
	if e := C.sc_backward(t.h, gh, cbool(retainGraph)); e != nil {
		s.fail("backward", e, ins...)
	}
}

// Grad returns the accumulated gradient of t (sharing its storage), or nil when there is
// none yet.
func (s *Scope) Grad(t *Tensor) *Tensor {
	if !s.ready("grad", t) {
		return nil
	}
	var out C.sc_tensor
	if e := C.sc_grad(t.h, &out); e != nil {
		s.fail("grad", e, t)
		return nil
	}
	if out == nil {
		return nil
	}
	return s.own(out)
}

func handles(ts []*Tensor) (*C.sc_tensor, func(), error) {
	if len(ts) == 0 {
		return nil, func() {}, nil
	}
	p := (*C.sc_tensor)(C.malloc(C.size_t(len(ts)) * C.size_t(unsafe.Sizeof(C.sc_tensor(nil)))))
	arr := unsafe.Slice(p, len(ts))
	for i, t := range ts {
		if t == nil || t.h == nil {
			C.free(unsafe.Pointer(p))
			return nil, nil, &Error{Op: "handles", Msg: "nil or freed tensor in list"}
		}
		arr[i] = t.h
	}
	return p, func() { C.free(unsafe.Pointer(p)) }, nil
}

// ClipGradNorm scales the gradients of params so that their joint norm (of the given
// type; math.Inf(1) for the max norm) is at most maxNorm, and returns the norm before
// clipping, as torch.nn.utils.clip_grad_norm_.
func ClipGradNorm(params []*Tensor, maxNorm, normType float64) (float64, error) {
	p, free, err := handles(params)
	if err != nil {
		return 0, err
	}
	defer free()
	var total C.double
	defer runtime.KeepAlive(params)
	if err := takeErr("clip_grad_norm", C.sc_clip_grad_norm(p, C.int(len(params)), C.double(maxNorm), C.double(normType), &total)); err != nil {
		return 0, err
	}
	return float64(total), nil
}

// ---- fused kernels ----

// GumbelSoftmax samples softmax((logits + g)/tau) over the last dim with Gumbel noise
// g = -log(-log(u + eps) + eps), u ~ U[0,1) drawn from gen (nil: the default generator).
// With hard it returns the one-hot argmax whose gradient is the soft one (straight-through).
func (s *Scope) GumbelSoftmax(logits *Tensor, tau, eps float64, hard bool, gen *Generator) *Tensor {
	if !s.ready("gumbel_softmax", logits) {
		return nil
	}
	var gh C.sc_gen
	if gen != nil {
		gh = gen.h
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(gen)
	e := C.sc_gumbel_softmax(s.mode(), logits.h, C.double(tau), C.double(eps), cbool(hard), gh, &out)
	return s.result("gumbel_softmax", e, out, logits)
}

// MinMaxOptions select the statistics of MinMaxNormalize.
type MinMaxOptions struct {
	PerImage bool    // per image and channel over H×W of a [B,H,W,C] tensor
	UseGiven bool    // use Lo and Hi instead of the tensor's own min and max (global mode)
	Lo, Hi   float64 // the given statistics
	Eps      float64 // the smallest denominator (default 1e-6)
	Clamp    bool    // clamp the result to [0,1]
}

// MinMaxNormalize computes (x - min) / max(max - min, eps) in one fused pass, with a
// backward that includes the paths through min and max.
func (s *Scope) MinMaxNormalize(x *Tensor, o MinMaxOptions) *Tensor {
	if !s.ready("minmax", x) {
		return nil
	}
	if o.Eps == 0 {
		o.Eps = 1e-6
	}
	var out C.sc_tensor
	e := C.sc_minmax(s.mode(), x.h, cbool(o.PerImage), cbool(o.UseGiven), C.double(o.Lo), C.double(o.Hi), C.double(o.Eps), cbool(o.Clamp), &out)
	return s.result("minmax", e, out, x)
}

// BlurPad is the border handling of GaussianBlur.
type BlurPad int

const (
	// BlurZero pads with zeros (the cuvis plugin's conv2d behaviour).
	BlurZero BlurPad = iota
	// BlurReflect mirrors about the edge, repeating it (scipy.ndimage's default "reflect").
	BlurReflect
	// BlurMirror mirrors about the edge pixel without repeating it (torch's "reflect").
	BlurMirror
	// BlurReplicate repeats the edge pixel.
	BlurReplicate
)

// GaussianBlur smooths [B,H,W] or [B,1,H,W] maps with a normalised Gaussian of the given
// sigma and radius (radius <= 0: floor(3·sigma)+1, the cuvis plugin's rule; scipy's default
// is int(4·sigma+0.5)), applied as two separable passes.
func (s *Scope) GaussianBlur(x *Tensor, sigma float64, radius int64, pad BlurPad) *Tensor {
	if !s.ready("gaussian_blur", x) {
		return nil
	}
	var out C.sc_tensor
	e := C.sc_gaussian_blur(s.mode(), x.h, C.double(sigma), C.int64_t(radius), C.int(pad), &out)
	return s.result("gaussian_blur", e, out, x)
}
