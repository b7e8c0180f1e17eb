package detect

import (
	"bytes"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

const localRXPy = `
import sys, numpy as np
x = np.load(sys.argv[1]).astype(np.float64); k, inn, out = map(int, sys.argv[2:5])
h, w, c = x.shape
f = x.reshape(-1, c); f = f - f.mean(0)
vals, vecs = np.linalg.eigh(np.cov(f.T))
y = (f @ vecs[:, np.argsort(vals)[::-1][:k]]).reshape(h, w, k)
res = np.zeros((h, w))
for r in range(h):
    for q in range(w):
        s = [y[a, b] for a in range(max(0, r-out), min(h, r+out+1)) for b in range(max(0, q-out), min(w, q+out+1))
             if not (abs(a-r) <= inn and abs(b-q) <= inn)]
        s = np.array(s); m = s.mean(0); cv = np.cov(s.T).reshape(k, k)
        cv = cv + (1e-6*np.trace(cv)/k + 1e-12)*np.eye(k)
        d = y[r, q] - m
        res[r, q] = d @ np.linalg.solve(cv, d)
print(" ".join(repr(float(v)) for v in res.ravel()))
`

// numpyLocalRX runs the float64 numpy reference of dual-window RX on one h×w×c cube.
func numpyLocalRX(t *testing.T, cube []float32, h, w, c, k, inner, outer int) []float64 {
	t.Helper()
	if _, err := os.Stat(testpy.Python()); err != nil {
		t.Skip("/usr/bin/python3 (with numpy) is not there")
	}
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, cube, h, w, c); err != nil {
		t.Fatal(err)
	}
	npy := filepath.Join(t.TempDir(), "x.npy")
	if err := os.WriteFile(npy, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testpy.Python(), "-c", localRXPy, npy, strconv.Itoa(k), strconv.Itoa(inner), strconv.Itoa(outer)).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != h*w {
		t.Fatalf("numpy gave %d values, want %d", len(f), h*w)
	}
	v := make([]float64, len(f))
	for i, s := range f {
		var err error
		if v[i], err = strconv.ParseFloat(s, 64); err != nil {
			t.Fatalf("numpy printed %q: %v", s, err)
		}
	}
	return v
}

// TestLocalRXMatchesNumpy: LocalRX, and the LocalRXDetector node image by image over a batch,
// equal a float64 numpy implementation of dual-window RX on the first principal components,
// on fresh random cubes (1e-6 relative for LocalRX's float64, 1e-5 for the node's float32).
func TestLocalRXMatchesNumpy(t *testing.T) {
	const b, h, w, c = 2, 12, 13, 6
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	cube := make([]float32, b*h*w*c)
	for i := range cube {
		cube[i] = float32(rng.NormFloat64() * float64(1+i%c))
	}
	node, err := NewLocalRXDetector("lrx", map[string]any{"components": 4, "inner": 1, "outer": 3})
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	out, err := node.Forward(&nodes.Context{Stage: nodes.StageTest, Scope: s}, map[string]any{"cube": s.FromFloat32(cube, b, h, w, c)})
	if err != nil {
		t.Fatal(err)
	}
	sc := out["scores"].(*torch.Tensor)
	if got := sc.Shape(); len(got) != 4 || got[0] != b || got[1] != h || got[2] != w || got[3] != 1 {
		t.Fatalf("scores shape %v", got)
	}
	nodeScores, err := sc.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < b; i++ {
		img := cube[i*h*w*c : (i+1)*h*w*c]
		want := numpyLocalRX(t, img, h, w, c, 4, 1, 3)
		got, err := LocalRX(img, h, w, c, LocalRXOptions{Components: 4, Inner: 1, Outer: 3})
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if math.Abs(got[j]-want[j]) > 1e-6*math.Max(1, math.Abs(want[j])) {
				t.Fatalf("image %d pixel %d: LocalRX %v, numpy %v", i, j, got[j], want[j])
			}
			if math.Abs(float64(nodeScores[i*h*w+j])-want[j]) > 1e-5*math.Max(1, math.Abs(want[j])) {
				t.Fatalf("image %d pixel %d: node %v, numpy %v", i, j, nodeScores[i*h*w+j], want[j])
			}
		}
	}
	if _, err := NewLocalRXDetector("bad", map[string]any{"inner": 3, "outer": 2}); err == nil || !strings.Contains(err.Error(), "outer") {
		t.Errorf("inner 3, outer 2: %v", err)
	}
}
