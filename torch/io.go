package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"unsafe"
)

// SaveTensors writes named tensors to path in PyTorch's zip format (torch.load reads it
// as a dict). The file is written beside the target and renamed into place, so an
// interrupted save never leaves a truncated file where a good one was.
func SaveTensors(path string, tensors map[string]*Tensor) error {
	names := make([]string, 0, len(tensors))
	for k := range tensors {
		names = append(names, k)
	}
	sort.Strings(names)
	ts := make([]*Tensor, len(names))
	for i, k := range names {
		if tensors[k] == nil || tensors[k].h == nil {
			return fmt.Errorf("torch: save %s: tensor %q is nil or freed", path, k)
		}
		ts[i] = tensors[k]
	}
	// C strings only once every entry is known good, each freed on every path
	cn := make([]*C.char, len(names))
	defer func() {
		for _, p := range cn {
			freeC(p)
		}
	}()
	for i, k := range names {
		cn[i] = cstr(k)
	}
	hp, free, err := handles(ts)
	if err != nil {
		return err
	}
	defer free()
	var np **C.char
	if len(cn) > 0 {
		np = (**C.char)(C.malloc(C.size_t(len(cn)) * C.size_t(unsafe.Sizeof(cn[0]))))
		defer C.free(unsafe.Pointer(np))
		copy(unsafe.Slice(np, len(cn)), cn)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return fmt.Errorf("torch: save %s: the disk is full (%w)", path, err)
		}
		return fmt.Errorf("torch: save %s: %w", path, err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	ctmp := cstr(tmpName)
	defer freeC(ctmp)
	defer runtime.KeepAlive(ts)
	if err := takeErr("save "+path, C.sc_save_tensors(ctmp, np, hp, C.int(len(names)))); err != nil {
		os.Remove(tmpName)
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("torch: save %s: %w", path, err)
	}
	return nil
}

// LoadTensors reads a file written by SaveTensors (or torch.save of a dict of tensors) onto
// dev. The tensors are unowned: free them (FreeAll) or hand them to a scope.
func LoadTensors(path string, dev Device) (map[string]*Tensor, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("torch: load %s: %w", path, err)
	}
	cp := cstr(path)
	defer freeC(cp)
	var names **C.char
	var ts *C.sc_tensor
	var n C.int
	if err := takeErr("load "+path, C.sc_load_tensors(cp, C.int(dev.Type), C.int(dev.Index), &names, &ts, &n)); err != nil {
		return nil, err
	}
	out := takeNamed(names, ts, int(n))
	return out, nil
}

func takeNamed(names **C.char, ts *C.sc_tensor, n int) map[string]*Tensor {
	out := make(map[string]*Tensor, n)
	if n > 0 {
		na := unsafe.Slice(names, n)
		ta := unsafe.Slice(ts, n)
		for i := 0; i < n; i++ {
			out[C.GoString(na[i])] = newUnowned(ta[i])
			C.sc_free_string(na[i])
		}
	}
	C.sc_free_array(unsafe.Pointer(names))
	C.sc_free_array(unsafe.Pointer(ts))
	return out
}

// FreeAll frees every tensor of a map.
func FreeAll(m map[string]*Tensor) {
	for _, t := range m {
		t.Free()
	}
}
