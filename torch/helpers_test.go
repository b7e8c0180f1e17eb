package torch

import (
	"errors"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newRNG returns a seeded source so failures reproduce while inputs stay non-trivial.
func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func randF64(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float64()
	}
	return v
}

func randF32(r *rand.Rand, n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return v
}

func f64s(v []float32) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(x)
	}
	return o
}

// newScope returns a scope closed when the test ends.
func newScope(t testing.TB) *Scope {
	s := NewScope()
	t.Cleanup(s.Close)
	return s
}

// vals copies a tensor out as float64, failing the test on error.
func vals(t testing.TB, s *Scope, x *Tensor) []float64 {
	t.Helper()
	if err := s.Err(); err != nil {
		t.Fatalf("scope error: %v", err)
	}
	v, err := x.Float64s()
	if err != nil {
		t.Fatalf("copy out: %v", err)
	}
	return v
}

func shapeEq(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// closeAll checks got against want elementwise with |d| <= atol + rtol*|want|.
func closeAll(t testing.TB, name string, got, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	bad := 0
	for i := range got {
		d := math.Abs(got[i] - want[i])
		if !(d <= atol+rtol*math.Abs(want[i])) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.9g, want %.9g (|d|=%.3g)", name, i, got[i], want[i], d)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance (atol %g, rtol %g)", name, bad, len(got), atol, rtol)
	}
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// torchError asserts err is a *Error whose Op or message contains op.
func torchError(t testing.TB, err error, op string) *Error {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("want *torch.Error for %s, got %T: %v", op, err, err)
	}
	if !strings.Contains(te.Error(), op) {
		t.Errorf("error %q does not name %q", te.Error(), op)
	}
	return te
}

// testPython is the Python whose torch the tests compare against (testpy.Python: $PYTHON,
// which make ... TORCH=pip and the GPU check point at a PyTorch 2.x whose LibTorch the shim
// was built against, else Debian's /usr/bin/python3 with torch 1.13).
func testPython() string { return testpy.Python() }

// pythonTorch runs a script with testPython and skips the test when that Python (or its
// torch) is absent.
func pythonTorch(t *testing.T, script string, args ...string) string {
	t.Helper()
	sysPython := testPython()
	if _, err := os.Stat(sysPython); err != nil {
		t.Skipf("%s absent: %v", sysPython, err)
	}
	p := filepath.Join(t.TempDir(), "script.py")
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sysPython, append([]string{p}, args...)...).CombinedOutput()
	if err != nil && strings.Contains(string(out), "No module named 'torch'") {
		t.Skipf("python torch absent: %s", out)
	}
	if err != nil {
		t.Fatalf("python script failed: %v\n%s", err, out)
	}
	return string(out)
}
