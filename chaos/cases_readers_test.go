package chaos

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
)

// Generated inputs are small cubes of random reflectance: rows × columns × bands.
const cubeH, cubeW, cubeC = 12, 10, 6

var rng = rand.New(rand.NewPCG(16, 5))

func randF32(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 0.05 + 0.9*rng.Float32()
	}
	return v
}

func f32le(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// enviHeader is a valid header for lines × samples × bands float32 BSQ, plus extra lines.
func enviHeader(lines, samples, bands int, extra ...string) string {
	h := fmt.Sprintf("ENVI\nsamples = %d\nlines = %d\nbands = %d\nheader offset = 0\nfile type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n", samples, lines, bands)
	return h + strings.Join(extra, "\n")
}

// replaceLine replaces the header line starting with key (or appends it when absent).
func replaceLine(h, key, line string) string {
	var out []string
	done := false
	for _, l := range strings.Split(h, "\n") {
		if strings.HasPrefix(l, key) {
			if !done && line != "" {
				out = append(out, line)
			}
			done = true
			continue
		}
		out = append(out, l)
	}
	if !done && line != "" {
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// mkfifo makes a named pipe at p.
func mkfifo(t *testing.T, p string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// devZero makes p a symbolic link to /dev/zero.
func devZero(t *testing.T, p string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Symlink("/dev/zero", p); err != nil {
		t.Skip(err)
	}
	return p
}

// sparse makes p a sparse file of size bytes whose first bytes are head.
func sparse(t *testing.T, p string, head []byte, size int64) string {
	t.Helper()
	write(t, filepath.Dir(p), filepath.Base(p), head)
	if err := os.Truncate(p, size); err != nil {
		t.Skipf("sparse file: %v", err)
	}
	return p
}

func detect(path string, extra ...string) Invocation {
	return Invocation{Args: append([]string{"detect", "--input", path}, extra...)}
}

// enviCase builds a header (from hdr) and data (from data; nil: none) and runs detect on it.
func enviCase(name string, hdr func() string, data func(t *testing.T, p string), mentions ...string) Case {
	return Case{Name: "envi/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		h := write(t, e.Dir, "cube.hdr", []byte(hdr()))
		if data != nil {
			data(t, filepath.Join(e.Dir, "cube.img"))
		}
		return detect(h)
	}}
}

func goodData(t *testing.T, p string) {
	write(t, filepath.Dir(p), filepath.Base(p), f32le(randF32(cubeH*cubeW*cubeC)))
}

func enviCases() []Case {
	good := func() string { return enviHeader(cubeH, cubeW, cubeC) }
	mut := func(key, line string) func() string {
		return func() string { return replaceLine(good(), key, line) }
	}
	cs := []Case{
		{Name: "envi/control-valid-cube", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			h := write(t, e.Dir, "cube.hdr", []byte(good()))
			goodData(t, filepath.Join(e.Dir, "cube.img"))
			return detect(h)
		}},
		enviCase("no-magic", mut("ENVI", ""), goodData, "$cube.hdr"),
		enviCase("samples-zero", mut("samples", "samples = 0"), goodData, "$cube.hdr", "samples"),
		enviCase("samples-negative", mut("samples", "samples = -3"), goodData, "$cube.hdr", "samples"),
		enviCase("samples-not-a-number", mut("samples", "samples = ten"), goodData, "$cube.hdr", "samples"),
		enviCase("lines-missing", mut("lines", ""), goodData, "$cube.hdr", "lines"),
		enviCase("bands-missing", mut("bands", ""), goodData, "$cube.hdr", "bands"),
		enviCase("data-type-99", mut("data type", "data type = 99"), goodData, "$cube.hdr", "data type"),
		enviCase("data-type-complex", mut("data type", "data type = 6"), goodData, "$cube.hdr", "data type"),
		enviCase("interleave-unknown", mut("interleave", "interleave = zigzag"), goodData, "$cube.hdr", "interleave"),
		enviCase("byte-order-7", mut("byte order", "byte order = 7"), goodData, "$cube.hdr", "byte order"),
		enviCase("header-offset-negative", mut("header offset", "header offset = -10"), goodData, "$cube.hdr", "header offset"),
		enviCase("header-offset-huge", mut("header offset", "header offset = 9000000000000000000"), goodData, "$cube"),
		enviCase("wavelength-count", func() string { return good() + "\nwavelength = {500, 600}\n" }, goodData, "$cube.hdr", "wavelength"),
		enviCase("wavelength-not-numbers", func() string { return good() + "\nwavelength = {a, b, c, d, e, f}\n" }, goodData, "$cube.hdr", "wavelength"),
		enviCase("unterminated-brace", func() string { return good() + "\nwavelength = {500, 600,\n" }, goodData, "$cube.hdr"),
		enviCase("nul-bytes", func() string { return good() + "\x00\x00\x00" }, goodData, "$cube.hdr"),
		enviCase("empty-header", func() string { return "" }, goodData, "$cube.hdr"),
		enviCase("random-bytes-header", func() string {
			b := make([]byte, 300)
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return string(b)
		}, goodData, "$cube.hdr"),
		enviCase("dims-overflow", func() string { return enviHeader(2000000000, 2000000000, 2000000000) }, goodData, "$cube"),
		enviCase("data-truncated", good, func(t *testing.T, p string) {
			write(t, filepath.Dir(p), filepath.Base(p), f32le(randF32(cubeH * cubeW * cubeC))[1:])
		}, "$cube.img", "truncated"),
		enviCase("data-too-long", good, func(t *testing.T, p string) {
			write(t, filepath.Dir(p), filepath.Base(p), append(f32le(randF32(cubeH*cubeW*cubeC)), 0))
		}, "$cube.img"),
		enviCase("data-empty", good, func(t *testing.T, p string) { write(t, filepath.Dir(p), filepath.Base(p), nil) }, "$cube.img"),
		enviCase("data-missing", good, nil, "$cube.hdr", "no data file"),
		enviCase("data-sparse-97GB", func() string { return enviHeader(20000, 20000, 61) }, func(t *testing.T, p string) {
			sparse(t, p, nil, 20000*20000*61*4)
		}, "$cube.img", "cube memory limit"),
		enviCase("data-dev-zero", good, func(t *testing.T, p string) { devZero(t, p) }, "$cube"),
		enviCase("data-fifo", good, func(t *testing.T, p string) { mkfifo(t, p) }, "$cube"),
		enviCase("data-directory", good, func(t *testing.T, p string) { os.MkdirAll(p, 0o755) }, "$cube"),
		enviCase("data-nan", good, func(t *testing.T, p string) {
			v := randF32(cubeH * cubeW * cubeC)
			v[17] = float32(math.NaN())
			write(t, filepath.Dir(p), filepath.Base(p), f32le(v))
		}, "$cube", "NaN"),
		{Name: "envi/header-is-directory", Mentions: []string{"$cube.hdr"}, Build: func(t *testing.T, e *Env) Invocation {
			os.MkdirAll(filepath.Join(e.Dir, "cube.hdr"), 0o755)
			goodData(t, filepath.Join(e.Dir, "cube.img"))
			return detect(filepath.Join(e.Dir, "cube.hdr"))
		}},
		{Name: "envi/header-fifo", Mentions: []string{"$cube.hdr", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			goodData(t, filepath.Join(e.Dir, "cube.img"))
			return detect(mkfifo(t, filepath.Join(e.Dir, "cube.hdr")))
		}},
		{Name: "envi/header-20MB", Mentions: []string{"$cube.hdr"}, Build: func(t *testing.T, e *Env) Invocation {
			h := write(t, e.Dir, "cube.hdr", []byte(good()+"\ndescription = {"+strings.Repeat("x", 20<<20)+"}\n"))
			goodData(t, filepath.Join(e.Dir, "cube.img"))
			return detect(h)
		}},
		{Name: "envi/header-symlink-loop", Mentions: []string{"$cube.hdr"}, Build: func(t *testing.T, e *Env) Invocation {
			os.Symlink(filepath.Join(e.Dir, "cube.hdr"), filepath.Join(e.Dir, "cube.hdr"))
			return detect(filepath.Join(e.Dir, "cube.hdr"))
		}},
		{Name: "envi/input-missing", Mentions: []string{"$nothing.hdr"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(filepath.Join(e.Dir, "nothing.hdr"))
		}},
		{Name: "envi/infer-data-truncated", Mentions: []string{"$cube.img", "truncated"}, Build: func(t *testing.T, e *Env) Invocation {
			run := e.CopyRun(t)
			h := write(t, e.Dir, "cube.hdr", []byte(enviHeader(32, 32, 61)))
			write(t, e.Dir, "cube.img", f32le(randF32(32 * 32 * 61))[:1000])
			return Invocation{Args: []string{"infer", "--run", run, "--input", h, "--out", filepath.Join(e.Dir, "out")}}
		}},
		{Name: "envi/infer-second-of-two-bad", Mentions: []string{"$in/b.img"}, Build: func(t *testing.T, e *Env) Invocation {
			run := e.CopyRun(t)
			in := filepath.Join(e.Dir, "in")
			write(t, in, "a.hdr", []byte(enviHeader(32, 32, 61)))
			write(t, in, "a.img", f32le(randF32(32*32*61)))
			write(t, in, "b.hdr", []byte(enviHeader(32, 32, 61)))
			write(t, in, "b.img", f32le(randF32(32 * 32 * 61))[:4000])
			return Invocation{Args: []string{"infer", "--run", run, "--input", in, "--out", filepath.Join(e.Dir, "out")}}
		}},
		{Name: "envi/infer-wrong-band-count", Mentions: []string{"$cube"}, Build: func(t *testing.T, e *Env) Invocation {
			run := e.CopyRun(t)
			h := write(t, e.Dir, "cube.hdr", []byte(enviHeader(32, 32, 7)))
			write(t, e.Dir, "cube.img", f32le(randF32(32*32*7)))
			return Invocation{Args: []string{"infer", "--run", run, "--input", h, "--out", filepath.Join(e.Dir, "out")}}
		}},
	}
	return cs
}

// npyBytes is a .npy file: header for descr and shape (as numpy writes it) and data.
func npyBytes(descr string, shape string, data []byte) []byte {
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape)
	for (10+len(dict)+1)%64 != 0 {
		dict += " "
	}
	dict += "\n"
	h := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(h[8:], uint16(len(dict)))
	return append(append(h, dict...), data...)
}

var cubeShape = fmt.Sprintf("(%d, %d, %d)", cubeH, cubeW, cubeC)

func npyCase(name string, content func() []byte, mentions ...string) Case {
	return Case{Name: "npy/" + name, Mentions: append([]string{"$cube.npy"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
		return detect(write(t, e.Dir, "cube.npy", content()))
	}}
}

func npyCases() []Case {
	data := func() []byte { return f32le(randF32(cubeH * cubeW * cubeC)) }
	good := func() []byte { return npyBytes("<f4", cubeShape, data()) }
	return []Case{
		{Name: "npy/control-valid-cube", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			return detect(write(t, e.Dir, "cube.npy", good()))
		}},
		npyCase("bad-magic", func() []byte { b := good(); b[1] = 'X'; return b }, "magic"),
		npyCase("version-9", func() []byte { b := good(); b[6] = 9; return b }, "version"),
		npyCase("header-length-past-end", func() []byte { b := good()[:40]; return b }),
		npyCase("header-no-newline", func() []byte {
			b := good()
			i := bytes.IndexByte(b, '\n')
			b[i] = ' '
			return b
		}, "newline"),
		npyCase("header-not-a-dict", func() []byte {
			b := npyBytes("<f4", cubeShape, data())
			copy(b[10:], "[1, 2, 3]                   ")
			return b
		}),
		npyCase("dtype-complex", func() []byte { return npyBytes("<c8", cubeShape, append(data(), data()...)) }, "dtype"),
		npyCase("dtype-object", func() []byte { return npyBytes("|O", cubeShape, data()) }, "dtype"),
		npyCase("dtype-unicode", func() []byte { return npyBytes("<U1", cubeShape, data()) }, "dtype"),
		npyCase("shape-negative", func() []byte { return npyBytes("<f4", "(-12, 10, 6)", data()) }),
		npyCase("shape-2d", func() []byte { return npyBytes("<f4", fmt.Sprintf("(%d, %d)", cubeH*cubeW, cubeC), data()) }, "3 dimensions"),
		npyCase("shape-1d", func() []byte { return npyBytes("<f4", fmt.Sprintf("(%d,)", cubeH*cubeW*cubeC), data()) }, "3 dimensions"),
		npyCase("shape-overflow", func() []byte { return npyBytes("<f4", "(1099511627776, 1099511627776, 6)", data()) }, "too large"),
		npyCase("data-truncated", func() []byte { b := good(); return b[:len(b)-5] }, "truncated"),
		npyCase("data-trailing", func() []byte { return append(good(), 1, 2, 3) }, "trailing"),
		npyCase("empty-file", func() []byte { return nil }),
		npyCase("fortran-order-garbage", func() []byte {
			b := good()
			return bytes.Replace(b, []byte("False"), []byte("Maybe"), 1)
		}),
		{Name: "npy/sparse-16GiB", Mentions: []string{"$cube.npy", "cube memory limit"}, Build: func(t *testing.T, e *Env) Invocation {
			h := npyBytes("<f4", "(65536, 65536, 1)", nil)
			return detect(sparse(t, filepath.Join(e.Dir, "cube.npy"), h, int64(len(h))+65536*65536*4))
		}},
		{Name: "npy/dev-zero", Mentions: []string{"$cube.npy", "not a regular file"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(devZero(t, filepath.Join(e.Dir, "cube.npy")))
		}},
		{Name: "npy/fifo", Mentions: []string{"$cube.npy", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(mkfifo(t, filepath.Join(e.Dir, "cube.npy")))
		}},
		{Name: "npy/env-limit-1KiB", Mentions: []string{"$cube.npy", "cube memory limit", "SPECTRACLIP_MAX_CUBE_BYTES"}, Build: func(t *testing.T, e *Env) Invocation {
			inv := detect(write(t, e.Dir, "cube.npy", good()))
			inv.Env = []string{"SPECTRACLIP_MAX_CUBE_BYTES=1KiB"}
			return inv
		}},
		{Name: "npy/infer-nan-pixel", Mentions: []string{"$cube.npy", "NaN"}, Build: func(t *testing.T, e *Env) Invocation {
			run := e.CopyRun(t)
			v := randF32(32 * 32 * 61)
			v[1234] = float32(math.NaN())
			p := write(t, e.Dir, "cube.npy", npyBytes("<f4", "(32, 32, 61)", f32le(v)))
			return Invocation{Args: []string{"infer", "--run", run, "--input", p, "--out", filepath.Join(e.Dir, "out")}}
		}},
	}
}

// npzFile writes a zip of named members.
func npzFile(t *testing.T, p string, members map[string][]byte, method uint16) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(members)) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(members[name])
	}
	zw.Close()
	return write(t, filepath.Dir(p), filepath.Base(p), buf.Bytes())
}

func goodMap() []byte {
	v := make([]float32, cubeH*cubeW)
	for i := range v {
		if rng.IntN(10) == 0 {
			v[i] = 1
		}
	}
	v[0] = 1
	return npyBytes("<f4", fmt.Sprintf("(%d, %d)", cubeH, cubeW), f32le(v))
}

func npzCase(name string, members func() map[string][]byte, method uint16, extra []string, mentions ...string) Case {
	return Case{Name: "npz/" + name, Mentions: append([]string{"$scene.npz"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
		return detect(npzFile(t, filepath.Join(e.Dir, "scene.npz"), members(), method), extra...)
	}}
}

func npzCases() []Case {
	cube := func() []byte { return npyBytes("<f4", cubeShape, f32le(randF32(cubeH*cubeW*cubeC))) }
	good := func() map[string][]byte { return map[string][]byte{"data.npy": cube(), "map.npy": goodMap()} }
	rawCase := func(name string, content func(t *testing.T, e *Env) []byte, mentions ...string) Case {
		return Case{Name: "npz/" + name, Mentions: append([]string{"$scene.npz"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
			return detect(write(t, e.Dir, "scene.npz", content(t, e)))
		}}
	}
	zipBytes := func(t *testing.T, e *Env) []byte {
		p := npzFile(t, filepath.Join(e.Dir, "tmp", "x.npz"), good(), zip.Deflate)
		b, _ := os.ReadFile(p)
		os.RemoveAll(filepath.Join(e.Dir, "tmp"))
		return b
	}
	return []Case{
		{Name: "npz/control-valid-scene", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			return detect(npzFile(t, filepath.Join(e.Dir, "scene.npz"), good(), zip.Deflate))
		}},
		rawCase("not-a-zip", func(t *testing.T, e *Env) []byte { return []byte("this is not a zip archive at all") }, "zip"),
		rawCase("empty-file", func(t *testing.T, e *Env) []byte { return nil }),
		rawCase("zip-truncated", func(t *testing.T, e *Env) []byte { b := zipBytes(t, e); return b[:len(b)/2] }),
		rawCase("zip-corrupt-member", func(t *testing.T, e *Env) []byte {
			b := zipBytes(t, e)
			for i := 60; i < 200; i++ {
				b[i] ^= 0x5a
			}
			return b
		}),
		npzCase("no-members", func() map[string][]byte { return map[string][]byte{} }, zip.Store, nil, "data/map"),
		npzCase("no-known-pair", func() map[string][]byte { return map[string][]byte{"cube.npy": cube(), "labels.npy": goodMap()} }, zip.Store, nil, "data/map"),
		npzCase("member-not-npy", func() map[string][]byte {
			m := good()
			m["data.npy"] = []byte("plain text, not numpy")
			return m
		}, zip.Deflate, nil, "data.npy"),
		npzCase("bomb-8GiB", func() map[string][]byte {
			// 32 MiB of zeros deflate to ~32 KiB; the header claims 8 GiB.
			return map[string][]byte{"data.npy": npyBytes("<f4", "(32768, 32768, 2)", make([]byte, 32<<20)), "map.npy": goodMap()}
		}, zip.Deflate, nil, "data.npy", "cube memory limit"),
		npzCase("member-truncated", func() map[string][]byte {
			m := good()
			m["data.npy"] = m["data.npy"][:len(m["data.npy"])-7]
			return m
		}, zip.Deflate, nil, "data.npy", "truncated"),
		npzCase("map-shape-mismatch", func() map[string][]byte {
			m := good()
			m["map.npy"] = npyBytes("<f4", "(3, 4)", f32le(make([]float32, 12)))
			return m
		}, zip.Store, nil),
		npzCase("map-not-integer", func() map[string][]byte {
			m := good()
			v := make([]float32, cubeH*cubeW)
			v[5] = 0.5
			m["map.npy"] = npyBytes("<f4", fmt.Sprintf("(%d, %d)", cubeH, cubeW), f32le(v))
			return m
		}, zip.Store, nil, "integer"),
		npzCase("data-2d", func() map[string][]byte {
			m := good()
			m["data.npy"] = npyBytes("<f4", fmt.Sprintf("(%d, %d)", cubeH*cubeW, cubeC), f32le(randF32(cubeH*cubeW*cubeC)))
			return m
		}, zip.Store, nil, "3 dimensions"),
		npzCase("cube-var-missing", good, zip.Store, []string{"--cube-var", "hsi"}, "hsi"),
		npzCase("gt-var-missing", good, zip.Store, []string{"--cube-var", "data", "--gt-var", "truth"}, "truth"),
		{Name: "npz/dev-zero", Mentions: []string{"$scene.npz", "not a regular file"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(devZero(t, filepath.Join(e.Dir, "scene.npz")))
		}},
		{Name: "npz/fifo", Mentions: []string{"$scene.npz", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(mkfifo(t, filepath.Join(e.Dir, "scene.npz")))
		}},
	}
}

// MAT v5 building blocks (little-endian).
func matHeader() []byte {
	h := bytes.Repeat([]byte(" "), 128)
	copy(h, "MATLAB 5.0 MAT-file, chaos corpus")
	copy(h[116:124], make([]byte, 8))
	binary.LittleEndian.PutUint16(h[124:], 0x0100)
	copy(h[126:], "IM")
	return h
}

func pad8(n int) int { return (n + 7) &^ 7 }

// matElement is a tagged element with padding.
func matElement(typ uint32, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, typ)
	binary.Write(&b, binary.LittleEndian, uint32(len(payload)))
	b.Write(payload)
	b.Write(make([]byte, pad8(len(payload))-len(payload)))
	return b.Bytes()
}

// matMatrix is a miMATRIX element of class (6 double, 7 single, 9 uint8, 4 char) with
// column-major data of the given element type.
func matMatrix(name string, class uint32, dims []int32, dataType uint32, data []byte, complex bool) []byte {
	var p bytes.Buffer
	flags := make([]byte, 8)
	f := class
	if complex {
		f |= 0x0800
	}
	binary.LittleEndian.PutUint32(flags, f)
	p.Write(matElement(6, flags)) // miUINT32
	d := make([]byte, 4*len(dims))
	for i, x := range dims {
		binary.LittleEndian.PutUint32(d[4*i:], uint32(x))
	}
	p.Write(matElement(5, d)) // miINT32
	p.Write(matElement(1, []byte(name)))
	p.Write(matElement(dataType, data))
	if complex {
		p.Write(matElement(dataType, data))
	}
	return matElement(14, p.Bytes())
}

func compressElement(el []byte) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(el)
	zw.Close()
	// MATLAB does not pad compressed elements.
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(15))
	binary.Write(&b, binary.LittleEndian, uint32(z.Len()))
	b.Write(z.Bytes())
	return b.Bytes()
}

func matCube() []byte {
	return matMatrix("data", 7, []int32{cubeH, cubeW, cubeC}, 7, f32le(randF32(cubeH*cubeW*cubeC)), false)
}

func matMap() []byte {
	v := make([]byte, cubeH*cubeW)
	v[3], v[40] = 1, 1
	return matMatrix("map", 9, []int32{cubeH, cubeW}, 2, v, false)
}

func matCase(name string, content func() []byte, extra []string, mentions ...string) Case {
	return Case{Name: "mat/" + name, Mentions: append([]string{"$scene.mat"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
		return detect(write(t, e.Dir, "scene.mat", content()), extra...)
	}}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func matCases() []Case {
	good := func() []byte { return concat(matHeader(), matCube(), matMap()) }
	return []Case{
		{Name: "mat/control-valid-scene", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			return detect(write(t, e.Dir, "scene.mat", concat(matHeader(), compressElement(matCube()), matMap())))
		}},
		matCase("too-short", func() []byte { return []byte("MATLAB 5.0") }, nil, "too short"),
		matCase("v73-hdf5", func() []byte {
			b := make([]byte, 1024)
			copy(b, "MATLAB 7.3 MAT-file")
			copy(b[512:], "\x89HDF\r\n\x1a\n")
			return b
		}, nil, "v7.3"),
		matCase("bad-endian", func() []byte { b := good(); copy(b[126:], "XX"); return b }, nil, "endian"),
		matCase("bad-version", func() []byte { b := good(); b[124] = 7; return b }, nil, "version"),
		matCase("element-longer-than-file", func() []byte { b := good(); binary.LittleEndian.PutUint32(b[132:], 1<<30); return b }, nil, "truncated"),
		matCase("compressed-garbage", func() []byte {
			return concat(matHeader(), matElement(15, []byte("not zlib data at all, just text")), matMap())
		}, nil, "zlib"),
		matCase("zlib-bomb", func() []byte {
			// A uint8 array of 16384 × 16384 × 15 (15 GiB as float32) whose data is zeros: the
			// compressed element is small because only its first 16 MiB are written.
			var z bytes.Buffer
			zw := zlib.NewWriter(&z)
			el := matMatrix("data", 9, []int32{16384, 16384, 15}, 2, nil, false)
			binary.LittleEndian.PutUint32(el[4:], uint32(len(el)-8+16384*16384*15))
			binary.LittleEndian.PutUint32(el[len(el)-4:], 16384*16384*15)
			zw.Write(el)
			zw.Write(make([]byte, 16<<20))
			zw.Close()
			return concat(matHeader(), matElement(15, z.Bytes()), matMap())
		}, nil, "cube memory limit"),
		matCase("compressed-lies-about-size", func() []byte {
			el := matCube()
			binary.LittleEndian.PutUint32(el[4:], 3<<30)
			return concat(matHeader(), compressElement(el), matMap())
		}, nil, "declares"),
		matCase("matrix-without-flags", func() []byte { return concat(matHeader(), matElement(14, matElement(5, make([]byte, 8))), matMap()) }, nil, "flags"),
		matCase("negative-dimension", func() []byte {
			return concat(matHeader(), matMatrix("data", 7, []int32{-12, cubeW, cubeC}, 7, f32le(randF32(cubeH*cubeW*cubeC)), false), matMap())
		}, nil, "negative"),
		matCase("data-length-mismatch", func() []byte {
			return concat(matHeader(), matMatrix("data", 7, []int32{cubeH, cubeW, cubeC}, 7, f32le(randF32(cubeH*cubeW*cubeC-3)), false), matMap())
		}, nil, "data"),
		matCase("header-only", matHeader, nil, "no variables"),
		matCase("only-char-variable", func() []byte {
			return concat(matHeader(), matMatrix("note", 4, []int32{1, 5}, 4, []byte("h\x00e\x00l\x00l\x00o\x00"), false))
		}, nil, "note"),
		matCase("cube-var-missing", good, []string{"--cube-var", "hsi"}, "hsi"),
		matCase("gt-var-missing", good, []string{"--cube-var", "data", "--gt-var", "truth"}, "truth"),
		matCase("complex-cube", func() []byte {
			return concat(matHeader(), matMatrix("data", 7, []int32{cubeH, cubeW, cubeC}, 7, f32le(randF32(cubeH*cubeW*cubeC)), true), matMap())
		}, nil, "complex"),
		matCase("gt-not-integer", func() []byte {
			v := make([]float32, cubeH*cubeW)
			v[7] = 0.25
			return concat(matHeader(), matCube(), matMatrix("map", 7, []int32{cubeH, cubeW}, 7, f32le(v), false))
		}, nil, "integer"),
		matCase("gt-shape-mismatch", func() []byte {
			return concat(matHeader(), matCube(), matMatrix("map", 9, []int32{3, 3}, 2, make([]byte, 9), false))
		}, nil, "ground truth"),
		matCase("cube-2d", func() []byte {
			return concat(matHeader(), matMatrix("data", 7, []int32{cubeH * cubeW, cubeC}, 7, f32le(randF32(cubeH*cubeW*cubeC)), false), matMap())
		}, nil, "3 dimensions"),
		{Name: "mat/dev-zero", Mentions: []string{"$scene.mat", "not a regular file"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(devZero(t, filepath.Join(e.Dir, "scene.mat")))
		}},
		{Name: "mat/fifo", Mentions: []string{"$scene.mat", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(mkfifo(t, filepath.Join(e.Dir, "scene.mat")))
		}},
	}
}

// trainOn runs a tiny PCA training on the dataset at root, into dir/run.
func trainOn(e *Env, root string, extra ...string) Invocation {
	args := append([]string{"train", "--variant", "pca", "--out", filepath.Join(e.Dir, "run")}, tinyOverrides(root)...)
	return Invocation{Args: append(args, extra...)}
}

// cocoCase copies the fixture data and replaces annotations.json by content.
func cocoCase(name string, content func(orig []byte) []byte, mentions ...string) Case {
	return Case{Name: "coco/" + name, Mentions: append([]string{"annotations.json"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
		root := e.CopyData(t)
		p := filepath.Join(root, "annotations.json")
		orig, _ := os.ReadFile(p)
		os.WriteFile(p, content(orig), 0o644)
		return trainOn(e, root)
	}}
}

func cocoCases() []Case {
	doc := func(images, anns, cats string) func([]byte) []byte {
		return func([]byte) []byte {
			return []byte(`{"images": ` + images + `, "annotations": ` + anns + `, "categories": ` + cats + `}`)
		}
	}
	imgs := `[{"id": 0, "width": 32, "height": 32}, {"id": 1, "width": 32, "height": 32}]`
	cats := `[{"id": 3, "name": "Stone"}]`
	ann := func(seg string) string {
		return `[{"id": 1, "image_id": 0, "category_id": 3, "segmentation": ` + seg + `}]`
	}
	return []Case{
		cocoCase("truncated-json", func(b []byte) []byte { return b[:len(b)/2] }),
		cocoCase("trailing-garbage", func(b []byte) []byte { return append(b, []byte(" {}")...) }, "after the JSON"),
		cocoCase("empty-file", func([]byte) []byte { return nil }),
		cocoCase("annotations-not-a-list", doc(imgs, `{"id": 1}`, cats)),
		cocoCase("missing-image-id", doc(imgs, `[{"id": 1, "category_id": 3, "segmentation": [[1,1,5,1,5,5]]}]`, cats), "image_id"),
		cocoCase("unknown-image", doc(imgs, `[{"id": 1, "image_id": 77, "category_id": 3, "segmentation": [[1,1,5,1,5,5]]}]`, cats), "77"),
		cocoCase("unknown-category", doc(imgs, `[{"id": 1, "image_id": 0, "category_id": 9, "segmentation": [[1,1,5,1,5,5]]}]`, cats), "category"),
		cocoCase("duplicate-image", doc(`[{"id": 0, "width": 32, "height": 32}, {"id": 0, "width": 32, "height": 32}]`, `[]`, cats), "twice"),
		cocoCase("negative-size", doc(`[{"id": 0, "width": -32, "height": 32}]`, `[]`, cats), "negative"),
		cocoCase("size-differs-from-cube", doc(`[{"id": 0, "width": 31, "height": 32}]`, `[]`, cats), "frame 0"),
		cocoCase("negative-category", doc(imgs, `[]`, `[{"id": -3, "name": "Stone"}]`), "category"),
		cocoCase("odd-polygon", doc(imgs, ann(`[[1, 1, 5, 1, 5]]`), cats), "odd"),
		cocoCase("huge-number", doc(imgs, ann(`[[1, 1, 5, 1e400, 5, 5]]`), cats)),
		cocoCase("segmentation-string", doc(imgs, ann(`"everything"`), cats), "annotation 1"),
		cocoCase("rle-size-mismatch", doc(imgs, ann(`{"size": [8, 8], "counts": [0, 64]}`), cats), "RLE"),
		cocoCase("rle-counts-overrun", doc(imgs, ann(`{"size": [32, 32], "counts": [0, 5000]}`), cats), "RLE"),
		cocoCase("rle-negative-count", doc(imgs, ann(`{"size": [32, 32], "counts": [0, -4]}`), cats), "RLE"),
		cocoCase("rle-bad-string", doc(imgs, ann(`{"size": [32, 32], "counts": "\u0001\u0002"}`), cats)),
		cocoCase("rle-no-counts", doc(imgs, ann(`{"size": [32, 32]}`), cats), "counts"),
		{Name: "coco/fifo", Mentions: []string{"annotations.json", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			root := e.CopyData(t)
			os.Remove(filepath.Join(root, "annotations.json"))
			mkfifo(t, filepath.Join(root, "annotations.json"))
			return trainOn(e, root)
		}},
		{Name: "coco/dev-zero", Mentions: []string{"annotations.json", "not a regular file"}, Build: func(t *testing.T, e *Env) Invocation {
			root := e.CopyData(t)
			os.Remove(filepath.Join(root, "annotations.json"))
			devZero(t, filepath.Join(root, "annotations.json"))
			return trainOn(e, root)
		}},
		{Name: "coco/missing", Mentions: []string{"annotations.json"}, Build: func(t *testing.T, e *Env) Invocation {
			root := e.CopyData(t)
			os.Remove(filepath.Join(root, "annotations.json"))
			return trainOn(e, root)
		}},
	}
}

// manifestCase copies the fixture data and edits dataset.yaml.
func manifestCase(name string, edit func(t *testing.T, root string, y string) string, mentions ...string) Case {
	return Case{Name: "manifest/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		root := e.CopyData(t)
		p := filepath.Join(root, dataset.ManifestName)
		y, _ := os.ReadFile(p)
		if out := edit(t, root, string(y)); out != "\x00keep" {
			os.WriteFile(p, []byte(out), 0o644)
		}
		return trainOn(e, root)
	}}
}

func manifestCases() []Case {
	rep := func(old, new string) func(*testing.T, string, string) string {
		return func(t *testing.T, _ string, y string) string {
			if !strings.Contains(y, old) {
				t.Fatalf("dataset.yaml has no %q:\n%s", old, y)
			}
			return strings.Replace(y, old, new, 1)
		}
	}
	keep := "\x00keep"
	return []Case{
		manifestCase("unknown-key", func(_ *testing.T, _ string, y string) string { return y + "\ncolour: blue\n" }, "dataset.yaml", "colour"),
		manifestCase("invalid-yaml", func(_ *testing.T, _ string, y string) string { return y + "\n  - : : [\n" }, "dataset.yaml"),
		manifestCase("empty", func(*testing.T, string, string) string { return "" }, "dataset.yaml", "frames"),
		manifestCase("frame-file-missing", rep("frames/frame_001.hdr", "frames/frame_101.hdr"), "frame 1"),
		manifestCase("duplicate-frame-id", rep("- id: 1\n", "- id: 0\n"), "frame id 0"),
		manifestCase("negative-frame-id", rep("- id: 1\n", "- id: -1\n"), "-1"),
		manifestCase("split-unknown-frame", rep("train: [", "train: [77, "), "77"),
		manifestCase("format-hdf5", func(_ *testing.T, _ string, y string) string { return replaceYAMLKey(y, "format", "format: hdf5") }, "hdf5"),
		manifestCase("nan-policy-bogus", func(_ *testing.T, _ string, y string) string {
			return replaceYAMLKey(y, "nan_policy", "nan_policy: ignore")
		}, "nan_policy"),
		manifestCase("wavelength-count", func(_ *testing.T, _ string, y string) string {
			return replaceYAMLKey(y, "wavelengths", "wavelengths: [500, 600]")
		}, "wavelengths"),
		manifestCase("bands-mismatch", func(t *testing.T, root string, y string) string {
			h := filepath.Join(root, "frames", "frame_002.hdr")
			os.WriteFile(h, []byte(enviHeader(32, 32, 60)), 0o644)
			os.Truncate(filepath.Join(root, "frames", "frame_002.img"), 32*32*60*4)
			return keep
		}, "frame 2", "bands"),
		manifestCase("frame-data-truncated", func(t *testing.T, root string, y string) string {
			os.Truncate(filepath.Join(root, "frames", "frame_003.img"), 1000)
			return keep
		}, "frame 3", "frame_003.img"),
		manifestCase("frame-data-nan", func(t *testing.T, root string, y string) string {
			p := filepath.Join(root, "frames", "frame_000.img")
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			f.WriteAt(f32le([]float32{float32(math.NaN())}), 4*1000)
			f.Close()
			return keep
		}, "frame_000", "NaN"),
		manifestCase("frame-data-sparse", func(t *testing.T, root string, y string) string {
			h := filepath.Join(root, "frames", "frame_000.hdr")
			b, _ := os.ReadFile(h)
			s := replaceLine(replaceLine(string(b), "lines", "lines = 20000"), "samples", "samples = 20000")
			os.WriteFile(h, []byte(s), 0o644)
			os.Truncate(filepath.Join(root, "frames", "frame_000.img"), 20000*20000*61*4)
			return keep
		}, "frame 0", "cube memory limit"),
		manifestCase("frame-data-fifo", func(t *testing.T, root string, y string) string {
			p := filepath.Join(root, "frames", "frame_001.img")
			os.Remove(p)
			mkfifo(t, p)
			return keep
		}, "frame 1"),
		manifestCase("frame-is-cu3s", rep("frames/frame_001.hdr", "frames/session.cu3s"), "cu3s"),
		{Name: "manifest/fifo", Mentions: []string{"dataset.yaml", "named pipe"}, Build: func(t *testing.T, e *Env) Invocation {
			root := e.CopyData(t)
			os.Remove(filepath.Join(root, dataset.ManifestName))
			mkfifo(t, filepath.Join(root, dataset.ManifestName))
			return trainOn(e, root)
		}},
		{Name: "manifest/directory", Mentions: []string{"dataset.yaml"}, Build: func(t *testing.T, e *Env) Invocation {
			root := e.CopyData(t)
			os.Remove(filepath.Join(root, dataset.ManifestName))
			os.Mkdir(filepath.Join(root, dataset.ManifestName), 0o755)
			return trainOn(e, root)
		}},
	}
}

// replaceYAMLKey replaces the top-level line "key: ..." (or appends one).
func replaceYAMLKey(y, key, line string) string {
	lines := strings.Split(y, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, key+":") {
			lines[i] = line
			return strings.Join(lines, "\n")
		}
	}
	return y + "\n" + line + "\n"
}

// pngCase runs dataset.LoadScene on a valid .npy cube with the PNG as ground truth, in
// process: no command takes a PNG mask.
func pngCase(name string, content func(t *testing.T, p string), mentions ...string) Case {
	return Case{Name: "png/" + name, Mentions: append([]string{"$mask.png"}, mentions...), Build: func(t *testing.T, e *Env) Invocation {
		cube := write(t, e.Dir, "cube.npy", npyBytes("<f4", cubeShape, f32le(randF32(cubeH*cubeW*cubeC))))
		mask := filepath.Join(e.Dir, "mask.png")
		content(t, mask)
		return Invocation{Lib: func() error {
			_, _, err := dataset.LoadScene(cube, dataset.SceneOptions{GroundTruth: mask})
			return err
		}}
	}}
}

func pngBytes(img image.Image) []byte {
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func pngCases() []Case {
	gray := func(h, w int) []byte { return pngBytes(image.NewGray(image.Rect(0, 0, w, h))) }
	put := func(b func() []byte) func(*testing.T, string) {
		return func(t *testing.T, p string) { write(t, filepath.Dir(p), filepath.Base(p), b()) }
	}
	return []Case{
		{Name: "png/control-valid-mask", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			cube := write(t, e.Dir, "cube.npy", npyBytes("<f4", cubeShape, f32le(randF32(cubeH*cubeW*cubeC))))
			mask := write(t, e.Dir, "mask.png", gray(cubeH, cubeW))
			return Invocation{Lib: func() error {
				_, _, err := dataset.LoadScene(cube, dataset.SceneOptions{GroundTruth: mask})
				return err
			}}
		}},
		pngCase("not-a-png", put(func() []byte { return []byte("GIF89a, or so it claims") })),
		pngCase("truncated", put(func() []byte { b := gray(cubeH, cubeW); return b[:len(b)/2] })),
		pngCase("empty", put(func() []byte { return nil })),
		pngCase("rgb-colour", put(func() []byte {
			img := image.NewRGBA(image.Rect(0, 0, cubeW, cubeH))
			img.Set(1, 1, color.RGBA{200, 10, 10, 255})
			return pngBytes(img)
		}), "grayscale"),
		pngCase("size-mismatch", put(func() []byte { return gray(cubeH+1, cubeW) })),
		pngCase("bomb-30000x30000", put(func() []byte { return gray(30000, 30000) }), "cube memory limit"),
		pngCase("fifo", func(t *testing.T, p string) { mkfifo(t, p) }, "named pipe"),
		pngCase("dev-zero", func(t *testing.T, p string) { devZero(t, p) }, "not a regular file"),
	}
}

func cu3sCases() []Case {
	return []Case{
		{Name: "cu3s/detect", Mentions: []string{"$session.cu3s", "ENVI"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(write(t, e.Dir, "session.cu3s", []byte("CU3S fake session bytes")))
		}},
		{Name: "cu3s/detect-missing-file", Mentions: []string{"$session.cu3s"}, Build: func(t *testing.T, e *Env) Invocation {
			return detect(filepath.Join(e.Dir, "session.cu3s"))
		}},
		{Name: "cu3s/infer", Mentions: []string{"$session.cu3s", "ENVI"}, Build: func(t *testing.T, e *Env) Invocation {
			run := e.CopyRun(t)
			p := write(t, e.Dir, "session.cu3s", []byte("CU3S fake session bytes"))
			return Invocation{Args: []string{"infer", "--run", run, "--input", p, "--out", filepath.Join(e.Dir, "out")}}
		}},
	}
}
