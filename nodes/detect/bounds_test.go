package detect

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/procstat"
)

// TestDetectorSizeBounds: image_size and gaussian_sigma beyond their documented maxima are
// refused when the node is built, naming the parameter and the bound (before: image_size=20000
// ran out of memory and gaussian_sigma=1e9 ended in std::bad_alloc). The bounds themselves are
// accepted.
func TestDetectorSizeBounds(t *testing.T) {
	for _, tc := range []struct {
		params map[string]any
		want   []string
	}{
		{map[string]any{"image_size": 20000}, []string{"image_size", "20000", "1024"}},
		{map[string]any{"image_size": 1025}, []string{"image_size", "1025"}},
		{map[string]any{"gaussian_sigma": 1e9}, []string{"gaussian_sigma", "1e+09", "256"}},
		{map[string]any{"gaussian_sigma": 256.5}, []string{"gaussian_sigma", "256.5"}},
	} {
		_, err := NewAdaCLIP("detector", tc.params)
		if err == nil {
			t.Fatalf("%v: accepted", tc.params)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %q", tc.params, err, w)
			}
		}
	}
	d, err := NewAdaCLIP("detector", map[string]any{"image_size": 1024, "gaussian_sigma": 256})
	if err != nil {
		t.Fatalf("the bounds themselves: %v", err)
	}
	if d.imageSize != 1024 || d.sigma != 256 {
		t.Fatalf("image_size %d, gaussian_sigma %g", d.imageSize, d.sigma)
	}
	if _, err := (BuiltinOptions{ImageSize: 1025}).withDefaults(); err == nil || !strings.Contains(err.Error(), "1024") {
		t.Fatalf("builtin detector of image size 1025: %v", err)
	}
}

// TestLocalRXWorkingSet: local RX on a 512×512×128 cube (128 MiB as float32) raises the peak
// resident memory by less than the cube's own size (before: a float64 copy of the whole
// centred cube, 256 MiB, besides the projection).
func TestLocalRXWorkingSet(t *testing.T) {
	const h, w, c = 512, 512, 128
	cube := make([]float32, h*w*c)
	for i := range cube {
		cube[i] = float32((i*7919)%1000)/1000 + float32(i%c)/float32(c)
	}
	runtime.GC()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	base := procstat.MB("VmRSS:")
	scores, err := LocalRX(cube, h, w, c, LocalRXOptions{Components: 4, Inner: 1, Outer: 2})
	if err != nil {
		t.Fatal(err)
	}
	if grew := procstat.MB("VmHWM:") - base; grew > 128 {
		t.Errorf("peak RSS grew by %.0f MiB for a 128 MiB cube; want less than the cube", grew)
	}
	if len(scores) != h*w {
		t.Fatalf("%d scores", len(scores))
	}
}
