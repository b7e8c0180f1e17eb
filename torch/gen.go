package torch

/*
#include "spectraclip.h"
*/
import "C"

import "runtime"

// Generator is a seeded random-number generator for a device.
type Generator struct {
	h       C.sc_gen
	cleanup runtime.Cleanup
}

// NewGenerator returns a generator seeded with seed on dev.
func NewGenerator(seed uint64, dev Device) (*Generator, error) {
	var h C.sc_gen
	if err := takeErr("generator", C.sc_gen_new(C.uint64_t(seed), C.int(dev.Type), C.int(dev.Index), &h)); err != nil {
		return nil, err
	}
	g := &Generator{h: h}
	g.cleanup = runtime.AddCleanup(g, func(h C.sc_gen) { C.sc_gen_free(h) }, h)
	return g, nil
}

// Free releases the generator; idempotent.
func (g *Generator) Free() {
	if g == nil || g.h == nil {
		return
	}
	g.cleanup.Stop()
	C.sc_gen_free(g.h)
	g.h = nil
}

// State returns a copy of the generator's state (a uint8 tensor) for checkpoints.
func (g *Generator) State() (*Tensor, error) {
	if g == nil || g.h == nil {
		return nil, &Error{Op: "generator_state", Msg: "freed generator"}
	}
	var out C.sc_tensor
	defer runtime.KeepAlive(g)
	if err := takeErr("generator_state", C.sc_gen_get_state(g.h, &out)); err != nil {
		return nil, err
	}
	return newUnowned(out), nil
}

// SetState restores a state returned by State.
func (g *Generator) SetState(state *Tensor) error {
	if g == nil || g.h == nil || state == nil || state.h == nil {
		return &Error{Op: "generator_set_state", Msg: "freed generator or state"}
	}
	defer runtime.KeepAlive(g)
	defer runtime.KeepAlive(state)
	return takeErr("generator_set_state", C.sc_gen_set_state(g.h, state.h))
}

// DefaultGeneratorState returns a copy of the default CPU generator's state.
func DefaultGeneratorState() (*Tensor, error) {
	var out C.sc_tensor
	if err := takeErr("default_generator_state", C.sc_default_gen_state(1, &out)); err != nil {
		return nil, err
	}
	return newUnowned(out), nil
}

// SetDefaultGeneratorState restores the default CPU generator's state.
func SetDefaultGeneratorState(state *Tensor) error {
	if state == nil || state.h == nil {
		return &Error{Op: "default_generator_set_state", Msg: "nil state"}
	}
	h := state.h
	defer runtime.KeepAlive(state)
	return takeErr("default_generator_set_state", C.sc_default_gen_state(0, &h))
}
