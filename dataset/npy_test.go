package dataset

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
)

const npyWriterPy = `
import numpy as np
rng = np.random.default_rng(11)
arrays = {}
for dt in ("<f4", ">f4", "<f8", "<u2", ">i2", "|u1", "|i1", "<i4", "<u4", "<i8", "<u8", "|b1"):
    shape = (3, 5, 4) if dt != "|b1" else (4, 6)
    if dt == "|b1":
        a = rng.random(shape) < 0.5
    elif dt[1] == "f":
        a = (rng.integers(-4000, 4000, size=shape) / 8.0).astype(dt)
    else:
        info = np.iinfo(np.dtype(dt))
        a = rng.integers(max(info.min, -(1 << 24)), min(info.max, 1 << 24), size=shape, endpoint=True).astype(dt)
    tag = dt.replace("<", "le_").replace(">", "be_").replace("|", "")
    for order in ("C", "F"):
        np.save("%s_%s.npy" % (tag, order), np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a))
    a.astype("<f8").tofile(tag + ".f64")
    arrays[tag] = a
np.savez("plain.npz", cube=arrays["le_f4"], gt=np.asfortranarray(arrays["le_u2"][:, :, 0]))
np.savez_compressed("compressed.npz", cube=np.asfortranarray(arrays["be_i2"]), gt=arrays["b1"])
arrays["le_u2"][:, :, 0].astype("<f8").tofile("gt_plain.f64")
`

func TestNPYAgainstNumpy(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	runPython(t, dir, npyWriterPy)
	files, _ := filepath.Glob(filepath.Join(dir, "*.npy"))
	if len(files) != 24 {
		t.Fatalf("python wrote %d .npy files, want 24", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".npy")
		t.Run(name, func(t *testing.T) {
			tag := name[:strings.LastIndexByte(name, '_')]
			want := readF64(t, filepath.Join(dir, tag+".f64"))
			a, err := ReadNPY(f)
			if err != nil {
				t.Fatal(err)
			}
			wantShape := []int{3, 5, 4}
			if tag == "b1" {
				wantShape = []int{4, 6}
			}
			if len(a.Shape) != len(wantShape) || a.Shape[0] != wantShape[0] || a.Shape[1] != wantShape[1] {
				t.Fatalf("shape %v, want %v", a.Shape, wantShape)
			}
			equalExact(t, name, a.Data, want)
		})
	}
	t.Run("npz", func(t *testing.T) {
		for _, tc := range []struct{ file, cube, gt string }{{"plain.npz", "le_f4", "gt_plain"}, {"compressed.npz", "be_i2", "b1"}} {
			m, err := ReadNPZ(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 2 || m["cube"] == nil || m["gt"] == nil {
				t.Fatalf("%s: got keys %v", tc.file, m)
			}
			equalExact(t, tc.file+":cube", m["cube"].Data, readF64(t, filepath.Join(dir, tc.cube+".f64")))
			equalExact(t, tc.file+":gt", m["gt"].Data, readF64(t, filepath.Join(dir, tc.gt+".f64")))
		}
	})
	t.Run("agrees with npyio.Read", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, "le_f4_C.npy"))
		if err != nil {
			t.Fatal(err)
		}
		var ref []float32
		if err := npyio.Read(bytes.NewReader(b), &ref); err != nil {
			t.Fatal(err)
		}
		a, err := DecodeNPY(b, "le_f4_C.npy")
		if err != nil {
			t.Fatal(err)
		}
		for i := range ref {
			if ref[i] != a.Data[i] {
				t.Fatalf("element %d: npyio %v, ours %v", i, ref[i], a.Data[i])
			}
		}
	})
}

func TestNPYErrors(t *testing.T) {
	var good bytes.Buffer
	if err := npyio.Write(&good, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	if a, err := DecodeNPY(g, "good.npy"); err != nil || len(a.Data) != 4 || a.Data[3] != 4 {
		t.Fatalf("npyio-written file: %v %v", a, err)
	}
	hdrEnd := len(g) - 16
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"not npy", []byte("hello world, not numpy"), "magic"},
		{"truncated data", g[:len(g)-3], "is truncated"},
		{"trailing", append(append([]byte(nil), g...), 0, 0, 0, 0), "trailing bytes"},
		{"header past end", g[:hdrEnd-5], "runs past the end"},
		{"bad version", append([]byte("\x93NUMPY\x09\x00"), g[8:]...), "version 9"},
		{"unknown dtype", bytes.Replace(g, []byte("'<f4'"), []byte("'<c8'"), 1), "unsupported dtype"},
		{"bad order", bytes.Replace(g, []byte("False"), []byte("Maybe"), 1), "fortran_order"},
		{"no newline", bytes.ReplaceAll(g[:hdrEnd], []byte("\n"), []byte(" ")), "newline"},
		{"negative dim", bytes.Replace(g, []byte("(4,), } "), []byte("(-4,), }"), 1), "negative dimension"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeNPY(tc.b, "bad.npy")
			mustContain(t, err, "bad.npy", tc.want)
		})
	}
}

// TestEncodeNPYNumpyReads: numpy reads what EncodeNPY writes (float32 of rank 3, uint8 of
// rank 2) with the same shape and values; a shape the values do not fill is an error.
func TestEncodeNPYNumpyReads(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	f := make([]float32, 3*4*5)
	for i := range f {
		f[i] = float32(r.NormFloat64())
	}
	u := make([]uint8, 6*7)
	for i := range u {
		u[i] = uint8(r.IntN(256))
	}
	for name, c := range map[string]struct {
		v     any
		shape []int
	}{"f.npy": {f, []int{3, 4, 5}}, "u.npy": {u, []int{6, 7}}} {
		var b bytes.Buffer
		if err := EncodeNPY(&b, c.v, c.shape...); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := runPython(t, dir, `import numpy as np
f=np.load("f.npy"); u=np.load("u.npy")
print(f.shape, f.dtype, u.shape, u.dtype)
print(" ".join(repr(float(x)) for x in f.ravel()))
print(" ".join(str(int(x)) for x in u.ravel()))`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "(3, 4, 5) float32 (6, 7) uint8" {
		t.Fatalf("numpy read %q", lines)
	}
	for i, s := range strings.Fields(lines[1]) {
		if v, _ := strconv.ParseFloat(s, 64); float32(v) != f[i] {
			t.Fatalf("float %d: numpy %s, wrote %v", i, s, f[i])
		}
	}
	for i, s := range strings.Fields(lines[2]) {
		if v, _ := strconv.Atoi(s); uint8(v) != u[i] {
			t.Fatalf("uint8 %d: numpy %s, wrote %v", i, s, u[i])
		}
	}
	if err := EncodeNPY(io.Discard, f, 4, 4); err == nil {
		t.Error("a 4×4 shape for 60 values was accepted")
	}
}
