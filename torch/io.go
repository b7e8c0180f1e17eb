package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"archive/zip"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"unsafe"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
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
	defer runtime.KeepAlive(ts)
	err = atomicfile.WriteVia(path, 0o600, func(tmp string) error {
		ctmp := cstr(tmp)
		defer freeC(ctmp)
		return takeErr("save "+path, C.sc_save_tensors(ctmp, np, hp, C.int(len(names))))
	})
	var te *Error
	if err == nil || errors.As(err, &te) {
		return err
	}
	// the file system's errors (a full disk says so and names path)
	return fmt.Errorf("torch: save: %w", err)
}

// LoadTensors reads a file written by SaveTensors (or torch.save of a dict of tensors) onto
// dev. The tensors are unowned: free them (FreeAll) or hand them to a scope. The file is
// checked before it is read (CheckTensorArchive): it must be a zip archive whose central
// directory accounts for its size.
func LoadTensors(path string, dev Device) (map[string]*Tensor, error) {
	return LoadTensorsMax(path, dev, 0)
}

// LoadTensorsMax is LoadTensors for a caller that knows how many bytes of tensor data it
// expects: a file whose records hold more than maxData bytes is refused before it is read
// (maxData <= 0: no bound beyond the archive's own).
func LoadTensorsMax(path string, dev Device, maxData int64) (map[string]*Tensor, error) {
	if err := CheckTensorArchive(path, maxData); err != nil {
		return nil, &Error{Op: "load " + path, Msg: err.Error(), Err: err}
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

// Per-record bytes of a zip archive beyond a record's data and name, at most: PyTorch's local
// header (30) with its alignment padding (up to 64 + 4) and zip64 extra (20), the central
// directory entry (46) with its zip64 extra (28); and per archive the end records (22 + 56 +
// 20) and a comment (up to 65535).
const (
	zipRecordOverhead  = 30 + 68 + 20 + 46 + 28
	zipArchiveOverhead = 22 + 56 + 20 + 65535
)

// CheckTensorArchive checks, reading only its end and central directory, that path is a
// regular file holding a zip archive (PyTorch's tensor format) whose records account for its
// size, and, when maxData > 0, whose records hold at most maxData bytes. A file that is
// larger than its directory says (a sparse file, data appended) or whose records claim more
// than the caller expects is refused before any of it is read (#25 item 6).
func CheckTensorArchive(path string, maxData int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	size := st.Size()
	limit := 2*maxData + 1<<20 // storages may be larger than their tensors; the pickle
	if maxData > 0 && size > limit {
		return fmt.Errorf("the file is %d bytes, more than the at most %d bytes of tensors expected here; refusing to read it", size, maxData)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fmt.Errorf("not a PyTorch tensor archive (%v)", err)
	}
	if len(zr.File) == 0 {
		return fmt.Errorf("not a PyTorch tensor archive (no records)")
	}
	var data, accounted uint64
	accounted = zipArchiveOverhead
	for _, zf := range zr.File {
		if zf.CompressedSize64 > uint64(size) || zf.Method == zip.Store && zf.UncompressedSize64 != zf.CompressedSize64 {
			return fmt.Errorf("record %s claims %d bytes (%d stored), the file has %d", zf.Name, zf.UncompressedSize64, zf.CompressedSize64, size)
		}
		data += zf.UncompressedSize64
		accounted += zf.CompressedSize64 + zipRecordOverhead + 2*uint64(len(zf.Name)) + uint64(len(zf.Extra)+len(zf.Comment))
	}
	if uint64(size) > accounted {
		return fmt.Errorf("the file is %d bytes but its zip central directory accounts for at most %d; refusing to read it", size, accounted)
	}
	if maxData > 0 && data > uint64(limit) {
		return fmt.Errorf("its records hold %d bytes, more than the at most %d bytes of tensors expected here; refusing to read it", data, maxData)
	}
	return nil
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
