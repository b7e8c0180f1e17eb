package dataset

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// withCubeLimit sets MaxCubeBytes for one test.
func withCubeLimit(t *testing.T, n int64) {
	t.Helper()
	old := MaxCubeBytes
	MaxCubeBytes = n
	t.Cleanup(func() { MaxCubeBytes = old })
}

// allocDuring returns the bytes the Go heap allocated while fn ran (TotalAlloc counts every
// allocation, freed or not, so a transient huge buffer shows).
func allocDuring(fn func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// matHeader is the 128-byte MAT v5 header (little-endian).
func matHeader() []byte {
	h := bytes.Repeat([]byte(" "), 128)
	copy(h, "MATLAB 5.0 MAT-file, written by the hostile-input tests")
	copy(h[116:124], make([]byte, 8))
	binary.LittleEndian.PutUint16(h[124:], 0x0100)
	copy(h[126:], "IM")
	return h
}

// matMatrixPrefix is a miMATRIX element (tag included) of a uint8 array with dims and name,
// up to and including the data sub-element's tag; dataBytes of data must follow (then padding).
func matMatrixPrefix(dims []int32, name string, dataBytes uint32) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	w32 := func(v uint32) { binary.Write(&b, le, v) }
	pad := func(n int) int { return (n + 7) &^ 7 }
	total := 16 + 8 + pad(4*len(dims)) + 8 + pad(len(name)) + 8 + pad(int(dataBytes))
	w32(miMATRIX)
	w32(uint32(total))
	w32(miUINT32)
	w32(8)
	w32(9) // class uint8
	w32(0)
	w32(miINT32)
	w32(uint32(4 * len(dims)))
	for _, d := range dims {
		w32(uint32(d))
	}
	b.Write(make([]byte, pad(4*len(dims))-4*len(dims)))
	w32(miINT8)
	w32(uint32(len(name)))
	b.WriteString(name)
	b.Write(make([]byte, pad(len(name))-len(name)))
	w32(miUINT8)
	w32(dataBytes)
	return b.Bytes()
}

// zlibBombMAT writes a MAT file whose one compressed element inflates to a uint8 array of
// rows×cols bytes (all zeros, so it compresses about 1000:1).
func zlibBombMAT(t *testing.T, path string, rows, cols int32) {
	t.Helper()
	n := uint32(rows) * uint32(cols)
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	zw.Write(matMatrixPrefix([]int32{rows, cols}, "data", n))
	zeros := make([]byte, 1<<20)
	for left := int(n) + (8-int(n)%8)%8; left > 0; left -= len(zeros) {
		zw.Write(zeros[:min(left, len(zeros))])
	}
	zw.Close()
	var b bytes.Buffer
	b.Write(matHeader())
	binary.Write(&b, binary.LittleEndian, uint32(miCOMPRESSED))
	binary.Write(&b, binary.LittleEndian, uint32(z.Len()))
	b.Write(z.Bytes())
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMATZlibBombRefusedBeforeInflating: a 64 MiB array compressed to ~64 KiB, read with a
// 16 MiB cube limit, is refused from its declared dimensions, without inflating it.
func TestMATZlibBombRefusedBeforeInflating(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bomb.mat")
	zlibBombMAT(t, path, 8192, 8192)
	st, _ := os.Stat(path)
	if st.Size() > 1<<20 {
		t.Fatalf("bomb is %d bytes; expected it to compress far below 1 MiB", st.Size())
	}
	withCubeLimit(t, 16<<20)
	var err error
	alloc := allocDuring(func() { _, err = ReadMAT(path) })
	mustContain(t, err, path, "cube memory limit", "16 MiB", "256 MiB", EnvMaxCubeBytes)
	if alloc > 4<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes; want the check before inflating (< 4 MiB)", alloc)
	}
	// Under the limit the same file reads, and every value is 0.
	withCubeLimit(t, 1<<30)
	m, err := ReadMAT(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.Var("data")
	if err != nil || len(a.Data) != 8192*8192 || a.Data[rand.IntN(len(a.Data))] != 0 {
		t.Fatalf("reading the array under the limit: %v", err)
	}
}

// TestMATCompressedDeclaredSizeBound: a compressed element whose tag declares far more bytes
// than its dimensions need is refused before reading the stream.
func TestMATCompressedDeclaredSizeBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "liar.mat")
	inner := matMatrixPrefix([]int32{4, 4}, "data", 16)
	binary.LittleEndian.PutUint32(inner[4:], 3<<30) // the element claims 3 GiB
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(inner)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		zw.Write(zeros)
	}
	zw.Close()
	var b bytes.Buffer
	b.Write(matHeader())
	binary.Write(&b, binary.LittleEndian, uint32(miCOMPRESSED))
	binary.Write(&b, binary.LittleEndian, uint32(z.Len()))
	b.Write(z.Bytes())
	os.WriteFile(path, b.Bytes(), 0o644)
	var err error
	alloc := allocDuring(func() { _, err = ReadMAT(path) })
	mustContain(t, err, path, "declares", "4×4")
	if alloc > 4<<20 {
		t.Fatalf("refusing the element allocated %d bytes; want < 4 MiB", alloc)
	}
}

// npyHeaderBytes is a version-1 .npy header for shape and dtype descr.
func npyHeaderBytes(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, s)
	for (10+len(dict)+1)%64 != 0 {
		dict += " "
	}
	dict += "\n"
	h := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(h[8:], uint16(len(dict)))
	return append(h, dict...)
}

// npzBomb writes an .npz whose member "data" is a float32 array of shape, all zeros, deflated.
func npzBomb(t *testing.T, path string, shape []int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	w, _ := zw.Create("data.npy")
	w.Write(npyHeaderBytes("<f4", shape))
	n := 4
	for _, d := range shape {
		n *= d
	}
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zeros) {
		w.Write(zeros[:min(left, len(zeros))])
	}
	zw.Close()
	f.Close()
}

// TestNPZBombRefusedBeforeInflating: a 128 MiB member compressed to ~128 KiB is refused from
// its header under a 16 MiB limit, and read under a larger one.
func TestNPZBombRefusedBeforeInflating(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bomb.npz")
	npzBomb(t, path, []int{2048, 2048, 8})
	withCubeLimit(t, 16<<20)
	var err error
	alloc := allocDuring(func() { _, err = ReadNPZ(path) })
	mustContain(t, err, path, "data", "cube memory limit", "128 MiB", "16 MiB")
	if alloc > 4<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes; want < 4 MiB", alloc)
	}
	withCubeLimit(t, 1<<30)
	all, err := ReadNPZ(path)
	if err != nil {
		t.Fatal(err)
	}
	if a := all["data"]; a == nil || len(a.Data) != 2048*2048*8 {
		t.Fatalf("npz under the limit: %v", all)
	}
}

// TestNPZTruncatedMemberBoundedMemory: a member whose header declares 1 GiB but whose stream
// holds 32 MiB fails as truncated, allocating only what arrived.
func TestNPZTruncatedMemberBoundedMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short.npz")
	f, _ := os.Create(path)
	zw := zip.NewWriter(f)
	w, _ := zw.Create("data.npy")
	w.Write(npyHeaderBytes("<f4", []int{1 << 28}))
	w.Write(make([]byte, 32<<20))
	zw.Close()
	f.Close()
	withCubeLimit(t, 2<<30)
	var err error
	allocDuring(func() { _, err = ReadNPZ(path) })
	mustContain(t, err, path, "data", "truncated")
}

// TestSparseENVIRefusedByDefaultLimit: a 97 GB sparse ENVI data file (a header that matches
// it) is refused by the default limit before anything is allocated.
func TestSparseENVIRefusedByDefaultLimit(t *testing.T) {
	dir := t.TempDir()
	lines, samples, bands := 20000, 20000, 61 // × 4 bytes = 97.6 GB
	hdr := fmt.Sprintf("ENVI\nsamples = %d\nlines = %d\nbands = %d\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n", samples, lines, bands)
	os.WriteFile(filepath.Join(dir, "big.hdr"), []byte(hdr), 0o644)
	f, err := os.Create(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(lines) * int64(samples) * int64(bands) * 4); err != nil {
		t.Skipf("this file system cannot hold a sparse 97 GB file: %v", err)
	}
	f.Close()
	withCubeLimit(t, 0) // the default
	if d := DefaultMaxCubeBytes(); d > 16<<30 || d < 1<<20 {
		t.Fatalf("default limit %d outside 1 MiB..16 GiB", d)
	}
	var cerr error
	alloc := allocDuring(func() { _, cerr = ReadENVI(filepath.Join(dir, "big.hdr")) })
	mustContain(t, cerr, "big.img", "cube memory limit", "90.9 GiB")
	if alloc > 1<<20 {
		t.Fatalf("refusing the sparse file allocated %d bytes", alloc)
	}
	// A dataset listing it fails at Open, before masks of that size are made.
	os.WriteFile(filepath.Join(dir, "dataset.yaml"), []byte("name: big\nframes:\n  - {id: 0, file: big.hdr}\nsplits: {train: [0]}\n"), 0o644)
	alloc = allocDuring(func() { _, cerr = Open(dir) })
	mustContain(t, cerr, "frame 0", "big.img", "cube memory limit")
	if alloc > 1<<20 {
		t.Fatalf("refusing the dataset allocated %d bytes", alloc)
	}
}

// TestSparseNPYRefused: a sparse .npy declaring 16 GiB is refused before allocation.
func TestSparseNPYRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.npy")
	h := npyHeaderBytes("<f4", []int{65536, 65536})
	os.WriteFile(path, h, 0o644)
	if err := os.Truncate(path, int64(len(h))+65536*65536*4); err != nil {
		t.Skip(err)
	}
	withCubeLimit(t, 64<<20)
	var err error
	alloc := allocDuring(func() { _, err = ReadNPY(path) })
	mustContain(t, err, path, "cube memory limit", "16 GiB", "64 MiB")
	if alloc > 1<<20 {
		t.Fatalf("refusing the sparse file allocated %d bytes", alloc)
	}
}

// TestPNGMaskBombRefused: a PNG declaring 30000×30000 pixels is refused from its header.
func TestPNGMaskBombRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mask.png")
	img := image.NewGray(image.Rect(0, 0, 3000, 3000))
	var b bytes.Buffer
	png.Encode(&b, img)
	os.WriteFile(path, b.Bytes(), 0o644)
	withCubeLimit(t, 8<<20)
	var err error
	alloc := allocDuring(func() { _, err = ReadPNGMask(path) })
	mustContain(t, err, path, "3000×3000", "cube memory limit")
	if alloc > 2<<20 {
		t.Fatalf("refusing the mask allocated %d bytes", alloc)
	}
}

// TestNonRegularFilesRefused: every reader refuses a FIFO (which would block the open forever)
// and a symbolic link to /dev/zero (which never ends) with an error naming the path.
func TestNonRegularFilesRefused(t *testing.T) {
	dir := t.TempDir()
	readers := map[string]func(string) error{
		"mat":  func(p string) error { _, err := ReadMAT(p); return err },
		"npy":  func(p string) error { _, err := ReadNPY(p); return err },
		"npz":  func(p string) error { _, err := ReadNPZ(p); return err },
		"json": func(p string) error { _, err := ReadCOCO(p); return err },
		"png":  func(p string) error { _, err := ReadPNGMask(p); return err },
		"hdr":  func(p string) error { _, err := ReadENVIHeader(p); return err },
		"img": func(p string) error {
			os.WriteFile(strings.TrimSuffix(p, ".img")+".hdr", []byte("ENVI\nsamples = 2\nlines = 2\nbands = 1\ndata type = 4\ninterleave = bsq\n"), 0o644)
			_, err := ReadENVI(p)
			return err
		},
		"yaml": func(p string) error { _, err := ReadManifest(filepath.Dir(p)); return err },
	}
	for ext, read := range readers {
		for _, kind := range []string{"fifo", "devzero"} {
			t.Run(ext+"/"+kind, func(t *testing.T) {
				sub := filepath.Join(dir, ext+kind)
				os.Mkdir(sub, 0o755)
				p := filepath.Join(sub, "x."+ext)
				if ext == "yaml" {
					p = filepath.Join(sub, ManifestName)
				}
				if kind == "fifo" {
					if err := syscall.Mkfifo(p, 0o644); err != nil {
						t.Skip(err)
					}
					// Unblock a reader that opens the FIFO (the defect): a writer that
					// connects, writes a little and closes. If the reader never opens it,
					// the cleanup's non-blocking open releases the writer.
					done := make(chan struct{})
					go func() {
						defer close(done)
						if w, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
							w.Write([]byte("garbage"))
							w.Close()
						}
					}()
					defer func() {
						if r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
							<-done
							r.Close()
						}
					}()
				} else if err := os.Symlink("/dev/zero", p); err != nil {
					t.Skip(err)
				}
				err := read(p)
				want := "a named pipe (FIFO), not a regular file"
				if kind == "devzero" {
					want = "a character device, not a regular file"
				}
				if ext == "img" && err != nil && strings.Contains(err.Error(), "no data file") {
					return // ENVIPaths looks for a regular data file next to the header
				}
				mustContain(t, err, p, want)
			})
		}
	}
}

// TestParseByteSize checks the accepted forms of $SPECTRACLIP_MAX_CUBE_BYTES.
func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1073741824": 1 << 30, "512MiB": 512 << 20, "8G": 8 << 30, "1.5 GiB": 3 << 29, "64k": 64 << 10, "100B": 100} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "lots", "1e30", "12XB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

var _ = io.EOF

// TestSynthRefusesFramesOverCubeLimit: a synthetic frame larger than the cube limit (e.g.
// synth --height 100000 --width 100000) is refused before anything is allocated or written.
func TestSynthRefusesFramesOverCubeLimit(t *testing.T) {
	withCubeLimit(t, 64<<20)
	cfg := DefaultSynthConfig()
	cfg.Height, cfg.Width = 100000, 100000
	out := filepath.Join(t.TempDir(), "synth")
	var err error
	alloc := allocDuring(func() { err = GenerateSynthetic(out, cfg) })
	mustContain(t, err, "100000×100000×61", "cube memory limit")
	if alloc > 1<<20 {
		t.Fatalf("refusing allocated %d bytes", alloc)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatalf("output directory exists after the refusal: %v", serr)
	}
	cfg.Height, cfg.Width = 1<<40, 1<<40 // the product overflows int64
	mustContain(t, GenerateSynthetic(out, cfg), "cube memory limit")
}
