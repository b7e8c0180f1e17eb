package detect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// newDetector builds an AdaCLIPDetector node or fails the test.
func newDetector(t testing.TB, params map[string]any) *AdaCLIP {
	t.Helper()
	d, err := NewAdaCLIP("det", params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// randomImages returns b seeded random channels-last images in [0,1] with a few bright
// blobs, so that the detector has something to find.
func randomImages(seed uint64, b, h, w int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]float32, b*h*w*3)
	for i := 0; i < b; i++ {
		base := [3]float64{0.2 + 0.5*rng.Float64(), 0.2 + 0.5*rng.Float64(), 0.2 + 0.5*rng.Float64()}
		cy, cx := rng.IntN(h), rng.IntN(w)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				blob := math.Exp(-float64((y-cy)*(y-cy)+(x-cx)*(x-cx)) / 18)
				for c := 0; c < 3; c++ {
					v := base[c] + 0.05*rng.NormFloat64() + 0.3*blob*float64(c-1)
					out[((i*h+y)*w+x)*3+c] = float32(math.Min(1, math.Max(0, v)))
				}
			}
		}
	}
	return out
}

// runDetector runs the node's Forward in a fresh scope and copies both outputs out.
func runDetector(t testing.TB, d *AdaCLIP, data []float32, b, h, w int) (scores, img []float32) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(data, int64(b), int64(h), int64(w), 3)
	out, err := d.Forward(&nodes.Context{Stage: nodes.StageTest, Scope: s}, map[string]any{"rgb_image": x})
	if err != nil {
		t.Fatal(err)
	}
	sc := out["scores"].(*torch.Tensor)
	if got := sc.Shape(); len(got) != 4 || got[0] != int64(b) || got[1] != int64(h) || got[2] != int64(w) || got[3] != 1 {
		t.Fatalf("scores shape %v, want [%d,%d,%d,1]", got, b, h, w)
	}
	var err1, err2 error
	scores, err1 = sc.Float32s()
	img, err2 = out["anomaly_score"].(*torch.Tensor).Float32s()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return scores, img
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}
