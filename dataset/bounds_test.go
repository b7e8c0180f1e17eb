package dataset

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// boundsVal is the value of element (r, c, b) of the test cubes below: distinct and exact in
// float32, so a misplaced element shows.
func boundsVal(r, c, b int) float64 { return float64(r*10000+c*100+b) + 0.5 }

// colMajorF64 encodes an h×w×c cube of boundsVal in column-major (first index fastest) float64.
func colMajorF64(h, w, c int) []byte {
	out := make([]byte, 0, 8*h*w*c)
	for b := 0; b < c; b++ {
		for col := 0; col < w; col++ {
			for r := 0; r < h; r++ {
				out = binary.LittleEndian.AppendUint64(out, math.Float64bits(boundsVal(r, col, b)))
			}
		}
	}
	return out
}

// matF64Element is a miMATRIX element (tag included) of a double h×w×c array called name.
func matF64Element(name string, h, w, c int) []byte {
	data := colMajorF64(h, w, c)
	var p bytes.Buffer
	le := binary.LittleEndian
	sub := func(typ uint32, payload []byte) {
		binary.Write(&p, le, typ)
		binary.Write(&p, le, uint32(len(payload)))
		p.Write(payload)
		p.Write(make([]byte, (len(payload)+7)&^7-len(payload)))
	}
	sub(miUINT32, []byte{6, 0, 0, 0, 0, 0, 0, 0}) // class double
	dims := make([]byte, 12)
	le.PutUint32(dims, uint32(h))
	le.PutUint32(dims[4:], uint32(w))
	le.PutUint32(dims[8:], uint32(c))
	sub(miINT32, dims)
	sub(miINT8, []byte(name))
	sub(miDOUBLE, data)
	var e bytes.Buffer
	binary.Write(&e, le, uint32(miMATRIX))
	binary.Write(&e, le, uint32(p.Len()))
	e.Write(p.Bytes())
	return e.Bytes()
}

func checkBoundsCube(t *testing.T, what string, a *Array, h, w, c int) {
	t.Helper()
	if fmt.Sprint(a.Shape) != fmt.Sprint([]int{h, w, c}) || len(a.Data) != h*w*c {
		t.Fatalf("%s: shape %v with %d values, want [%d %d %d]", what, a.Shape, len(a.Data), h, w, c)
	}
	for r := 0; r < h; r++ {
		for col := 0; col < w; col++ {
			for b := 0; b < c; b++ {
				if got, want := a.Data[(r*w+col)*c+b], float32(boundsVal(r, col, b)); got != want {
					t.Fatalf("%s: element (%d,%d,%d) = %v, want %v", what, r, col, b, got, want)
				}
			}
		}
	}
}

// TestReadersDecodeIntoFinalBuffer: a float64 cube stored column-major (MAT v5 plain and
// zlib-compressed, Fortran-ordered .npy and a deflated .npz member) is converted to float32
// once, into the array the caller gets: the reader allocates little more than that array
// (before: the inflated float64 bytes, the float32 array and a reordered copy, 3-4× it).
func TestReadersDecodeIntoFinalBuffer(t *testing.T) {
	const h, w, c = 128, 100, 80
	f32 := uint64(4 * h * w * c)
	dir := t.TempDir()
	el := matF64Element("data", h, w, c)
	plain := filepath.Join(dir, "plain.mat")
	os.WriteFile(plain, append(matHeader(), el...), 0o644)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(el)
	zw.Close()
	comp := append(matHeader(), binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, miCOMPRESSED), uint32(z.Len()))...)
	comp = append(comp, z.Bytes()...)
	compressed := filepath.Join(dir, "compressed.mat")
	os.WriteFile(compressed, comp, 0o644)

	hdr := fmt.Sprintf("{'descr': '<f8', 'fortran_order': True, 'shape': (%d, %d, %d), }", h, w, c)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	npy := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)+1), byte((len(hdr)+1)>>8))
	npy = append(append(append(npy, hdr...), '\n'), colMajorF64(h, w, c)...)
	npyPath := filepath.Join(dir, "fortran.npy")
	os.WriteFile(npyPath, npy, 0o644)
	var zb bytes.Buffer
	zipw := zip.NewWriter(&zb)
	m, _ := zipw.CreateHeader(&zip.FileHeader{Name: "data.npy", Method: zip.Deflate})
	m.Write(npy)
	zipw.Close()
	npzPath := filepath.Join(dir, "fortran.npz")
	os.WriteFile(npzPath, zb.Bytes(), 0o644)

	for _, tc := range []struct {
		name string
		read func() (*Array, error)
	}{
		{"mat plain", func() (*Array, error) { return matVar(plain) }},
		{"mat compressed", func() (*Array, error) { return matVar(compressed) }},
		{"npy fortran", func() (*Array, error) { return ReadNPY(npyPath) }},
		{"npz fortran deflated", func() (*Array, error) {
			m, err := ReadNPZ(npzPath)
			if err != nil {
				return nil, err
			}
			return m["data"], nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a *Array
			var err error
			alloc := allocDuring(func() { a, err = tc.read() })
			if err != nil {
				t.Fatal(err)
			}
			checkBoundsCube(t, tc.name, a, h, w, c)
			// The array itself, plus at most 2 MiB of buffers (zip and zlib windows, a decode
			// block).
			if alloc > f32+2<<20 {
				t.Fatalf("reading allocated %d bytes, %.2f× the %d-byte float32 array; want at most that plus 2 MiB", alloc, float64(alloc)/float64(f32), f32)
			}
		})
	}
}

func matVar(path string) (*Array, error) {
	m, err := ReadMAT(path)
	if err != nil {
		return nil, err
	}
	return m.Var("data")
}

// writeNPYF32 writes a C-order float32 .npy of shape with every value v.
func writeNPYF32(t *testing.T, path string, v float32, shape ...int) {
	t.Helper()
	dims := ""
	n := 1
	for _, d := range shape {
		dims += fmt.Sprint(d) + ", "
		n *= d
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims[:len(dims)-2])
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)+1), byte((len(hdr)+1)>>8))
	b = append(append(b, hdr...), '\n')
	for i := 0; i < n; i++ {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEmptyCubeRefused: a cube with no rows, columns or bands (a 0×32×61 .npy) is refused when
// it is loaded, naming the file and the empty axis (before: infer got as far as LibTorch's
// "aminmax: Expected reduction dim 1 to have non-zero size").
func TestEmptyCubeRefused(t *testing.T) {
	dir := t.TempDir()
	for _, shape := range [][]int{{0, 32, 61}, {32, 0, 61}, {32, 32, 0}} {
		p := filepath.Join(dir, fmt.Sprintf("empty_%d_%d_%d.npy", shape[0], shape[1], shape[2]))
		writeNPYF32(t, p, 0, shape...)
		_, _, err := LoadScene(p, SceneOptions{})
		mustContain(t, err, p, "empty", fmt.Sprint(shape[0]), "at least one row, column and band")
	}
}

// TestWholeSceneBatchNotCopied: a one-frame batch of a scene held whole hands the scene's
// values over (before: the frame was copied out of the scene, then into a batch buffer, two
// cube-sized allocations per batch and per pass), and Release does not recycle them.
func TestWholeSceneBatchNotCopied(t *testing.T) {
	const h, w, c = 256, 256, 64
	cube := &Cube{H: h, W: w, C: c, Data: make([]float32, h*w*c)}
	for i := range cube.Data {
		cube.Data[i] = float32(i % 977)
	}
	gt := &LabelImage{H: h, W: w, IDs: make([]int32, h*w)}
	gt.IDs[100] = 1
	ds, err := WholeScene("scene.npy", cube, gt, NaNError)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ds.NewLoader("train", LoaderOptions{BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 2; pass++ {
		var b *Batch
		alloc := allocDuring(func() {
			it := l.Epoch(context.Background(), 0)
			defer it.Close()
			if b, err = it.Next(); err != nil {
				t.Fatal(err)
			}
		})
		if len(b.Cube) != h*w*c || b.Cube[12345] != cube.Data[12345] || !b.Mask[100] || b.Mask[101] {
			t.Fatalf("pass %d: the batch does not hold the scene", pass)
		}
		if alloc > uint64(4*h*w*c/4) {
			t.Fatalf("pass %d: building the batch allocated %d bytes; the cube is %d (want no copy of it)", pass, alloc, 4*h*w*c)
		}
		l.Release(b)
		if cube.Data[12345] != float32(12345%977) {
			t.Fatal("Release changed the scene")
		}
	}
}

// TestSynthFrameBound: a synthetic set of more than MaxSynthFrames frames is refused before
// anything is generated (before: synth --frames 100000000 died in the Go runtime, out of
// memory); the bound itself is accepted.
func TestSynthFrameBound(t *testing.T) {
	cfg := DefaultSynthConfig()
	cfg.Frames = 10001
	err := cfg.validate()
	mustContain(t, err, "frames", "10001", "10000")
	cfg.Frames = 10000
	if err := cfg.validate(); err != nil {
		t.Fatalf("10000 frames: %v", err)
	}
}
