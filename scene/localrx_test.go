package scene

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
print(" ".join(repr(v) for v in res.ravel()))
`

// LocalRX equals a float64 numpy implementation of dual-window RX on the first principal
// components, on a fresh random cube.
func TestLocalRXMatchesNumpy(t *testing.T) {
	const h, w, c = 12, 13, 6
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	cube := make([]float32, h*w*c)
	for i := range cube {
		cube[i] = float32(rng.NormFloat64() * float64(1+i%c))
	}
	dir := t.TempDir()
	npy := filepath.Join(dir, "x.npy")
	if err := writeNPY32(npy, []int{h, w, c}, cube); err != nil {
		t.Fatal(err)
	}
	got, err := LocalRX(cube, h, w, c, LocalRXOptions{Components: 4, Inner: 1, Outer: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(python(), "-c", localRXPy, npy, "4", "1", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, b)
	}
	f := strings.Fields(string(b))
	if len(f) != h*w {
		t.Fatalf("numpy gave %d values", len(f))
	}
	for i, s := range f {
		want, _ := strconv.ParseFloat(s, 64)
		if math.Abs(got[i]-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("pixel %d: %v, numpy %v", i, got[i], want)
		}
	}
}

func python() string {
	return "/usr/bin/python3"
}

// writeNPY32 writes a little-endian float32 .npy (C order).
func writeNPY32(path string, dims []int, data []float32) error {
	shape := make([]string, len(dims))
	for i, s := range dims {
		shape[i] = strconv.Itoa(s)
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }", strings.Join(shape, ", "))
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	buf := []byte("\x93NUMPY\x01\x00")
	buf = append(buf, byte(len(hdr)), byte(len(hdr)>>8))
	buf = append(buf, hdr...)
	for _, v := range data {
		u := math.Float32bits(v)
		buf = append(buf, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return os.WriteFile(path, buf, 0o644)
}
