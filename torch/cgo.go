// Package torch is spectraclip's thin Go binding over LibTorch. It is the only package
// of the project that uses cgo; it links only the C ABI library built from csrc/, so the
// same Go binary runs against any LibTorch that csrc/ was built against.
//
// Memory: LibTorch memory is invisible to Go's garbage collector, so tensors are freed
// explicitly. Every op runs inside a Scope, which owns the tensors it creates and frees
// them all in Close; Keep moves a tensor out of its scope (parameters, results kept
// across steps), and such a tensor must be freed with Free. A cleanup attached to kept
// tensors is only a safety net. LiveTensors counts the handles alive, so tests can show a
// step returns to its baseline.
//
// Errors: each op of a Scope records the first failure (LibTorch's message, the op's
// name and its inputs' shapes) and turns every later op into a no-op returning nil, as
// bufio.Scanner does; check Scope.Err after a sequence of ops.
//
// Threads: grad mode and the intra-op thread count are applied inside every C call, so they
// hold on whatever OS thread a goroutine runs on. Autograd, however, numbers recorded steps
// with a per-OS-thread counter and runs backward in that order: for bit-identical gradients
// (where three or more gradients meet at one tensor), record a graph and call Backward on one
// OS thread (runtime.LockOSThread), as the trainer does.
//
// Optimizers: ZeroGrad drops gradients (PyTorch 2.x's set_to_none) on every LibTorch, so a
// parameter that gets no gradient in a step is not decayed or moved by that step.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/../csrc
#cgo LDFLAGS: -lspectraclip_c -Wl,-rpath,$ORIGIN/../lib -Wl,-rpath,$ORIGIN
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Error is a failure reported by LibTorch or by the binding's own argument checks.
type Error struct {
	Op  string // the operation, e.g. "matmul"
	Msg string // what went wrong, including the inputs' shapes where there are any
	Err error  // the Go error behind Msg, where a check made in Go found it (os.ErrNotExist…)
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// Unwrap gives errors.Is and errors.As the Go error behind a check made before LibTorch ran.
func (e *Error) Unwrap() error { return e.Err }

// takeErr converts (and frees) an error string returned by the C ABI.
func takeErr(op string, e C.sc_err) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.sc_free_string(e)
	return &Error{Op: op, Msg: msg}
}

// describe lists the shapes and dtypes of an op's inputs for error messages.
func describe(ins []*Tensor) string {
	if len(ins) == 0 {
		return ""
	}
	parts := make([]string, 0, len(ins))
	for _, t := range ins {
		if t == nil || t.h == nil {
			parts = append(parts, "<nil>")
			continue
		}
		parts = append(parts, t.String())
	}
	return " (inputs " + strings.Join(parts, ", ") + ")"
}

// liveCStrings counts the C strings made by cstr and not yet released by freeC, so tests
// can show that no path leaks them.
var liveCStrings atomic.Int64

func cstr(s string) *C.char { liveCStrings.Add(1); return C.CString(s) }
func freeC(p *C.char) {
	if p != nil {
		liveCStrings.Add(-1)
		C.free(unsafe.Pointer(p))
	}
}

func int64s(v []int64) (*C.int64_t, C.int) {
	if len(v) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0])), C.int(len(v))
}

// Version returns the version of the LibTorch that csrc/ was built against.
func Version() string {
	return shimString("version", func(out **C.char) C.sc_err { return C.sc_version(out) })
}

// BuildInfo says how csrc/ was built: whether with CUDA (and which CUDA runtime) and which
// c10d backends it carries, e.g. "cuda compiled (CUDA runtime 13.0); c10d backends: nccl
// 2.28.9" or "cuda not compiled; c10d backends: gloo".
func BuildInfo() string {
	return shimString("build_info", func(out **C.char) C.sc_err { return C.sc_build_info(out) })
}

// shimString returns the string a shim call writes to its out parameter (and frees it), or
// "unknown" when the call fails.
func shimString(op string, call func(**C.char) C.sc_err) string {
	var out *C.char
	if err := takeErr(op, call(&out)); err != nil {
		return "unknown"
	}
	defer C.sc_free_string(out)
	return C.GoString(out)
}

// CUDADeviceCount returns the number of CUDA devices LibTorch sees (0 on CPU builds).
func CUDADeviceCount() int { return int(C.sc_cuda_device_count()) }

// CUDAAvailable reports whether at least one CUDA device is usable.
func CUDAAvailable() bool { return C.sc_cuda_is_available() != 0 }

// ManualSeed seeds LibTorch's default generators (CPU and every CUDA device).
func ManualSeed(seed uint64) error {
	if err := takeErr("manual_seed", C.sc_manual_seed(C.uint64_t(seed))); err != nil {
		return err
	}
	return takeErr("manual_seed", C.sc_manual_seed_cuda(C.uint64_t(seed)))
}

// SetAllowTF32 lets CUDA float32 matrix products (cuBLAS) and convolutions (cuDNN) run in
// TF32 (on) or forbids it (off), process-wide; it is PyTorch's
// torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 together.
// Until it is called LibTorch's defaults hold (1.12 and later: matmul off, convolutions
// on). TF32 keeps 10 mantissa bits, so results differ from float32 by about 1e-3 relative;
// it has no effect on the CPU.
func SetAllowTF32(on bool) error { return SetAllowTF32Each(on, on) }

// SetAllowTF32Each sets the matmul (cuBLAS) and convolution (cuDNN) TF32 flags separately.
func SetAllowTF32Each(matmul, conv bool) error {
	return takeErr("set_allow_tf32", C.sc_set_allow_tf32(cbool(matmul), cbool(conv)))
}

// AllowTF32 reports whether CUDA float32 matmuls and convolutions may use TF32.
func AllowTF32() (matmul, conv bool, err error) {
	var m, c C.int
	err = takeErr("allow_tf32", C.sc_get_allow_tf32(&m, &c))
	return m != 0, c != 0, err
}

// SetDeterministic turns LibTorch's deterministic algorithms on or off, process-wide:
// PyTorch's torch.use_deterministic_algorithms(on, warn_only=True) together with
// torch.backends.cudnn.deterministic = on (and cudnn.benchmark off). An op with no
// deterministic kernel (mostly CUDA backward passes) warns instead of failing. On LibTorch
// 2.1 and later, while it is on, every tensor empty() makes is filled (NaN for floats), which
// costs a write of each such tensor.
func SetDeterministic(on bool) error {
	// cuBLAS is deterministic only with a fixed workspace, read when its first handle is made
	// (os.Setenv also sets the C environment, which cuBLAS reads)
	if on && os.Getenv("CUBLAS_WORKSPACE_CONFIG") == "" {
		os.Setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
	}
	return takeErr("set_deterministic", C.sc_set_deterministic(cbool(on)))
}

// Deterministic reports whether LibTorch's deterministic algorithms and cuDNN's
// deterministic mode are both on.
func Deterministic() (bool, error) {
	var on C.int
	err := takeErr("deterministic", C.sc_get_deterministic(&on))
	return on != 0, err
}

// SetNumThreads sets LibTorch's intra-op thread count for every OS thread: the shim
// applies it inside each later call on threads where it differs, since LibTorch keeps the
// count per OS thread.
func SetNumThreads(n int) error { return takeErr("set_num_threads", C.sc_set_num_threads(C.int(n))) }

// NumThreads returns the intra-op thread count LibTorch uses for calls from now on.
func NumThreads() int { return int(C.sc_get_num_threads()) }

// parallelThreads is how many threads at::parallel_for inside the shim runs n items on.
func parallelThreads(n int) (int, error) {
	var t C.int
	err := takeErr("parallel_threads", C.sc_parallel_threads(C.int64_t(n), &t))
	return int(t), err
}

// threadNumThreads is LibTorch's intra-op thread count on the calling OS thread as it is,
// without applying the wanted count first (for tests).
func threadNumThreads() int { return int(C.sc_thread_num_threads()) }

// SetCachingAllocator switches LibTorch's CPU allocator to one that keeps freed blocks of
// 1 MiB and more for reuse (on or off). On machines where fresh large allocations cost page
// faults, reusing blocks speeds a pipeline up by one to two orders of magnitude.
func SetCachingAllocator(on bool) error {
	return takeErr("set_caching_allocator", C.sc_set_caching_allocator(cbool(on)))
}

// AllocatorStats reports the caching CPU allocator's cached bytes and its hit/miss counts.
func AllocatorStats() (cached, hits, misses int64, err error) {
	var c, h, m C.int64_t
	err = takeErr("allocator_stats", C.sc_cpu_allocator_stats(&c, &h, &m))
	return int64(c), int64(h), int64(m), err
}

// Synchronize waits for all work on a CUDA device to finish; a no-op for the CPU.
func Synchronize(d Device) error {
	if d.Type != DeviceCUDA {
		return nil
	}
	return takeErr("cuda_synchronize", C.sc_cuda_synchronize(C.int(d.Index)))
}

// CUDAMemory reports the CUDA caching allocator's current, reserved and peak bytes.
func CUDAMemory(d Device) (allocated, reserved, peak int64, err error) {
	if d.Type != DeviceCUDA {
		return 0, 0, 0, fmt.Errorf("torch: cuda_memory: device %s is not a CUDA device", d)
	}
	var a, r, p C.int64_t
	err = takeErr("cuda_memory", C.sc_cuda_memory(C.int(d.Index), &a, &r, &p))
	return int64(a), int64(r), int64(p), err
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
