package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// Module is a TorchScript module.
type Module struct {
	h       C.sc_module
	cleanup runtime.Cleanup
	name    string
}

func newModule(h C.sc_module, name string) *Module {
	m := &Module{h: h, name: name}
	m.cleanup = runtime.AddCleanup(m, func(h C.sc_module) { C.sc_jit_free(h) }, h)
	return m
}

// LoadModule loads a TorchScript file onto dev (in eval mode).
func LoadModule(path string, dev Device) (*Module, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("torch: load module %s: %w", path, err)
	}
	cp := cstr(path)
	defer freeC(cp)
	var h C.sc_module
	if err := takeErr("load module "+path, C.sc_jit_load(cp, C.int(dev.Type), C.int(dev.Index), &h)); err != nil {
		return nil, err
	}
	return newModule(h, path), nil
}

// NewModule starts an empty module to be filled with attributes, buffers and
// TorchScript source (Define).
func NewModule(name string) (*Module, error) {
	cp := cstr(name)
	defer freeC(cp)
	var h C.sc_module
	if err := takeErr("new module", C.sc_jit_new(cp, &h)); err != nil {
		return nil, err
	}
	return newModule(h, name), nil
}

func (m *Module) check(op string) error {
	if m == nil || m.h == nil {
		return &Error{Op: op, Msg: "nil or freed module"}
	}
	return nil
}

// Free releases the module; idempotent.
func (m *Module) Free() {
	if m == nil || m.h == nil {
		return
	}
	m.cleanup.Stop()
	C.sc_jit_free(m.h)
	m.h = nil
}

// Define compiles TorchScript source (methods using self's attributes) into the module.
func (m *Module) Define(src string) error {
	if err := m.check("define"); err != nil {
		return err
	}
	// TorchScript's parser wants the last statement ended by a newline; a Go string
	// literal rarely has one.
	if !strings.HasSuffix(src, "\n") {
		src += "\n"
	}
	cs := cstr(src)
	defer freeC(cs)
	defer runtime.KeepAlive(m)
	return takeErr("define", C.sc_jit_define(m.h, cs))
}

// RegisterBuffer adds a tensor buffer (a detached copy of the handle).
func (m *Module) RegisterBuffer(name string, t *Tensor) error {
	if err := m.check("register_buffer"); err != nil {
		return err
	}
	if !t.Valid() {
		return &Error{Op: "register_buffer", Msg: "nil tensor for " + name}
	}
	cn := cstr(name)
	defer freeC(cn)
	defer runtime.KeepAlive(m)
	defer runtime.KeepAlive(t)
	return takeErr("register_buffer "+name, C.sc_jit_register_buffer(m.h, cn, t.h))
}

// RegisterParameter adds a parameter.
func (m *Module) RegisterParameter(name string, t *Tensor) error {
	if err := m.check("register_parameter"); err != nil {
		return err
	}
	if !t.Valid() {
		return &Error{Op: "register_parameter", Msg: "nil tensor for " + name}
	}
	cn := cstr(name)
	defer freeC(cn)
	defer runtime.KeepAlive(m)
	defer runtime.KeepAlive(t)
	return takeErr("register_parameter "+name, C.sc_jit_register_parameter(m.h, cn, t.h))
}

func (m *Module) registerAttr(name string, kind int, i int64, d float64, s string) error {
	if err := m.check("register_attribute"); err != nil {
		return err
	}
	cn, cs := cstr(name), cstr(s)
	defer freeC(cn)
	defer freeC(cs)
	defer runtime.KeepAlive(m)
	return takeErr("register_attribute "+name, C.sc_jit_register_attr(m.h, cn, C.int(kind), C.int64_t(i), C.double(d), cs))
}

// SetAttrInt registers an int attribute.
func (m *Module) SetAttrInt(name string, v int64) error { return m.registerAttr(name, 0, v, 0, "") }

// SetAttrFloat registers a float attribute.
func (m *Module) SetAttrFloat(name string, v float64) error { return m.registerAttr(name, 1, 0, v, "") }

// SetAttrString registers a string attribute.
func (m *Module) SetAttrString(name, v string) error { return m.registerAttr(name, 2, 0, 0, v) }

// SetAttrBool registers a bool attribute.
func (m *Module) SetAttrBool(name string, v bool) error {
	i := int64(0)
	if v {
		i = 1
	}
	return m.registerAttr(name, 3, i, 0, "")
}

// Save writes the module as a TorchScript archive (renamed into place when complete).
func (m *Module) Save(path string) error {
	if err := m.check("save module"); err != nil {
		return err
	}
	defer runtime.KeepAlive(m)
	return atomicfile.WriteVia(path, 0o644, func(tmp string) error {
		cp := cstr(tmp)
		defer freeC(cp)
		return takeErr("save module "+path, C.sc_jit_save(m.h, cp))
	})
}

// AttrValue is an attribute read from a module.
type AttrValue struct {
	Kind   string // "int", "float", "string", "bool", "tensor" or "" when missing
	Int    int64
	Float  float64
	String string
	Bool   bool
	Tensor *Tensor // unowned; the caller frees it
}

// Attr reads an attribute; Kind is "" when the module has none of that name.
func (m *Module) Attr(name string) (AttrValue, error) {
	if err := m.check("attr"); err != nil {
		return AttrValue{}, err
	}
	cn := cstr(name)
	defer freeC(cn)
	var kind C.int
	var i C.int64_t
	var d C.double
	var s *C.char
	var t C.sc_tensor
	defer runtime.KeepAlive(m)
	if err := takeErr("attr "+name, C.sc_jit_attr(m.h, cn, &kind, &i, &d, &s, &t)); err != nil {
		return AttrValue{}, err
	}
	switch kind {
	case 0:
		return AttrValue{Kind: "int", Int: int64(i)}, nil
	case 1:
		return AttrValue{Kind: "float", Float: float64(d)}, nil
	case 2:
		v := C.GoString(s)
		C.sc_free_string(s)
		return AttrValue{Kind: "string", String: v}, nil
	case 3:
		return AttrValue{Kind: "bool", Bool: i != 0}, nil
	case 4:
		return AttrValue{Kind: "tensor", Tensor: newUnowned(t)}, nil
	}
	return AttrValue{}, nil
}

// To moves the module's parameters and buffers to dev and, when dt >= 0, converts its
// floating-point ones to dt.
func (m *Module) To(dev Device, dt DType) error {
	if err := m.check("module to"); err != nil {
		return err
	}
	defer runtime.KeepAlive(m)
	return takeErr("module to", C.sc_jit_to(m.h, C.int(dt), C.int(dev.Type), C.int(dev.Index)))
}

// Train switches train (true) or eval (false) mode.
func (m *Module) Train(on bool) error {
	if err := m.check("train"); err != nil {
		return err
	}
	defer runtime.KeepAlive(m)
	return takeErr("train", C.sc_jit_train(m.h, cbool(on)))
}

// SetRequiresGrad freezes (false) or unfreezes (true) every parameter.
func (m *Module) SetRequiresGrad(on bool) error {
	if err := m.check("requires_grad"); err != nil {
		return err
	}
	defer runtime.KeepAlive(m)
	return takeErr("requires_grad", C.sc_jit_requires_grad(m.h, cbool(on)))
}

// HasMethod reports whether the module defines the method.
func (m *Module) HasMethod(name string) bool {
	if m.check("has_method") != nil {
		return false
	}
	cn := cstr(name)
	defer freeC(cn)
	var has C.int
	defer runtime.KeepAlive(m)
	if C.sc_jit_has_method(m.h, cn, &has) != nil {
		return false
	}
	return has != 0
}

// Parameters returns the module's named parameters (recursive) as unowned handles.
func (m *Module) Parameters() (map[string]*Tensor, error) {
	if err := m.check("parameters"); err != nil {
		return nil, err
	}
	var names **C.char
	var ts *C.sc_tensor
	var n C.int
	defer runtime.KeepAlive(m)
	if err := takeErr("parameters", C.sc_jit_parameters(m.h, &names, &ts, &n)); err != nil {
		return nil, err
	}
	return takeNamed(names, ts, int(n)), nil
}

// Forward runs the module's forward on the inputs; tuple and list outputs are flattened.
func (s *Scope) Forward(m *Module, ins ...*Tensor) []*Tensor {
	return s.RunMethod(m, "forward", ins...)
}

// RunMethod runs a named method of the module.
func (s *Scope) RunMethod(m *Module, method string, ins ...*Tensor) []*Tensor {
	op := "module " + method
	if !s.ready(op, ins...) {
		return nil
	}
	if err := m.check(op); err != nil {
		s.Fail(err)
		return nil
	}
	hp, free, err := handles(ins)
	if err != nil {
		s.Fail(err)
		return nil
	}
	defer free()
	cm := cstr(method)
	defer freeC(cm)
	var outs *C.sc_tensor
	var n C.int
	defer runtime.KeepAlive(m)
	if e := C.sc_jit_run(s.mode(), m.h, cm, hp, C.int(len(ins)), &outs, &n); e != nil {
		s.fail(op, e, ins...)
		return nil
	}
	arr := unsafe.Slice(outs, int(n))
	res := make([]*Tensor, int(n))
	for i, h := range arr {
		if h != nil {
			res[i] = s.own(h)
		}
	}
	C.sc_free_array(unsafe.Pointer(outs))
	return res
}
