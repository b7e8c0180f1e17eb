package dataset

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// FirstNonFinite and CountNonFinite agree with math.IsNaN/math.IsInf element by element on
// fresh random slices of every length up to 70 and a long one, holding NaNs, ±Inf, the
// largest finite values, subnormals and -0 at random places.
func TestFirstNonFiniteMatchesMath(t *testing.T) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Copysign(0, -1)),
		math.Float32frombits(0x7f800001), math.Float32frombits(0xff7fffff)}
	for trial := 0; trial < 400; trial++ {
		n := trial % 71
		if trial%50 == 49 {
			n = 5000 + rng.IntN(3000)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 1e30)
		}
		for k := rng.IntN(4); k > 0 && n > 0; k-- {
			v[rng.IntN(n)] = special[rng.IntN(len(special))]
		}
		first, count := -1, 0
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				if first < 0 {
					first = i
				}
				count++
			}
		}
		if got := FirstNonFinite(v); got != first {
			t.Fatalf("trial %d (n=%d): FirstNonFinite = %d, want %d", trial, n, got, first)
		}
		if got := CountNonFinite(v); got != count {
			t.Fatalf("trial %d (n=%d): CountNonFinite = %d, want %d", trial, n, got, count)
		}
	}
}

// enviBadPy writes float32 cubes in each interleave and byte order with numpy, two of their
// values replaced by NaN and -Inf at random places (seeded by argv[1]), and prints the first
// bad value's row, column and band in channels-last order; .f64 holds the cube.
const enviBadPy = `
import sys, numpy as np
rng = np.random.default_rng(int(sys.argv[1]))
H, W, C = 40, 300, 61
cube = rng.standard_normal((H, W, C)).astype(np.float32)
for v in (np.nan, -np.inf):
    cube[rng.integers(H), rng.integers(W), rng.integers(C)] = v
r, c, b = np.argwhere(~np.isfinite(cube))[0]
print(r, c, b)
cube.astype("<f8").tofile("cube.f64")
for il in ("bsq", "bil", "bip"):
    for bo in (0, 1):
        order = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}[il]
        np.ascontiguousarray(cube.transpose(order)).astype((">" if bo else "<") + "f4").tofile("%s_%d.img" % (il, bo))
        with open("%s_%d.hdr" % (il, bo), "w") as f:
            f.write("ENVI\nsamples = %d\nlines = %d\nbands = %d\nheader offset = 0\ndata type = 4\ninterleave = %s\nbyte order = %d\n" % (W, H, C, il, bo))
`

// ReadENVIWith decodes into the caller's buffer (the cube's values are that buffer's) and
// applies the NaN policy while decoding: the error names the first NaN/Inf where numpy finds
// it, and the zero policy gives numpy's cube with the bad values replaced by 0, for every
// interleave and byte order, across several decode blocks.
func TestReadENVIWithIntoAndNaNPolicy(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	seed := rand.IntN(1 << 30)
	pos := strings.Fields(runPython(t, dir, enviBadPy, strconv.Itoa(seed)))
	want := readF64(t, filepath.Join(dir, "cube.f64"))
	zeroed := make([]float64, len(want))
	for i, v := range want {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			zeroed[i] = v
		}
	}
	buf := make([]float32, len(want)+17)
	for i := range buf {
		buf[i] = float32(math.NaN()) // garbage that must be overwritten, not checked
	}
	for _, name := range []string{"bsq_0", "bsq_1", "bil_0", "bil_1", "bip_0", "bip_1"} {
		path := filepath.Join(dir, name+".hdr")
		_, err := ReadENVIWith(path, DecodeOptions{Into: buf, CheckFinite: true})
		var nf *NonFiniteError
		if !errors.As(err, &nf) {
			t.Fatalf("%s (seed %d): error %v, want a NonFiniteError", name, seed, err)
		}
		if got := fmt.Sprint(nf.Row, nf.Col, nf.Band); got != strings.Join(pos, " ") {
			t.Errorf("%s (seed %d): first bad value at row, column, band %s, numpy says %s", name, seed, got, strings.Join(pos, " "))
		}
		if !strings.Contains(err.Error(), name+".img") {
			t.Errorf("%s: error %q does not name the data file", name, err)
		}
		c, err := ReadENVIWith(path, DecodeOptions{Into: buf, CheckFinite: true, NaNPolicy: NaNZero})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if unsafe.SliceData(c.Data) != unsafe.SliceData(buf) || len(c.Data) != len(want) {
			t.Fatalf("%s: the cube was not decoded into the given buffer", name)
		}
		equalExact(t, name, c.Data, zeroed)
		for i := range buf {
			buf[i] = float32(math.NaN())
		}
	}
}
