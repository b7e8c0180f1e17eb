package decide

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func goQuantile(v []float64, q float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo, hi := math.Floor(pos), math.Ceil(pos)
	return s[int(lo)] + (pos-lo)*(s[int(hi)]-s[int(lo)])
}

func TestQuantileMatchesTorch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := torch.NewScope()
	defer s.Close()
	for _, n := range []int{1, 2, 7, 1000} {
		v := make([]float32, 3*n)
		for i := range v {
			v[i] = rng.Float32()
		}
		x := s.FromFloat32(v, 3, int64(n))
		for _, q := range []float64{0, 0.25, 0.5, 0.9, 0.995, 1} {
			a, _ := Quantile(s, x, q).Float32s()
			b, _ := s.Quantile(x, q, 1, true).Float32s()
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > 1e-6 {
					t.Fatalf("n=%d q=%g: kthvalue quantile %g, torch.quantile %g", n, q, a[i], b[i])
				}
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestQuantileDecider(t *testing.T) {
	const b, h, w, c = 3, 8, 8, 2
	rng := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, b*h*w*c)
	for i := range v {
		v[i] = rng.Float32()*10 - 5
	}
	s := torch.NewScope()
	defer s.Close()
	n, err := nodes.Builtins.New("cuvis_ai.deciders.QuantileBinaryDecider", "d", map[string]any{"quantile": 0.9})
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"logits": s.FromFloat32(v, b, h, w, c)})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := out["decisions"].(*torch.Tensor).Bools()
	per := h * w * c
	for img := 0; img < b; img++ {
		f := make([]float64, per)
		for i := range f {
			f[i] = float64(v[img*per+i])
		}
		thr := goQuantile(f, 0.9)
		for i := range f {
			if want := float32(f[i]) >= float32(thr); d[img*per+i] != want {
				t.Fatalf("image %d value %d (%g vs threshold %g): decision %v", img, i, f[i], thr, d[img*per+i])
			}
		}
	}
	// reduce_dims [-1]: one threshold per pixel over the channels (max of 2 at q=1).
	n2, _ := nodes.Builtins.New("QuantileBinaryDecider", "d", map[string]any{"quantile": 1.0, "reduce_dims": []any{-1}})
	out, err = n2.Forward(&nodes.Context{Scope: s}, map[string]any{"logits": s.FromFloat32(v, b, h, w, c)})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = out["decisions"].(*torch.Tensor).Bools()
	for p := 0; p < b*h*w; p++ {
		if d[2*p] != (v[2*p] >= v[2*p+1]) || d[2*p+1] != (v[2*p+1] >= v[2*p]) {
			t.Fatalf("pixel %d: decisions %v for %v", p, d[2*p:2*p+2], v[2*p:2*p+2])
		}
	}
	if _, err := nodes.Builtins.New("QuantileBinaryDecider", "d", map[string]any{"quantile": 1.5}); err == nil {
		t.Fatal("quantile 1.5 accepted")
	}
}

func TestTwoStageDecider(t *testing.T) {
	const h, w = 10, 10
	rng := rand.New(rand.NewPCG(5, 6))
	// Image 0: low background with 3 hot pixels (score 0.9); image 1: all low.
	v := make([]float32, 2*h*w)
	for i := range v {
		v[i] = 0.1 * rng.Float32()
	}
	for _, p := range []int{11, 45, 78} {
		v[p] = 0.9
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(v, 2, h, w, 1)
	// top_k_fraction 0.03 → k = 3: image 0 scores 0.9, image 1 below 0.1.
	n, err := nodes.Builtins.New("TwoStageBinaryDecider", "d", map[string]any{"image_threshold": 0.2, "top_k_fraction": 0.03, "quantile": 0.97})
	if err != nil {
		t.Fatal(err)
	}
	ts := n.(*TwoStageBinaryDecider)
	sc, _ := ts.ImageScores(s, x).Float32s()
	if math.Abs(float64(sc[0])-0.9) > 1e-6 || sc[1] >= 0.1 {
		t.Fatalf("image scores %v, want [0.9, <0.1]", sc)
	}
	out, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{"logits": x})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := out["decisions"].(*torch.Tensor).Bools()
	f := make([]float64, h*w)
	for i := range f {
		f[i] = float64(v[i])
	}
	thr := float32(goQuantile(f, 0.97))
	for i := 0; i < h*w; i++ {
		if d[i] != (v[i] >= thr) {
			t.Fatalf("image 0 pixel %d: %v (value %g, threshold %g)", i, d[i], v[i], thr)
		}
		if d[h*w+i] {
			t.Fatalf("gated image 1 has a flagged pixel %d", i)
		}
	}
	// Absolute pixel threshold: exactly the 3 hot pixels.
	n2, _ := nodes.Builtins.New("TwoStageBinaryDecider", "d", map[string]any{"image_threshold": 0.2, "top_k_fraction": 0.03, "pixel_threshold": 0.5})
	out, err = n2.Forward(&nodes.Context{Scope: s}, map[string]any{"logits": x})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = out["decisions"].(*torch.Tensor).Bools()
	cnt := 0
	for i, b := range d {
		if b {
			cnt++
			if v[i] != 0.9 {
				t.Fatalf("pixel %d flagged with value %g", i, v[i])
			}
		}
	}
	if cnt != 3 {
		t.Fatalf("%d pixels flagged, want 3", cnt)
	}
	if _, err := nodes.Builtins.New("TwoStageBinaryDecider", "d", map[string]any{"top_k_fraction": 0}); err == nil {
		t.Fatal("top_k_fraction 0 accepted")
	}
}
