package torch

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestModuleFromSource(t *testing.T) {
	r := newRNG(60)
	s := newScope(t)
	w := randF64(r, 4, -1, 1)
	m, err := NewModule("Demo")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	steps := []error{
		m.SetAttrInt("k", 3),
		m.SetAttrString("name", "demo"),
		m.SetAttrFloat("scale", 2.5),
		m.SetAttrBool("flag", true),
		m.RegisterBuffer("w", s.FromFloat32(f32s(w), 4)),
		m.RegisterParameter("p", s.FromFloat32([]float32{0.5, -1}, 2)),
		m.Define("def forward(self, x):\n    return (x * self.w, x.sum(dim=1))"),
		m.Define("def mode(self, x):\n    if self.training:\n        return x + 1.0\n    return x * self.p[0]"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	path := filepath.Join(t.TempDir(), "demo.pt")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	lm, err := LoadModule(path, CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Free()
	x := randF64(r, 8, -2, 2)
	check := func(mod *Module, dt DType, tol float64) {
		t.Helper()
		out := s.Forward(mod, s.ToDType(s.FromFloat64(x, 2, 4), dt))
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if len(out) != 2 {
			t.Fatalf("%d outputs, want 2", len(out))
		}
		if out[0].DType() != dt {
			t.Errorf("output dtype %v, want %v", out[0].DType(), dt)
		}
		want0, want1 := make([]float64, 8), make([]float64, 2)
		for i := range x {
			want0[i] = x[i] * float64(float32(w[i%4]))
			want1[i/4] += x[i]
		}
		closeAll(t, "x*w", vals(t, s, out[0]), want0, tol, tol)
		closeAll(t, "x.sum(1)", vals(t, s, out[1]), want1, tol, tol)
	}
	check(m, Float32, 1e-6)
	check(lm, Float32, 1e-6)
	for name, want := range map[string]AttrValue{
		"k": {Kind: "int", Int: 3}, "name": {Kind: "string", String: "demo"},
		"scale": {Kind: "float", Float: 2.5}, "flag": {Kind: "bool", Bool: true}, "missing": {},
	} {
		got, err := lm.Attr(name)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("attr %s = %+v, want %+v", name, got, want)
		}
	}
	wa, err := lm.Attr("w")
	if err != nil || wa.Kind != "tensor" {
		t.Fatalf("attr w: %+v %v", wa, err)
	}
	wv, _ := wa.Tensor.Float64s()
	wa.Tensor.Free()
	closeAll(t, "buffer w", wv, f64s(f32s(w)), 0, 0)
	if !lm.HasMethod("mode") || lm.HasMethod("nope") {
		t.Error("HasMethod wrong")
	}
	// To(CPU, Float64): the float buffers become float64 and a float64 input works.
	if err := lm.To(CPU, Float64); err != nil {
		t.Fatal(err)
	}
	check(lm, Float64, 1e-12)
	// train/eval switches self.training
	xin := s.FromFloat64([]float64{1, 2}, 2)
	if err := lm.Train(true); err != nil {
		t.Fatal(err)
	}
	closeAll(t, "training", vals(t, s, s.RunMethod(lm, "mode", xin)[0]), []float64{2, 3}, 0, 0)
	if err := lm.Train(false); err != nil {
		t.Fatal(err)
	}
	closeAll(t, "eval", vals(t, s, s.RunMethod(lm, "mode", xin)[0]), []float64{0.5, 1}, 0, 0)
	// parameters and SetRequiresGrad
	ps, err := lm.Parameters()
	if err != nil {
		t.Fatal(err)
	}
	defer FreeAll(ps)
	if len(ps) != 1 || ps["p"] == nil {
		t.Fatalf("parameters %v", ps)
	}
	if ps["p"].DType() != Float64 {
		t.Errorf("parameter dtype after To = %v", ps["p"].DType())
	}
	for _, on := range []bool{true, false} {
		if err := lm.SetRequiresGrad(on); err != nil {
			t.Fatal(err)
		}
		if ps["p"].RequiresGrad() != on {
			t.Errorf("SetRequiresGrad(%v) not visible on the parameter", on)
		}
	}
}

func f32s(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}

func TestModuleFromPython(t *testing.T) {
	dir := t.TempDir()
	// one Python run writes both modules: importing torch takes seconds
	pythonTorch(t, `
import sys, torch
torch.manual_seed(3)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 3)
    def forward(self, x):
        y = self.lin(x)
        return torch.relu(y), y.sum(dim=1)
m = M().eval()
torch.jit.script(m).save(sys.argv[1] + "/script.pt")
torch.jit.trace(m, torch.randn(2, 5)).save(sys.argv[1] + "/trace.pt")
`, dir)
	for _, how := range []string{"script", "trace"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(dir, how+".pt")
			m, err := LoadModule(path, CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			ps, err := m.Parameters()
			if err != nil {
				t.Fatal(err)
			}
			defer FreeAll(ps)
			wt, bt := ps["lin.weight"], ps["lin.bias"]
			if wt == nil || bt == nil {
				t.Fatalf("parameters: %v", ps)
			}
			w, _ := wt.Float64s()
			b, _ := bt.Float64s()
			s := newScope(t)
			x := randF64(newRNG(61), 4*5, -1, 1)
			out := s.Forward(m, s.FromFloat32(f32s(x), 4, 5))
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			want0, want1 := make([]float64, 12), make([]float64, 4)
			for i := 0; i < 4; i++ {
				for j := 0; j < 3; j++ {
					y := b[j]
					for k := 0; k < 5; k++ {
						y += float64(float32(x[i*5+k])) * w[j*5+k]
					}
					want0[i*3+j] = math.Max(y, 0)
					want1[i] += y
				}
			}
			closeAll(t, "relu(linear)", vals(t, s, out[0]), want0, 1e-5, 0)
			closeAll(t, "sum", vals(t, s, out[1]), want1, 1e-5, 0)
		})
	}
}

func TestTensorSaveLoad(t *testing.T) {
	r := newRNG(62)
	s := newScope(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "t.pt")
	a := randF64(r, 6, -1, 1)
	in := map[string]*Tensor{
		"a":      s.FromFloat64(a, 2, 3),
		"f32":    s.FromFloat32(f32s(a), 3, 2),
		"i64":    s.FromInt64([]int64{1, -5, 1 << 40}, 3),
		"mask":   s.FromBool([]bool{true, false}, 2),
		"scalar": s.Scalar(4.25, Float32, CPU),
	}
	if err := SaveTensors(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := LoadTensors(path, CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeAll(out)
	if len(out) != len(in) {
		t.Fatalf("loaded %d tensors, want %d", len(out), len(in))
	}
	for k, v := range in {
		g := out[k]
		if g == nil || g.DType() != v.DType() || !shapeEq(g.Shape(), v.Shape()) {
			t.Fatalf("%s: loaded %v, saved %v", k, g, v)
		}
		gv, _ := g.Float64s()
		if !slices.Equal(gv, vals(t, s, v)) {
			t.Errorf("%s: values differ", k)
		}
	}
	t.Run("python reads it", func(t *testing.T) {
		got := pythonTorch(t, `
import sys, torch
d = torch.load(sys.argv[1])
assert isinstance(d, dict), type(d)
for k in sorted(d):
    v = d[k]
    print(k, str(v.dtype), list(v.shape), repr(float(v.double().sum())))
`, path)
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 5 || !strings.HasPrefix(lines[0], "a torch.float64 [2, 3]") || !strings.HasPrefix(lines[2], "i64 torch.int64 [3]") {
			t.Fatalf("python saw:\n%s", got)
		}
		sum := 0.0
		for _, v := range a {
			sum += v
		}
		f := strings.Fields(lines[0])
		if v := parseFloats(t, f[len(f)-1]); math.Abs(v[0]-sum) > 1e-12 {
			t.Errorf("python sum %v, want %v", v[0], sum)
		}
	})
	t.Run("failed save keeps the old file", func(t *testing.T) {
		before, _ := os.ReadFile(path)
		freed := s.FromFloat32([]float32{1}, 1)
		freed.Free()
		if err := SaveTensors(path, map[string]*Tensor{"x": freed}); err == nil {
			t.Fatal("saving a freed tensor succeeded")
		}
		if err := SaveTensors(filepath.Join(dir, "no", "such", "dir.pt"), in); err == nil {
			t.Fatal("saving into a missing directory succeeded")
		}
		after, _ := os.ReadFile(path)
		if !slices.Equal(before, after) {
			t.Fatal("failed save changed the previous file")
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp") {
				t.Errorf("temporary file left behind: %s", e.Name())
			}
		}
	})
}
