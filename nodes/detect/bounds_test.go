package detect

import (
	"strings"
	"testing"
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
