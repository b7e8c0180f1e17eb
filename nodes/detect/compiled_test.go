package detect

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// TestCompiledDetectorNode: the detector node with compiled_path runs the AOTInductor package
// wherever no gradient flows and its TorchScript module where one does. Against the same
// node on TorchScript, on fresh random images: the scores agree within 2·aotiRelTol of the
// scores' scale (each of the two float32 runs is within ~aotiRelTol of the float64 reference,
// see TestBuiltinAOTIRoundTrip; after the blur and resize the node's outputs are no further
// apart: up to 1.25e-5 × the scale seen), also for a batch of 9 run in chunks of the
// package's largest batch (4); gradients still reach the input;
// a package for another image size is refused by runtime aoti (naming compiled_path) and
// left aside by runtime auto.
func TestCompiledDetectorNode(t *testing.T) {
	const size, maxBatch = 32, 4
	_, pt2 := cachedBuiltinAOTI(t, size, maxBatch)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)

	ts := newDetector(t, map[string]any{"image_size": size})
	aoti := newDetector(t, map[string]any{"image_size": size, "compiled_path": pt2, "runtime": RuntimeAOTI})
	for _, d := range []*AdaCLIP{ts, aoti} {
		if err := d.To(torch.CPU); err != nil {
			t.Fatal(err)
		}
	}
	if ts.Runtime() != RuntimeTorchScript || aoti.Runtime() != RuntimeAOTI {
		t.Fatalf("runtimes %s and %s, want torchscript and aoti", ts.Runtime(), aoti.Runtime())
	}

	// the package alone as detector_path: its metadata stand in for the module's attributes
	alone := newDetector(t, map[string]any{"detector_path": pt2})
	if err := alone.To(torch.CPU); err != nil {
		t.Fatal(err)
	}
	if m := alone.Metadata(); m.ImageSize != size || m.DetectorName != BuiltinName || alone.Runtime() != RuntimeAOTI {
		t.Fatalf("package-only detector: metadata %+v, runtime %s", m, alone.Runtime())
	}

	for _, c := range []struct{ b, h, w int }{{1, 40, 36}, {3, 32, 32}, {9, 24, 30}} {
		data := randomImages(seed+uint64(c.b), c.b, c.h, c.w)
		want, wantImg := runDetector(t, ts, data, c.b, c.h, c.w)
		got, gotImg := runDetector(t, aoti, data, c.b, c.h, c.w)
		compareScores(t, "pixel", c.b, want, got)
		compareScores(t, "image", c.b, wantImg, gotImg)
		gotA, gotAImg := runDetector(t, alone, data, c.b, c.h, c.w)
		if !slices.Equal(gotA, got) || !slices.Equal(gotAImg, gotImg) {
			t.Errorf("batch %d: the package alone scores differently from the same package as compiled_path", c.b)
		}
	}
	for _, c := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"detector_path": pt2, "runtime": RuntimeTorchScript}, "runtime torchscript needs a TorchScript"},
		{map[string]any{"detector_path": pt2, "enable_gradients": true}, "forward only"},
		{map[string]any{"detector_path": pt2, "image_size": 48}, "image_size 48"},
	} {
		if _, err := NewAdaCLIP("det", c.params); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), pt2) {
			t.Errorf("%v: %v, want an error naming %s and saying %q", c.params, err, pt2, c.want)
		}
	}

	// where gradients flow the TorchScript module runs: the input gets a gradient
	grad := newDetector(t, map[string]any{"image_size": size, "compiled_path": pt2, "runtime": RuntimeAOTI, "enable_gradients": true})
	if err := grad.To(torch.CPU); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(randomImages(seed, 2, size, size), 2, size, size, 3)
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	out, err := grad.Forward(&nodes.Context{Stage: nodes.StageTrain, Scope: s}, map[string]any{"rgb_image": x})
	if err != nil {
		t.Fatal(err)
	}
	s.Backward(s.Sum(out["scores"].(*torch.Tensor), false), nil, false)
	if err := s.Err(); err != nil {
		t.Fatalf("backward through the detector with a compiled package: %v", err)
	}
	g := s.Grad(x)
	if err := s.Err(); err != nil || g == nil || !g.Valid() {
		t.Fatalf("no gradient reached the input: %v", err)
	}
	gs, _ := g.Float32s()
	if m := maxAbs(gs); !(m > 0) {
		t.Errorf("gradient at the input is %v everywhere", m)
	}

	// a package for 32-pixel images does not stand in for a detector at 48
	bad := newDetector(t, map[string]any{"image_size": 48, "compiled_path": pt2, "runtime": RuntimeAOTI})
	err = bad.To(torch.CPU)
	if err == nil || !strings.Contains(err.Error(), "compiled_path") || !strings.Contains(err.Error(), "image_size 48") {
		t.Errorf("runtime aoti with a 32-pixel package at image_size 48: %v", err)
	}
	auto := newDetector(t, map[string]any{"image_size": 48, "compiled_path": pt2})
	if err := auto.To(torch.CPU); err != nil || auto.Runtime() != RuntimeTorchScript {
		t.Errorf("runtime auto with a mismatched package: %v, runtime %s (want torchscript)", err, auto.Runtime())
	}
}

// TestCompiledRuntimeParams: runtime aoti without compiled_path, and an unknown runtime, are
// refused naming the parameter; on a LibTorch without AOTInductor runtime aoti is refused
// with the version line and runtime auto runs TorchScript.
func TestCompiledRuntimeParams(t *testing.T) {
	for _, c := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"runtime": RuntimeAOTI}, "runtime"},
		{map[string]any{"runtime": "tensorrt", "compiled_path": "x.pt2"}, "runtime"},
	} {
		if _, err := NewAdaCLIP("det", c.params); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.params, err, c.want)
		}
	}
	if torch.AOTIAvailable() == nil {
		return
	}
	d := newDetector(t, map[string]any{"image_size": 16, "compiled_path": "/nonexistent/x.pt2", "runtime": RuntimeAOTI})
	if err := d.To(torch.CPU); err == nil || !strings.Contains(err.Error(), "need LibTorch 2.6 or newer") {
		t.Errorf("runtime aoti on LibTorch %s: %v", torch.Version(), err)
	}
	a := newDetector(t, map[string]any{"image_size": 16, "compiled_path": "/nonexistent/x.pt2"})
	if err := a.To(torch.CPU); err != nil || a.Runtime() != RuntimeTorchScript {
		t.Errorf("runtime auto on LibTorch %s: %v, runtime %s", torch.Version(), err, a.Runtime())
	}
}

func compareScores(t *testing.T, what string, b int, want, got []float32) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("batch %d %s scores: %d values, want %d", b, what, len(got), len(want))
	}
	scale := float64(maxAbs(want))
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i] - want[i]))
		worst = max(worst, d)
		if d > 2*aotiRelTol*scale {
			t.Errorf("batch %d %s score %d: compiled %v, TorchScript %v", b, what, i, got[i], want[i])
			return
		}
	}
	t.Logf("batch %d %s scores: max |compiled - TorchScript| = %.3g × the scale %.3g", b, what, worst/scale, scale)
}

func maxAbs(v []float32) float32 {
	var m float32
	for _, x := range v {
		m = max(m, float32(math.Abs(float64(x))))
	}
	return m
}
