package torch

/*
#include "spectraclip.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
)

// Scope owns the tensors its ops create and frees them all in Close. It also carries the
// grad mode that every op it runs passes to LibTorch (set inside each C call, so moving
// between OS threads is harmless) and records the first error of a sequence of ops.
// A Scope is not safe for concurrent use; give each goroutine its own.
type Scope struct {
	handles []*Tensor
	raw     *rawSet // the same handles, for the safety-net cleanup (which must not see the Scope)
	noGrad  bool
	err     error
	closed  bool
}

// NewScope returns an empty scope with gradients enabled.
func NewScope() *Scope {
	s := &Scope{handles: make([]*Tensor, 0, 64), raw: &rawSet{h: make([]C.sc_tensor, 0, 64)}}
	runtime.AddCleanup(s, freeRaw, s.raw)
	return s
}

// rawSet mirrors a scope's handles so that a scope dropped without Close (and with it
// every tensor it owns, since each tensor points to its scope) is still freed.
type rawSet struct{ h []C.sc_tensor }

func freeRaw(r *rawSet) {
	for _, h := range r.h {
		if h != nil {
			freeHandle(h)
		}
	}
	r.h = nil
}

// Run calls fn with a fresh scope, closes it afterwards and returns fn's error or the
// scope's first error.
func Run(fn func(s *Scope) error) error {
	s := NewScope()
	defer s.Close()
	if err := fn(s); err != nil {
		return err
	}
	return s.Err()
}

func (s *Scope) mode() C.int {
	if s.noGrad {
		return C.SC_MODE_NOGRAD
	}
	return 0
}

// Err returns the first error recorded by the scope's ops.
func (s *Scope) Err() error { return s.err }

// ClearErr forgets the recorded error so the scope can be used again.
func (s *Scope) ClearErr() { s.err = nil }

// Fail records err as the scope's error unless one is recorded already.
func (s *Scope) Fail(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

// GradEnabled reports whether ops of this scope record autograd graphs.
func (s *Scope) GradEnabled() bool { return !s.noGrad }

// SetGradEnabled sets the scope's grad mode and returns the previous one.
func (s *Scope) SetGradEnabled(on bool) bool {
	prev := !s.noGrad
	s.noGrad = !on
	return prev
}

// NoGrad runs fn with gradient recording off for this scope's ops.
func (s *Scope) NoGrad(fn func()) {
	prev := s.SetGradEnabled(false)
	defer s.SetGradEnabled(prev)
	fn()
}

// Len returns how many live tensors the scope owns.
func (s *Scope) Len() int {
	n := 0
	for _, t := range s.handles {
		if t != nil {
			n++
		}
	}
	return n
}

// Close frees every tensor the scope still owns. It is idempotent.
func (s *Scope) Close() {
	freed := int64(0)
	for i, t := range s.handles {
		if t != nil && t.h != nil {
			t.h = nil
			t.owner = nil
			freed++
		}
		s.handles[i] = nil
	}
	// raw mirrors handles (nil where a tensor was freed or kept): one C call frees them all
	if len(s.raw.h) > 0 {
		C.sc_tensor_free_many(&s.raw.h[0], C.int64_t(len(s.raw.h)))
		live.Add(-freed)
	}
	s.handles = s.handles[:0]
	clear(s.raw.h)
	s.raw.h = s.raw.h[:0]
	s.closed = true
}

// Reset frees the scope's tensors and clears its error, keeping it usable: the per-step
// pattern of a training loop.
func (s *Scope) Reset() {
	s.Close()
	s.closed = false
	s.err = nil
}

// Keep moves tensors out of the scope: Close will not free them, and a cleanup frees each
// one if the caller drops it without Free. Tensors from other scopes are moved too.
func (s *Scope) Keep(ts ...*Tensor) {
	for _, t := range ts {
		if t == nil || t.h == nil {
			continue
		}
		if t.owner != nil {
			t.owner.release(t.slot)
			t.owner = nil
		}
		t.guard()
	}
}

// Adopt hands an unowned tensor to the scope, which will free it on Close.
func (s *Scope) Adopt(t *Tensor) *Tensor {
	if t == nil || t.h == nil {
		return t
	}
	if t.owner != nil {
		t.owner.release(t.slot)
	}
	if t.guarded {
		t.cleanup.Stop()
		t.guarded = false
	}
	t.owner = s
	t.slot = len(s.handles)
	s.handles = append(s.handles, t)
	s.raw.h = append(s.raw.h, t.h)
	return t
}

func (s *Scope) release(slot int) {
	s.handles[slot] = nil
	s.raw.h[slot] = nil
}

func (s *Scope) own(h C.sc_tensor) *Tensor {
	live.Add(1)
	t := &Tensor{h: h, owner: s, slot: len(s.handles)}
	s.handles = append(s.handles, t)
	s.raw.h = append(s.raw.h, h)
	return t
}

// ready checks the scope and the inputs before an op runs.
func (s *Scope) ready(op string, ins ...*Tensor) bool {
	if s.err != nil {
		return false
	}
	if s.closed {
		s.err = &Error{Op: op, Msg: "scope is closed"}
		return false
	}
	for i, t := range ins {
		if t == nil || t.h == nil {
			s.err = &Error{Op: op, Msg: fmt.Sprintf("input %d is nil or freed (an earlier op may have failed)", i)}
			return false
		}
	}
	return true
}

func (s *Scope) fail(op string, e C.sc_err, ins ...*Tensor) {
	err := takeErr(op, e)
	var te *Error
	if errors.As(err, &te) {
		te.Msg += describe(ins)
	}
	s.Fail(err)
}

// result wraps the output of a C call, or records its error.
func (s *Scope) result(op string, e C.sc_err, out C.sc_tensor, ins ...*Tensor) *Tensor {
	if e != nil {
		s.fail(op, e, ins...)
		return nil
	}
	return s.own(out)
}

func (s *Scope) result2(op string, e C.sc_err, a, b C.sc_tensor, ins ...*Tensor) (*Tensor, *Tensor) {
	if e != nil {
		s.fail(op, e, ins...)
		return nil, nil
	}
	return s.own(a), s.own(b)
}

// keepAlive stops the compiler from collecting tensors whose handles are in a C call.
func keepAlive(ts ...*Tensor) { runtime.KeepAlive(ts) }
