package scene

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// npyFile writes a C-order .npy of shape: descr '<f4' with values from f, or '|u1' labels.
func npyFile(t *testing.T, path, descr string, shape []int, f func(i int) float32) {
	t.Helper()
	n := 1
	dims := ""
	for _, d := range shape {
		n *= d
		dims += fmt.Sprint(d) + ", "
	}
	hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, strings.TrimSuffix(dims, ", "))
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)+1), byte((len(hdr)+1)>>8))
	b = append(append(b, hdr...), '\n')
	for i := 0; i < n; i++ {
		if descr == "|u1" {
			b = append(b, byte(f(i)))
		} else {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f(i)))
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConstantCubeRefused: a scene whose cube holds one value everywhere is refused when it
// is loaded, naming the file, the value and why (before: training drcnn on it failed in
// LibTorch with "backward: tensor does not require grad and has no grad_fn"). A cube that
// differs in a single value loads.
func TestConstantCubeRefused(t *testing.T) {
	dir := t.TempDir()
	mask := filepath.Join(dir, "mask.npy")
	npyFile(t, mask, "|u1", []int{16, 16}, func(i int) float32 {
		if i == 17 || i == 120 || i == 250 {
			return 1
		}
		return 0
	})
	cube := filepath.Join(dir, "const.npy")
	npyFile(t, cube, "<f4", []int{16, 16, 8}, func(int) float32 { return 0.5 })
	_, _, err := Load(scenespec.Spec{Path: cube, MaskPath: mask})
	if err == nil {
		t.Fatal("a constant cube was accepted")
	}
	for _, w := range []string{cube, "constant", "0.5"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	almost := filepath.Join(dir, "almost.npy")
	npyFile(t, almost, "<f4", []int{16, 16, 8}, func(i int) float32 {
		if i == 16*16*8-1 {
			return 0.25
		}
		return 0.5
	})
	if _, _, err := Load(scenespec.Spec{Path: almost, MaskPath: mask}); err != nil {
		t.Fatalf("a cube with one different value: %v", err)
	}
}
