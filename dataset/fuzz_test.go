package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"codeberg.org/sbinet/npyio"
)

// The fuzz targets run their seed corpus as ordinary tests; `go test -fuzz FuzzX` explores
// further. Every parser must return an error for bad input, never panic or allocate without
// bound.

const fuzzHeader = "ENVI\ndescription = {x}\nsamples = 3\nlines = 2\nbands = 2\nheader offset = 4\ndata type = 12\ninterleave = bil\nbyte order = 1\nwavelength units = um\nwavelength = {0.5,\n 0.6}\n"

func FuzzENVIHeader(f *testing.F) {
	f.Add([]byte(fuzzHeader))
	f.Add([]byte("ENVI\nsamples=1\nlines=1\nbands=1\ndata type=4\n"))
	f.Add([]byte("ENVI\nwavelength = {\n"))
	f.Add([]byte("ENVI\r\nSAMPLES = 9999999999999\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseENVIHeader(b, "fuzz.hdr")
		if err != nil {
			return
		}
		if h.Samples <= 0 || h.Lines <= 0 || h.Bands <= 0 || h.DataType.Size() == 0 {
			t.Fatalf("accepted invalid header %+v", h)
		}
		if h.Wavelengths != nil && len(h.Wavelengths) != h.Bands {
			t.Fatalf("%d wavelengths for %d bands", len(h.Wavelengths), h.Bands)
		}
	})
}

func FuzzENVIData(f *testing.F) {
	f.Add([]byte(fuzzHeader), make([]byte, 4+3*2*2*2))
	f.Add([]byte("ENVI\nsamples=2\nlines=2\nbands=3\ndata type=4\ninterleave=bsq\n"), bytes.Repeat([]byte{0, 0, 0x80, 0x3f}, 12))
	f.Add([]byte("ENVI\nsamples=2\nlines=1\nbands=1\ndata type=5\n"), []byte("12345678abcdefgh"))
	f.Fuzz(func(t *testing.T, hdr, data []byte) {
		h, err := ParseENVIHeader(hdr, "fuzz.hdr")
		if err != nil {
			return
		}
		c, err := DecodeENVI(h, bytes.NewReader(data), int64(len(data)), "fuzz.img")
		if err != nil {
			return
		}
		if len(c.Data) != h.Lines*h.Samples*h.Bands {
			t.Fatalf("decoded %d values for %d×%d×%d", len(c.Data), h.Lines, h.Samples, h.Bands)
		}
	})
}

func FuzzMATv5(f *testing.F) {
	files, _ := filepath.Glob("testdata/mat/*.mat")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(make([]byte, 128))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMAT(b, "fuzz.mat")
		if err != nil {
			return
		}
		for _, v := range m.Variables {
			if v.Len() != len(v.Data) {
				t.Fatalf("variable %q: shape %v but %d values", v.Name, v.Shape, len(v.Data))
			}
		}
	})
}

func FuzzCOCO(f *testing.F) {
	f.Add([]byte(`{"images":[{"id":0,"width":5,"height":4}],"categories":[{"id":3,"name":"Stone"}],
		"annotations":[{"id":1,"image_id":0,"category_id":3,"segmentation":[[0.5,0.5,4,0.5,4,3,0.5,3]]},
		{"id":2,"image_id":0,"category_id":3,"segmentation":{"size":[4,5],"counts":"53<1"}},
		{"id":3,"image_id":0,"category_id":3,"mask":{"size":[4,5],"counts":[3,4,13]}}]}`))
	f.Add([]byte(`{"images":[{"id":7}],"annotations":[],"categories":[]}`))
	f.Add([]byte(`{"images":[{"id":1,"width":3,"height":3}],"categories":[{"id":1}],"annotations":[{"id":1,"image_id":1,"category_id":1,"segmentation":[[1e308,-1e308,0,0,5,5]]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCOCO(b, "fuzz.json")
		if err != nil {
			return
		}
		for _, im := range c.Images {
			h, w := im.Height, im.Width
			if h == 0 && w == 0 {
				h, w = 8, 8
			}
			if h > 64 || w > 64 {
				continue
			}
			m, err := c.Rasterize(im.ID, h, w)
			if err == nil && len(m) != h*w {
				t.Fatalf("mask of %d values for %d×%d", len(m), h, w)
			}
		}
	})
}

func FuzzRLEString(f *testing.F) {
	f.Add("0g05b08J4M2N2NA^O1`0OCO=0E090H080IO68DH;>@C>a0_O")
	f.Add("P1")
	f.Add("000@")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeRLEString(s)
		if err != nil {
			return
		}
		// Decoding is canonical up to redundant groups, so decode(encode(x)) must be x.
		c2, err := DecodeRLEString(EncodeRLEString(c))
		if err != nil || len(c2) != len(c) {
			t.Fatalf("re-encoding %v failed: %v %v", c, c2, err)
		}
		for i := range c {
			if c[i] != c2[i] {
				t.Fatalf("re-encoding changed %v to %v", c, c2)
			}
		}
	})
}

func FuzzNPY(f *testing.F) {
	for _, v := range []any{[]float32{1, 2, 3}, []uint16{7, 8}, []float64{}, []bool{true, false}} {
		var buf bytes.Buffer
		if err := npyio.Write(&buf, v); err == nil {
			f.Add(buf.Bytes())
		}
	}
	f.Add([]byte("\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeNPY(b, "fuzz.npy")
		if err != nil {
			return
		}
		if a.Len() != len(a.Data) {
			t.Fatalf("shape %v but %d values", a.Shape, len(a.Data))
		}
	})
}
