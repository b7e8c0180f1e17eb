package torch

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

// The file of the object that sgemm_ resolves to in the process's global scope: the one
// LibTorch's float32 matrix products call (NULL when no such symbol is loaded).
static const char *sc_sgemm_origin(void) {
	void *p = dlsym(RTLD_DEFAULT, "sgemm_");
	Dl_info info;
	if (p == NULL || dladdr(p, &info) == 0) return NULL;
	return info.dli_fname;
}
*/
import "C"

import (
	"path/filepath"
	"strings"
)

// BLASInfo names the BLAS library LibTorch's CPU matrix products run on in this process.
type BLASInfo struct {
	Path string // the file that defines sgemm_, symlinks resolved ("" when none was found)
	// openblas-openmp, openblas-pthread, openblas-serial, openblas, reference, mkl, other,
	// or unknown (no sgemm_ in the process: a BLAS linked into LibTorch without exporting it)
	Kind string
}

// Warning is why this BLAS is slow or at odds with LibTorch's thread count, with the fix;
// "" when it is fine.
func (b BLASInfo) Warning() string {
	switch b.Kind {
	case "reference":
		return "LibTorch's matrix products run on the reference BLAS (" + b.Path + "), where the detector runs about 1.5× slower than on OpenBLAS: install libopenblas0-openmp (make deps does), or select it with update-alternatives --config libblas.so.3-x86_64-linux-gnu"
	case "openblas-pthread":
		return "LibTorch's matrix products run on OpenBLAS's pthread build (" + b.Path + "), whose threads do not follow LibTorch's thread count (two serve workers each start one per core): install libopenblas0-openmp, or set OPENBLAS_NUM_THREADS=1"
	}
	return ""
}

// BLAS reports which BLAS library LibTorch's float32 matrix products call: the file that
// defines sgemm_ as the dynamic linker resolves it for the whole process. Debian's
// libblas.so.3 is an alternative (the reference implementation, or one of OpenBLAS's
// builds), and liblapack.so.3 another that may load a second BLAS beside it: the first
// definition in load order is the one called.
func BLAS() BLASInfo {
	p := C.sc_sgemm_origin()
	if p == nil {
		return BLASInfo{Kind: "unknown"}
	}
	path := C.GoString(p)
	if r, err := filepath.EvalSymlinks(path); err == nil {
		path = r
	}
	return BLASInfo{Path: path, Kind: blasKind(path)}
}

// blasKind tells a BLAS library by its (resolved) path.
func blasKind(p string) string {
	base := filepath.Base(p)
	switch {
	case strings.HasPrefix(base, "libmkl_"):
		return "mkl"
	case strings.HasPrefix(base, "libopenblas") || strings.Contains(p, "/openblas"):
		for _, v := range []string{"openmp", "pthread", "serial"} {
			if strings.Contains(p, "/openblas-"+v+"/") {
				return "openblas-" + v
			}
		}
		return "openblas"
	case strings.HasPrefix(base, "libblas.so") && strings.Contains(p, "/blas/"):
		return "reference" // Debian's libblas3: /usr/lib/<triplet>/blas/libblas.so.3
	}
	return "other"
}
