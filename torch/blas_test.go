package torch

import (
	"debug/elf"
	"os"
	"testing"
)

// TestBLASKind: libraries are told by their resolved paths as Debian installs them.
func TestBLASKind(t *testing.T) {
	for p, want := range map[string]string{
		"/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0":                   "reference",
		"/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3":             "openblas-openmp",
		"/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblasp-r0.3.21.so":  "openblas-openmp",
		"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so": "openblas-pthread",
		"/usr/lib/x86_64-linux-gnu/openblas-serial/libblas.so.3":             "openblas-serial",
		"/opt/OpenBLAS/lib/libopenblas.so.0":                                 "openblas",
		"/opt/intel/oneapi/mkl/latest/lib/libmkl_rt.so.2":                    "mkl",
		"/usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3":                "other",
		"/usr/lib/python3/dist-packages/torch/lib/libtorch_cpu.so":           "other",
	} {
		if got := blasKind(p); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
		if w := (BLASInfo{Path: p, Kind: want}).Warning(); (w != "") != (want == "reference" || want == "openblas-pthread") {
			t.Errorf("%s: warning %q", want, w)
		}
	}
}

// TestBLASOfThisProcess: the file BLAS names (this process links LibTorch) defines sgemm_
// in its dynamic symbol table (independent check: the ELF file, read with debug/elf).
func TestBLASOfThisProcess(t *testing.T) {
	_ = Version() // LibTorch loaded and used
	b := BLAS()
	if b.Kind == "unknown" {
		t.Skip("no sgemm_ in this process: LibTorch's BLAS is linked in without exporting it")
	}
	if _, err := os.Stat(b.Path); err != nil {
		t.Fatalf("BLAS() = %+v: %v", b, err)
	}
	f, err := elf.Open(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == "sgemm_" && s.Section != elf.SHN_UNDEF {
			return
		}
	}
	t.Fatalf("BLAS() = %+v, but that file does not define sgemm_", b)
}
