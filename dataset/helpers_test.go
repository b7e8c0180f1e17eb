package dataset

import (
	"bytes"
	"encoding/binary"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pythonPath is the interpreter that has numpy (the python3 first on PATH may not).
var pythonPath = testpy.Python()

// needNumpy skips the test when /usr/bin/python3 with numpy is not available.
func needNumpy(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(pythonPath); err != nil {
		t.Skipf("skipping: %s not found; this test checks against files numpy writes", pythonPath)
	}
	if out, err := exec.Command(pythonPath, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Skipf("skipping: %s has no numpy (%v: %s)", pythonPath, err, strings.TrimSpace(string(out)))
	}
}

// runPython runs script with args in dir and returns its stdout; it fails the test on error.
func runPython(t testing.TB, dir, script string, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pythonPath, append([]string{path}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// readF64 reads a raw little-endian float64 file written by numpy's tofile.
func readF64(t testing.TB, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// equalExact compares float32 values with float64 references that are exactly representable.
func equalExact(t testing.TB, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if float64(got[i]) != want[i] {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// mustContain fails unless err is non-nil and its text holds every fragment.
func mustContain(t testing.TB, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not contain %q", err, f)
		}
	}
}
