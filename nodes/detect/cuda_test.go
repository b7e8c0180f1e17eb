package detect

import (
	"math"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// runOn feeds images created on dev through the detector (moved to dev).
func runOn(t *testing.T, d *AdaCLIP, dev torch.Device, data []float32, b, h, w int, grad bool) (scores []float32, gradSum float64) {
	t.Helper()
	if err := d.To(dev); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	x := torch.FromSlice(s, dev, data, int64(b), int64(h), int64(w), 3)
	if grad {
		x = s.Detach(x)
		if err := x.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	} else {
		s.SetGradEnabled(false)
	}
	out, err := d.Forward(&nodes.Context{Stage: nodes.StageTrain, Scope: s, Device: dev}, map[string]any{"rgb_image": x})
	if err != nil {
		t.Fatal(err)
	}
	sc := out["scores"].(*torch.Tensor)
	if grad {
		s.Backward(s.Sum(sc, false), nil, false)
		g := s.Grad(x)
		if g == nil {
			t.Fatal("no gradient reached the input on " + dev.String())
		}
		v, _ := s.Sum(s.Abs(g), false).Item()
		gradSum = v
	}
	scores, err = torch.Values[float32](s.ToDevice(sc, torch.CPU))
	if err != nil || s.Err() != nil {
		t.Fatal(err, s.Err())
	}
	return scores, gradSum
}

// The detector node on CUDA, in fp32 and fp16 (with warm-up), against the CPU result of
// the same built-in module, and with gradients flowing to the input on the GPU.
func TestCUDADetector(t *testing.T) {
	if !torch.CUDAAvailable() {
		t.Skip("no CUDA device: run scripts/gpu_check.sh on a GPU machine")
	}
	const b, h, w = 2, 48, 40
	data := randomImages(11, b, h, w)
	cpu := newDetector(t, map[string]any{"image_size": 64, "gaussian_sigma": 2.0})
	want, _ := runOn(t, cpu, torch.CPU, data, b, h, w, false)
	for _, c := range []struct {
		name string
		half bool
		tol  float64
	}{{"fp32", false, 2e-3}, {"fp16", true, 3e-2}} {
		t.Run(c.name, func(t *testing.T) {
			d := newDetector(t, map[string]any{"image_size": 64, "gaussian_sigma": 2.0, "use_half_precision": c.half, "enable_warmup": true})
			got, _ := runOn(t, d, torch.CUDA(0), data, b, h, w, false)
			worst := 0.0
			for i := range want {
				worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
			}
			if worst > c.tol {
				t.Errorf("CUDA %s scores differ from the CPU by up to %g (tolerance %g)", c.name, worst, c.tol)
			}
		})
	}
	t.Run("gradients", func(t *testing.T) {
		d := newDetector(t, map[string]any{"image_size": 64, "enable_gradients": true})
		_, g := runOn(t, d, torch.CUDA(0), data, b, h, w, true)
		if !(g > 0) || math.IsInf(g, 0) {
			t.Errorf("gradient magnitude %g on CUDA", g)
		}
	})
}
