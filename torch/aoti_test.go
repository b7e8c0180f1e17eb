package torch

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// aotiUnavailableMsg is the one line every AOTI entry point answers on a LibTorch older than
// 2.6 (Debian's 1.13).
const aotiUnavailableMsg = "compiled detectors (.pt2, AOTInductor) need LibTorch 2.6 or newer; this build links LibTorch "

// writeTorchScript writes a small TorchScript archive (a zip, like a package, but no package).
func writeTorchScript(t *testing.T, path string) {
	t.Helper()
	m, err := NewModule("Tiny")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.Define("def forward(self, x: Tensor) -> Tensor:\n    return x * 2.0\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
}

// TestAOTIBadFiles: every file that is not a loadable package is an error that names the
// file, never a crash; on a LibTorch without AOTInductor every load is refused with one line.
func TestAOTIBadFiles(t *testing.T) {
	dir := t.TempDir()
	notZip := filepath.Join(dir, "noise.pt2")
	noise := make([]byte, 4096)
	r := rand.New(rand.NewPCG(28, 1))
	for i := range noise {
		noise[i] = byte(r.UintN(256))
	}
	if err := os.WriteFile(notZip, noise, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pt2")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script.pt2") // TorchScript renamed .pt2
	writeTorchScript(t, script)
	cases := []struct {
		name, path string
	}{
		{"missing", filepath.Join(dir, "missing.pt2")},
		{"not a zip", notZip},
		{"empty", empty},
		{"TorchScript renamed .pt2", script},
		{"a folder", dir},
	}
	unavailable := AOTIAvailable()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := LiveTensors()
			m, err := LoadAOTI(c.path, CPU)
			if err == nil {
				m.Close()
				t.Fatalf("loaded %s", c.path)
			}
			te := torchError(t, err, c.path)
			switch {
			case unavailable != nil:
				if !strings.Contains(te.Msg, aotiUnavailableMsg) {
					t.Errorf("on %s: %v, want the LibTorch version refusal", Version(), err)
				}
			case c.name == "missing":
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("missing file: %v is not os.ErrNotExist", err)
				}
			}
			if LiveTensors() != base {
				t.Errorf("live tensors %d -> %d", base, LiveTensors())
			}
			t.Logf("%v", err)
		})
	}
}

// TestAOTIAvailability: 2.6 and newer run packages; older LibTorches say which version they are.
func TestAOTIAvailability(t *testing.T) {
	err := AOTIAvailable()
	v := Version()
	var major, minor int
	if _, e := fmt.Sscanf(v, "%d.%d", &major, &minor); e != nil {
		t.Fatalf("version %q: %v", v, e)
	}
	newEnough := major > 2 || (major == 2 && minor >= 6)
	if newEnough != (err == nil) {
		t.Fatalf("LibTorch %s: AOTIAvailable() = %v", v, err)
	}
	if err != nil {
		want := aotiUnavailableMsg + strings.Join(strings.Split(v, ".")[:2], ".") + ".x"
		if err.(*Error).Msg != want {
			t.Errorf("got %q\nwant %q", err.(*Error).Msg, want)
		}
	}
}

// tinyPackageScript compiles y = (x*w + 1, sum(x*w, 1)) with w = 1..8, batch 1..4, into the
// package argv[1]; it prints SKIP when its torch is too old for AOTInductor.
const tinyPackageScript = `
import sys, torch
base = torch.__version__.split("+")[0]
if tuple(int(p) for p in base.split(".")[:2]) < (2, 6):
    print("SKIP torch", torch.__version__)
    sys.exit(0)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.arange(1, 9, dtype=torch.float32).reshape(1, 8))
    def forward(self, x):
        return x * self.w + 1.0, (x * self.w).sum(1)
batch = torch.export.Dim("batch", min=1, max=4)
ep = torch.export.export(M(), (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
meta = {"spectraclip.torch_version": torch.__version__, "spectraclip.inputs": "float32[1..4,8]", "note": "tiny"}
torch._inductor.aoti_compile_and_package(ep, package_path=sys.argv[1],
    inductor_configs={"aot_inductor.metadata": meta, "cpp.dynamic_threads": True})
print("OK", base)
`

// rewriteMetadata copies the package src to dst with edit applied to its metadata files
// (AOTInductor reads the metadata from the zip's *_metadata.json).
func rewriteMetadata(t *testing.T, src, dst string, edit func(map[string]any)) {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	for _, e := range zr.File {
		rc, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name, "_metadata.json") {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s: %v", e.Name, err)
			}
			edit(m)
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		h := e.FileHeader
		w, err := zw.CreateHeader(&h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAOTIPackage compiles a tiny package with the test Python's torch (which must be the
// LibTorch this build links: make ... TORCH=pip sets PYTHON to the venv's) and runs it from Go.
func TestAOTIPackage(t *testing.T) {
	if err := AOTIAvailable(); err != nil {
		t.Skipf("%v (TestAOTIBadFiles checks the refusal)", err)
	}
	if testing.Short() {
		t.Skip("compiles a package with AOTInductor (about a minute on 2 cores); skipped with -short")
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "tiny.pt2")
	out := pythonTorch(t, tinyPackageScript, pkg)
	if strings.HasPrefix(out, "SKIP") || strings.Contains(out, "\nSKIP") {
		t.Skipf("%s: %s", testPython(), strings.TrimSpace(out))
	}
	if !strings.Contains(out, "OK "+Version()) {
		t.Skipf("%s has another torch than this build's LibTorch %s: %s", testPython(), Version(), out)
	}

	t.Run("forward", func(t *testing.T) {
		m, err := LoadAOTI(pkg, CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		md := m.Metadata()
		if md["note"] != "tiny" || md["AOTI_DEVICE_KEY"] != "cpu" || !strings.HasPrefix(md["spectraclip.torch_version"], Version()) {
			t.Errorf("metadata %v", md)
		}
		names, err := m.ConstantNames()
		if err != nil || len(names) != 1 || names[0] != "w" {
			t.Errorf("constants %v, %v", names, err)
		}
		r := newRNG(2811)
		base := LiveTensors()
		for _, b := range []int{1, 3, 4} {
			xs := randF32(r, b*8, -2, 2)
			s := newScope(t)
			x := s.FromFloat32(xs, int64(b), 8)
			outs, err := m.Forward(x)
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 2 {
				t.Fatalf("batch %d: %d outputs", b, len(outs))
			}
			y, sum := vals(t, s, outs[0]), vals(t, s, outs[1])
			wantY := make([]float64, b*8)
			wantS := make([]float64, b)
			for i := 0; i < b; i++ {
				for j := 0; j < 8; j++ {
					v := float64(xs[i*8+j]) * float64(j+1)
					wantY[i*8+j] = v + 1
					wantS[i] += v
				}
			}
			closeAll(t, "y", y, wantY, 1e-6, 1e-6)
			closeAll(t, "sum", sum, wantS, 1e-5, 1e-6)
			for _, o := range outs {
				o.Free()
			}
			// the same through a scope
			so := s.RunAOTI(m, x)
			if err := s.Err(); err != nil || len(so) != 2 {
				t.Fatalf("RunAOTI: %v", err)
			}
			closeAll(t, "scope y", vals(t, s, so[0]), wantY, 1e-6, 1e-6)
			s.Close()
		}
		if LiveTensors() != base {
			t.Errorf("live tensors %d -> %d", base, LiveTensors())
		}
	})

	t.Run("bad inputs are errors", func(t *testing.T) {
		m, err := LoadAOTI(pkg, CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		s := newScope(t)
		defer s.Close()
		r := newRNG(7)
		cases := []struct {
			name string
			ins  []*Tensor
			want string
		}{
			{"batch over the package's range", []*Tensor{s.FromFloat32(randF32(r, 5*8, -1, 1), 5, 8)}, "the package takes float32[1..4,8]"},
			{"wrong feature size", []*Tensor{s.FromFloat32(randF32(r, 2*9, -1, 1), 2, 9)}, "float32[1..4,8]"},
			{"wrong rank", []*Tensor{s.FromFloat32(randF32(r, 2*8, -1, 1), 2, 8, 1)}, "float32[1..4,8]"},
			{"wrong dtype", []*Tensor{s.FromFloat64(randF64(r, 2*8, -1, 1), 2, 8)}, "Double[2,8]"},
			{"two inputs", []*Tensor{s.FromFloat32(randF32(r, 8, -1, 1), 1, 8), s.FromFloat32(randF32(r, 8, -1, 1), 1, 8)}, "the package takes 1 inputs, got 2"},
			{"no input", nil, "the package takes 1 inputs, got 0"},
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			_, err := m.Forward(c.ins...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
			}
		}
		// a transposed (non-contiguous) input is made contiguous, not misread
		xs := randF32(r, 8*3, -1, 1)
		xt := s.Transpose(s.FromFloat32(xs, 8, 3), 0, 1)
		outs, err := m.Forward(xt)
		if err != nil {
			t.Fatal(err)
		}
		defer outs[0].Free()
		defer outs[1].Free()
		got := vals(t, s, outs[1])
		for i := 0; i < 3; i++ {
			want := 0.0
			for j := 0; j < 8; j++ {
				want += float64(xs[j*3+i]) * float64(j+1)
			}
			if d := got[i] - want; d > 1e-5 || d < -1e-5 {
				t.Errorf("transposed input row %d: %g, want %g", i, got[i], want)
			}
		}
		m.Close()
		m.Close()
		if _, err := m.Forward(xt); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("forward after close: %v", err)
		}
	})

	t.Run("another version or device is refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			edit func(map[string]any)
			want string
		}{
			{"version", func(m map[string]any) { m["spectraclip.torch_version"] = "2.5.1+cu124" },
				"package was compiled with torch 2.5.1+cu124, this build links LibTorch " + Version()},
			{"device", func(m map[string]any) { m["AOTI_DEVICE_KEY"] = "cuda" },
				"package was compiled for cuda, asked to run it on cpu"},
		} {
			bad := filepath.Join(dir, c.name+".pt2")
			rewriteMetadata(t, pkg, bad, c.edit)
			m, err := LoadAOTI(bad, CPU)
			if err == nil {
				m.Close()
				t.Fatalf("%s: loaded", c.name)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), bad) {
				t.Errorf("%s: %v, want %q", c.name, err, c.want)
			}
		}
		if !CUDAAvailable() {
			m, err := LoadAOTI(pkg, CUDA(0))
			if err == nil {
				m.Close()
				t.Fatal("a CPU package loaded for cuda:0")
			}
			if !strings.Contains(err.Error(), "compiled for cpu, asked to run it on cuda") {
				t.Errorf("cuda: %v", err)
			}
		}
	})
}
