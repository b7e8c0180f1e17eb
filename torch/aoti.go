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
	"unsafe"
)

// AOTIModule is a model compiled ahead of time by PyTorch's AOTInductor: a .pt2 package
// written by torch._inductor.aoti_compile_and_package and run through LibTorch's
// AOTIModelPackageLoader. It is forward-only (no autograd through it), runs only on the
// device kind it was compiled for, and needs LibTorch 2.6 or newer (AOTIAvailable).
//
// Inputs are checked before each run (device always; dtype and shape where the package
// records a "spectraclip.inputs" metadata entry such as "float32[1..16,3,224,224]"), because
// the compiled code itself trusts them. Several goroutines may call Forward at once; with
// one runner (LoadAOTI) the calls take turns.
type AOTIModule struct {
	h       C.sc_aoti
	cleanup runtime.Cleanup
	path    string
	dev     Device
	meta    map[string]string
}

// AOTIAvailable returns nil when this build of csrc/ can run AOTInductor packages, else an
// error saying why not (the LibTorch it links is older than 2.6).
func AOTIAvailable() error {
	if msg := C.sc_aoti_unavailable(); msg != nil {
		return &Error{Op: "aoti", Msg: C.GoString(msg)}
	}
	return nil
}

// LoadAOTI loads the package at path for dev, which must be of the kind (cpu or cuda) the
// package was compiled for. A package that records the torch version it was built with
// ("spectraclip.torch_version") loads only into that LibTorch version.
func LoadAOTI(path string, dev Device) (*AOTIModule, error) {
	return LoadAOTIModel(path, "model", 1, dev)
}

// LoadAOTIModel is LoadAOTI for a named model of the package (aoti_compile_and_package
// calls the one model "model") with runners concurrent runs (>= 1; each runner holds its
// own activations).
func LoadAOTIModel(path, model string, runners int, dev Device) (*AOTIModule, error) {
	op := "load aoti " + path
	if err := AOTIAvailable(); err != nil {
		return nil, &Error{Op: op, Msg: err.(*Error).Msg}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Op: op, Msg: err.Error(), Err: err}
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Op: op, Msg: "not a regular file"}
	}
	if runners < 1 {
		return nil, &Error{Op: op, Msg: fmt.Sprintf("runners %d must be >= 1", runners)}
	}
	cp, cm := cstr(path), cstr(model)
	defer freeC(cp)
	defer freeC(cm)
	var h C.sc_aoti
	if err := takeErr(op, C.sc_aoti_load(cp, cm, C.int(dev.Type), C.int(dev.Index), C.int(runners), &h)); err != nil {
		return nil, err
	}
	m := &AOTIModule{h: h, path: path, dev: dev}
	m.cleanup = runtime.AddCleanup(m, func(h C.sc_aoti) { C.sc_aoti_free(h) }, h)
	meta, err := m.readMetadata()
	if err != nil {
		m.Close()
		return nil, err
	}
	m.meta = meta
	return m, nil
}

func (m *AOTIModule) check(op string) error {
	if m == nil || m.h == nil {
		return &Error{Op: op, Msg: "nil or closed AOTI module"}
	}
	return nil
}

// Close releases the package (its extracted files and loaded library stay with LibTorch's
// loader until then); idempotent and safe on nil.
func (m *AOTIModule) Close() {
	if m == nil || m.h == nil {
		return
	}
	m.cleanup.Stop()
	C.sc_aoti_free(m.h)
	m.h = nil
}

// Free is Close, under the name the package's other handles use.
func (m *AOTIModule) Free() { m.Close() }

// Path is the file the package was loaded from.
func (m *AOTIModule) Path() string { return m.path }

// Device is the device the package runs on.
func (m *AOTIModule) Device() Device { return m.dev }

// Metadata returns a copy of the package's metadata: what the exporter recorded
// (inductor_configs["aot_inductor.metadata"]) and AOTInductor's own keys (AOTI_DEVICE_KEY,
// AOTI_PLATFORM, ...).
func (m *AOTIModule) Metadata() map[string]string {
	out := make(map[string]string, len(m.meta))
	for k, v := range m.meta {
		out[k] = v
	}
	return out
}

func (m *AOTIModule) readMetadata() (map[string]string, error) {
	var keys, values **C.char
	var n C.int
	defer runtime.KeepAlive(m)
	if err := takeErr("aoti metadata", C.sc_aoti_metadata(m.h, &keys, &values, &n)); err != nil {
		return nil, err
	}
	out := takeStrings(keys, int(n))
	vs := takeStrings(values, int(n))
	meta := make(map[string]string, len(out))
	for i, k := range out {
		meta[k] = vs[i]
	}
	return meta, nil
}

// AOTIPackageMetadata reads the metadata of the package at path (its model "model") without
// loading its code: what LoadAOTI would check (torch version, device kind) and what the
// exporter recorded, so a caller can tell what a package is for before it picks a device.
func AOTIPackageMetadata(path string) (map[string]string, error) {
	op := "aoti metadata " + path
	if err := AOTIAvailable(); err != nil {
		return nil, &Error{Op: op, Msg: err.(*Error).Msg}
	}
	cp, cm := cstr(path), cstr("model")
	defer freeC(cp)
	defer freeC(cm)
	var keys, values **C.char
	var n C.int
	if err := takeErr(op, C.sc_aoti_package_metadata(cp, cm, &keys, &values, &n)); err != nil {
		return nil, err
	}
	ks := takeStrings(keys, int(n))
	vs := takeStrings(values, int(n))
	meta := make(map[string]string, len(ks))
	for i, k := range ks {
		meta[k] = vs[i]
	}
	return meta, nil
}

// ConstantNames lists the fully qualified names of the package's weights and buffers.
func (m *AOTIModule) ConstantNames() ([]string, error) {
	if err := m.check("aoti constants"); err != nil {
		return nil, err
	}
	var names **C.char
	var n C.int
	defer runtime.KeepAlive(m)
	if err := takeErr("aoti constants", C.sc_aoti_constant_names(m.h, &names, &n)); err != nil {
		return nil, err
	}
	return takeStrings(names, int(n)), nil
}

// takeStrings copies and frees a C array of n malloc'd strings.
func takeStrings(p **C.char, n int) []string {
	out := make([]string, n)
	if n > 0 {
		arr := unsafe.Slice(p, n)
		for i, s := range arr {
			out[i] = C.GoString(s)
			C.sc_free_string(s)
		}
	}
	C.sc_free_array(unsafe.Pointer(p))
	return out
}

// run calls the package and hands back the raw output handles.
func (m *AOTIModule) run(op string, ins []*Tensor) ([]C.sc_tensor, error) {
	if err := m.check(op); err != nil {
		return nil, err
	}
	hp, free, err := handles(ins)
	if err != nil {
		return nil, &Error{Op: op, Msg: err.(*Error).Msg}
	}
	defer free()
	var outs *C.sc_tensor
	var n C.int
	defer runtime.KeepAlive(m)
	defer runtime.KeepAlive(ins)
	if e := C.sc_aoti_run(m.h, hp, C.int(len(ins)), &outs, &n); e != nil {
		err := takeErr(op, e)
		err.(*Error).Msg += describe(ins)
		return nil, err
	}
	res := make([]C.sc_tensor, int(n))
	copy(res, unsafe.Slice(outs, int(n)))
	C.sc_free_array(unsafe.Pointer(outs))
	return res, nil
}

// Forward runs the package on the inputs and returns its outputs (in the order of the
// exported program's flattened outputs) as tensors no scope owns: the caller frees each.
func (m *AOTIModule) Forward(ins ...*Tensor) ([]*Tensor, error) {
	hs, err := m.run("aoti forward "+m.pathOr(), ins)
	if err != nil {
		return nil, err
	}
	out := make([]*Tensor, len(hs))
	for i, h := range hs {
		if h != nil {
			out[i] = newUnowned(h)
		}
	}
	return out, nil
}

// RunAOTI is Forward inside a scope: the outputs belong to s, and a failure is recorded as
// the scope's error (nil results).
func (s *Scope) RunAOTI(m *AOTIModule, ins ...*Tensor) []*Tensor {
	op := "aoti forward " + m.pathOr()
	if !s.ready(op, ins...) {
		return nil
	}
	hs, err := m.run(op, ins)
	if err != nil {
		s.Fail(err)
		return nil
	}
	out := make([]*Tensor, len(hs))
	for i, h := range hs {
		if h != nil {
			out[i] = s.own(h)
		}
	}
	return out
}

func (m *AOTIModule) pathOr() string {
	if m == nil {
		return "<nil>"
	}
	return m.path
}
