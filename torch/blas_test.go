package torch

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBLASFromMaps: the library is told from /proc/self/maps lines as the kernel writes
// them (Debian's alternatives resolved), an optimised one wins over a reference one.
func TestBLASFromMaps(t *testing.T) {
	line := func(p string) string { return "7f3a2c000000-7f3a2c100000 r-xp 00010000 fd:01 123456 " + p + "\n" }
	for _, c := range []struct{ maps, kind, path string }{
		{line("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"), "reference", "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"},
		{line("/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3"), "openblas-openmp", "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3"},
		{line("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"), "openblas-pthread", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"},
		{line("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3") + line("/usr/lib/x86_64-linux-gnu/openblas-serial/libblas.so.3"), "openblas-serial", "/usr/lib/x86_64-linux-gnu/openblas-serial/libblas.so.3"},
		{line("/opt/intel/lib/libmkl_rt.so.2"), "mkl", "/opt/intel/lib/libmkl_rt.so.2"},
		{line("/usr/lib/libc.so.6") + "7f3a2c000000-7f3a2c100000 rw-p 00000000 00:00 0\n" + line("[heap]"), "unknown", ""},
	} {
		got := blasFromMaps(bufio.NewScanner(strings.NewReader(c.maps)))
		if got.Kind != c.kind || got.Path != c.path {
			t.Errorf("%q: got %+v, want %s %s", c.maps, got, c.kind, c.path)
		}
		if (got.Warning() != "") != (c.kind == "reference" || c.kind == "openblas-pthread") {
			t.Errorf("%s: warning %q", c.kind, got.Warning())
		}
	}
}

// TestBLASOfThisProcess: the library found in this process (which links LibTorch) is the
// file Debian's libblas.so.3 link resolves to, or one beside it (independent check: the file system).
func TestBLASOfThisProcess(t *testing.T) {
	link := "/usr/lib/x86_64-linux-gnu/libblas.so.3"
	want, err := filepath.EvalSymlinks(link)
	if err != nil {
		if _, serr := os.Stat(link); os.IsNotExist(serr) {
			t.Skipf("no %s here", link)
		}
		t.Fatal(err)
	}
	_ = Version() // LibTorch loaded and used
	// OpenBLAS's libblas.so.3 is a thin library beside the one doing the work
	if got := BLAS(); filepath.Dir(got.Path) != filepath.Dir(want) {
		t.Fatalf("BLAS() = %+v, want a file beside the one %s resolves to: %s", got, link, want)
	}
}
