package dataset

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// enviWriterPy writes ENVI files with numpy for every supported type, interleave and byte
// order, each next to the expected cube (rows × columns × bands, float64) as <name>.f64.
const enviWriterPy = `
import numpy as np
rng = np.random.default_rng(7)
H, W, C = 5, 7, 5
codes = {"u1": 1, "i2": 2, "i4": 3, "f4": 4, "f8": 5, "u2": 12}
for dt, code in codes.items():
    for il in ("bsq", "bil", "bip"):
        for bo in (0, 1):
            name = "%s_%s_%d" % (dt, il, bo)
            if dt == "f4":
                cube = (rng.standard_normal((H, W, C)) * 100).astype(np.float32)
            elif dt == "f8":
                cube = rng.integers(-4000, 4000, size=(H, W, C)) / 8.0
            else:
                info = np.iinfo(dt)
                cube = rng.integers(max(info.min, -(1 << 24)), min(info.max, 1 << 24), size=(H, W, C), endpoint=True)
            order = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}[il]
            disk = np.ascontiguousarray(cube.transpose(order)).astype((">" if bo else "<") + dt)
            offset = 0 if bo == 0 else 37
            with open(name + ".img", "wb") as f:
                f.write(b"\xab" * offset)
                f.write(disk.tobytes())
            wl = ", ".join("%g" % (0.4 + 0.1 * b) for b in range(C))
            with open(name + ".hdr", "w") as f:
                f.write("ENVI\ndescription = {written by numpy\n  for the Go reader test}\n")
                f.write("SAMPLES = %d\nLines   = %d\nbands=%d\n" % (W, H, C))
                f.write("header offset = %d\ndata type = %d\ninterleave = %s\nbyte order = %d\n" % (offset, code, il.upper(), bo))
                f.write("; a comment line\nwavelength units = Micrometers\nwavelength = {\n %s\n}\n" % wl)
            cube.astype("<f8").tofile(name + ".f64")
`

func TestENVIReadAgainstNumpy(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	runPython(t, dir, enviWriterPy)
	hdrs, _ := filepath.Glob(filepath.Join(dir, "*.hdr"))
	if len(hdrs) != 36 {
		t.Fatalf("python wrote %d headers, want 36", len(hdrs))
	}
	for _, h := range hdrs {
		name := strings.TrimSuffix(filepath.Base(h), ".hdr")
		t.Run(name, func(t *testing.T) {
			want := readF64(t, filepath.Join(dir, name+".f64"))
			// Open by header for half the cases and by data file for the other half.
			path := h
			if strings.Contains(name, "bil") {
				path = filepath.Join(dir, name+".img")
			}
			c, err := ReadENVI(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.H != 5 || c.W != 7 || c.C != 5 {
				t.Fatalf("shape %d×%d×%d, want 5×7×5", c.H, c.W, c.C)
			}
			// Every value is exact in float32 (the float32 case was widened from float32).
			equalExact(t, name, c.Data, want)
			for b, w := range c.Wavelengths {
				if math.Abs(float64(w)-(400+100*float64(b))) > 1e-3 {
					t.Fatalf("wavelength %d = %v nm, want %v (micrometres converted)", b, w, 400+100*b)
				}
			}
		})
	}
}

func TestENVIHeaderParsing(t *testing.T) {
	base := "ENVI\nsamples = 3\nlines = 2\nbands = 2\ndata type = 4\n"
	tests := []struct {
		name    string
		text    string
		check   func(t *testing.T, h *ENVIHeader)
		wantErr []string
	}{
		{name: "defaults", text: base, check: func(t *testing.T, h *ENVIHeader) {
			if h.Interleave != "bsq" || h.ByteOrder != 0 || h.HeaderOffset != 0 || h.Wavelengths != nil {
				t.Fatalf("defaults wrong: %+v", h)
			}
		}},
		{name: "case-insensitive keys and CRLF", text: "ENVI\r\nSamples = 3\r\nLINES = 2\r\nBands = 2\r\nData Type = 12\r\nInterleave = BIP\r\nByte  Order = 1\r\n", check: func(t *testing.T, h *ENVIHeader) {
			if h.Samples != 3 || h.Lines != 2 || h.DataType != ENVIUint16 || h.Interleave != "bip" || h.ByteOrder != 1 {
				t.Fatalf("got %+v", h)
			}
		}},
		{name: "multi-line braces, nm", text: base + "wavelength units = Nanometers\nwavelength = {\n 450.5,\n 500.25 }\nband names = {a,\n b}\n", check: func(t *testing.T, h *ENVIHeader) {
			if h.Wavelengths[0] != 450.5 || h.Wavelengths[1] != 500.25 || h.BandNames[1] != "b" {
				t.Fatalf("got %v %v", h.Wavelengths, h.BandNames)
			}
		}},
		{name: "µm", text: base + "wavelength units = µm\nwavelength = {0.5, 0.91}\n", check: func(t *testing.T, h *ENVIHeader) {
			if math.Abs(float64(h.Wavelengths[0])-500) > 1e-3 || math.Abs(float64(h.Wavelengths[1])-910) > 1e-3 {
				t.Fatalf("got %v", h.Wavelengths)
			}
		}},
		{name: "no units, micrometre values", text: base + "wavelength = {0.43, 2.5}\n", check: func(t *testing.T, h *ENVIHeader) {
			if math.Abs(float64(h.Wavelengths[1])-2500) > 1e-3 {
				t.Fatalf("got %v", h.Wavelengths)
			}
		}},
		{name: "no units, nm values", text: base + "wavelength = {430, 910}\n", check: func(t *testing.T, h *ENVIHeader) {
			if h.Wavelengths[1] != 910 {
				t.Fatalf("got %v", h.Wavelengths)
			}
		}},
		{name: "header offset", text: base + "header offset = 128\n", check: func(t *testing.T, h *ENVIHeader) {
			if h.HeaderOffset != 128 {
				t.Fatalf("got %d", h.HeaderOffset)
			}
		}},
		{name: "not ENVI", text: "samples = 3\n", wantErr: []string{"first line must be \"ENVI\""}},
		{name: "missing bands", text: "ENVI\nsamples = 3\nlines = 2\ndata type = 4\n", wantErr: []string{"missing required key \"bands\""}},
		{name: "bad integer", text: "ENVI\nsamples = three\nlines = 2\nbands = 1\ndata type = 4\n", wantErr: []string{"\"samples\"", "not an integer"}},
		{name: "zero lines", text: "ENVI\nsamples = 3\nlines = 0\nbands = 1\ndata type = 4\n", wantErr: []string{"lines = 0"}},
		{name: "unknown dtype", text: "ENVI\nsamples = 3\nlines = 2\nbands = 1\ndata type = 7\n", wantErr: []string{"data type 7", "not supported"}},
		{name: "complex dtype", text: "ENVI\nsamples = 3\nlines = 2\nbands = 1\ndata type = 6\n", wantErr: []string{"complex64"}},
		{name: "bad interleave", text: base + "interleave = bxx\n", wantErr: []string{"interleave", "bxx"}},
		{name: "bad byte order", text: base + "byte order = 2\n", wantErr: []string{"byte order = 2"}},
		{name: "unclosed brace", text: base + "wavelength = {1, 2\n", wantErr: []string{"never closes"}},
		{name: "wavelength count", text: base + "wavelength = {1, 2, 3}\n", wantErr: []string{"3 values but bands = 2"}},
		{name: "wavelength units", text: base + "wavelength units = Wavenumber\nwavelength = {1, 2}\n", wantErr: []string{"Wavenumber"}},
		{name: "line without equals", text: base + "garbage line\n", wantErr: []string{"line 6", "key = value"}},
		{name: "negative offset", text: base + "header offset = -1\n", wantErr: []string{"header offset = -1"}},
		{name: "too large", text: "ENVI\nsamples = 100000000\nlines = 100000000\nbands = 1000\ndata type = 4\n", wantErr: []string{"too large"}},
		{name: "binary", text: "ENVI\x00\x01", wantErr: []string{"NUL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseENVIHeader([]byte(tc.text), "test.hdr")
			if tc.wantErr != nil {
				mustContain(t, err, append(tc.wantErr, "test.hdr")...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, h)
		})
	}
}

func TestENVIWriteRoundTripAndNumpyReads(t *testing.T) {
	const H, W, C = 4, 6, 3
	c := &Cube{H: H, W: W, C: C, Data: make([]float32, H*W*C), Wavelengths: []float32{450, 550.5, 650}}
	for i := range c.Data {
		c.Data[i] = float32((i*7919)%1000 + 1) // integers: exact in float32 and in uint16
	}
	dir := t.TempDir()
	for _, dt := range []ENVIDataType{ENVIFloat32, ENVIUint16} {
		for _, il := range []string{"bsq", "bil", "bip"} {
			for _, big := range []bool{false, true} {
				name := fmt.Sprintf("%s_%s_%v", dt, il, big)
				base := filepath.Join(dir, name)
				if err := WriteENVI(base, c, ENVIWriteOptions{DataType: dt, Interleave: il, BigEndian: big}); err != nil {
					t.Fatal(err)
				}
				got, err := ReadENVI(base + ".hdr")
				if err != nil {
					t.Fatal(err)
				}
				for i := range c.Data {
					if got.Data[i] != c.Data[i] {
						t.Fatalf("%s: element %d = %v, want %v", name, i, got.Data[i], c.Data[i])
					}
				}
				if got.Wavelengths[1] != 550.5 {
					t.Fatalf("%s: wavelengths %v", name, got.Wavelengths)
				}
			}
		}
	}
	// numpy reads the BSQ float32 file independently of the Go reader.
	needNumpy(t)
	out := runPython(t, dir, `
import numpy as np
a = np.fromfile("float32_bsq_false.img", dtype="<f4").reshape(3, 4, 6).transpose(1, 2, 0)
b = np.fromfile("uint16_bip_true.img", dtype=">u2").reshape(4, 6, 3)
print(repr(float(a.astype(np.float64).sum())), repr(float(a[2, 5, 1])), bool((a == b).all()))
`)
	var sum, v float64
	var same bool
	if _, err := fmt.Sscan(out, &sum, &v, &same); err != nil {
		t.Fatalf("parsing %q: %v", out, err)
	}
	var want float64
	for _, x := range c.Data {
		want += float64(x)
	}
	if sum != want || v != float64(c.Data[(2*W+5)*C+1]) || !same {
		t.Fatalf("numpy read sum %v, a[2,5,1] %v, same %v; want %v, %v, true", sum, v, same, want, c.Data[(2*W+5)*C+1])
	}
}

func TestENVIWriteRejects(t *testing.T) {
	dir := t.TempDir()
	c := &Cube{H: 1, W: 2, C: 1, Data: []float32{1, 70000}}
	mustContain(t, WriteENVI(filepath.Join(dir, "x"), c, ENVIWriteOptions{DataType: ENVIUint16}), "does not fit uint16", "column 1")
	mustContain(t, WriteENVI(filepath.Join(dir, "y"), &Cube{H: 2, W: 2, C: 1, Data: []float32{1}}, ENVIWriteOptions{}), "holds 1 values")
	mustContain(t, WriteENVI(filepath.Join(dir, "z"), c, ENVIWriteOptions{DataType: ENVIInt16}), "not supported for writing")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed writes left files behind: %v", ents)
	}
}

func TestENVIDataErrors(t *testing.T) {
	h, err := ParseENVIHeader([]byte("ENVI\nsamples = 4\nlines = 3\nbands = 2\ndata type = 4\nheader offset = 8\n"), "x.hdr")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size int
		want string
	}{{8 + 4*3*2*4 - 1, "is truncated"}, {8 + 4*3*2*4 + 4, "longer than the header implies"}, {3, "is truncated"}} {
		_, err := DecodeENVI(h, bytes.NewReader(make([]byte, tc.size)), int64(tc.size), "x.img")
		mustContain(t, err, tc.want, "x.img", "header offset 8")
	}
}
