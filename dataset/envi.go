package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// ENVIDataType is the numeric `data type` code of an ENVI header.
type ENVIDataType int

// ENVI data type codes (the same numbers as ENVI itself and Spectral Python use).
const (
	ENVIUint8   ENVIDataType = 1
	ENVIInt16   ENVIDataType = 2
	ENVIInt32   ENVIDataType = 3
	ENVIFloat32 ENVIDataType = 4
	ENVIFloat64 ENVIDataType = 5
	ENVIUint16  ENVIDataType = 12
	ENVIUint32  ENVIDataType = 13
	ENVIInt64   ENVIDataType = 14
	ENVIUint64  ENVIDataType = 15
)

// Size returns the bytes per element, or 0 for codes this package cannot read.
func (t ENVIDataType) Size() int {
	switch t {
	case ENVIUint8:
		return 1
	case ENVIInt16, ENVIUint16:
		return 2
	case ENVIInt32, ENVIUint32, ENVIFloat32:
		return 4
	case ENVIFloat64, ENVIInt64, ENVIUint64:
		return 8
	}
	return 0
}

// String names the type the way numpy would.
func (t ENVIDataType) String() string {
	switch t {
	case ENVIUint8:
		return "uint8"
	case ENVIInt16:
		return "int16"
	case ENVIInt32:
		return "int32"
	case ENVIFloat32:
		return "float32"
	case ENVIFloat64:
		return "float64"
	case ENVIUint16:
		return "uint16"
	case ENVIUint32:
		return "uint32"
	case ENVIInt64:
		return "int64"
	case ENVIUint64:
		return "uint64"
	case 6:
		return "complex64"
	case 9:
		return "complex128"
	}
	return fmt.Sprintf("code %d", int(t))
}

// ENVIHeader is the parsed content of an ENVI `.hdr` file.
type ENVIHeader struct {
	Samples, Lines, Bands int // columns, rows, bands
	HeaderOffset          int64
	DataType              ENVIDataType
	Interleave            string // "bsq", "bil" or "bip"
	ByteOrder             int    // 0 little-endian, 1 big-endian
	// Wavelengths are converted to nm (nil when the header lists none).
	Wavelengths []float32
	// WavelengthUnits is the unit as written in the header ("" when absent).
	WavelengthUnits string
	BandNames       []string
	Description     string
	// Fields holds every key (lower-case, inner blanks collapsed) with its raw value; braces of
	// `{…}` values are removed.
	Fields map[string]string
}

// maxHeaderBytes bounds a header read so that pointing the reader at a data file by mistake
// yields an error, not a huge string.
const maxHeaderBytes = 16 << 20

// maxElements bounds the element count a header may declare; it is far above any real cube and
// keeps size arithmetic from overflowing.
const maxElements = 1 << 40

// ReadENVIHeader reads and parses an ENVI header file.
func ReadENVIHeader(path string) (*ENVIHeader, error) {
	f, _, err := openRegular(path, "envi header")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHeaderBytes+1))
	if err != nil {
		return nil, fmt.Errorf("envi header %s: %w", path, err)
	}
	if len(b) > maxHeaderBytes {
		return nil, fmt.Errorf("envi header %s: larger than %d bytes; is this a data file rather than a .hdr?", path, maxHeaderBytes)
	}
	return ParseENVIHeader(b, path)
}

// ParseENVIHeader parses header text; name is used in error messages. Keys are matched
// case-insensitively, `{…}` values may span lines, and lines starting with ';' are comments.
func ParseENVIHeader(text []byte, name string) (*ENVIHeader, error) {
	if len(text) > maxHeaderBytes {
		return nil, fmt.Errorf("envi header %s: larger than %d bytes", name, maxHeaderBytes)
	}
	if bytes.IndexByte(text, 0) >= 0 {
		return nil, fmt.Errorf("envi header %s: contains NUL bytes; is this a binary data file rather than a .hdr?", name)
	}
	s := strings.TrimPrefix(string(text), "\ufeff")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	first := 0
	for first < len(lines) && strings.TrimSpace(lines[first]) == "" {
		first++
	}
	if first == len(lines) || !strings.EqualFold(strings.TrimSpace(lines[first]), "ENVI") {
		return nil, fmt.Errorf("envi header %s: first line must be \"ENVI\"", name)
	}
	fields := map[string]string{}
	for i := first + 1; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == ';' {
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, fmt.Errorf("envi header %s: line %d: expected \"key = value\", got %q", name, i+1, clip(line, 60))
		}
		key := strings.ToLower(strings.Join(strings.Fields(line[:eq]), " "))
		if key == "" {
			return nil, fmt.Errorf("envi header %s: line %d: empty key", name, i+1)
		}
		val := strings.TrimSpace(line[eq+1:])
		if strings.HasPrefix(val, "{") {
			start := i
			for !strings.Contains(val, "}") {
				i++
				if i >= len(lines) {
					return nil, fmt.Errorf("envi header %s: line %d: value of %q opens '{' but never closes it", name, start+1, key)
				}
				val += "\n" + lines[i]
			}
			val = strings.TrimSpace(val[1:strings.IndexByte(val, '}')])
		}
		fields[key] = val
	}
	h := &ENVIHeader{Fields: fields, Interleave: "bsq"}
	var err error
	geti := func(key string, required bool, dst *int) {
		if err != nil {
			return
		}
		v, ok := fields[key]
		if !ok {
			if required {
				err = fmt.Errorf("envi header %s: missing required key %q", name, key)
			}
			return
		}
		n, e := strconv.Atoi(strings.TrimSpace(v))
		if e != nil {
			err = fmt.Errorf("envi header %s: key %q = %q is not an integer", name, key, clip(v, 40))
			return
		}
		*dst = n
	}
	var dt, off int
	geti("samples", true, &h.Samples)
	geti("lines", true, &h.Lines)
	geti("bands", true, &h.Bands)
	geti("data type", true, &dt)
	geti("byte order", false, &h.ByteOrder)
	geti("header offset", false, &off)
	if err != nil {
		return nil, err
	}
	for _, kv := range []struct {
		k string
		v int
	}{{"samples", h.Samples}, {"lines", h.Lines}, {"bands", h.Bands}} {
		if kv.v <= 0 {
			return nil, fmt.Errorf("envi header %s: %s = %d; must be positive", name, kv.k, kv.v)
		}
	}
	if _, ok := checkedMul(maxElements, int64(h.Samples), int64(h.Lines), int64(h.Bands)); !ok {
		return nil, fmt.Errorf("envi header %s: %d samples × %d lines × %d bands is too large", name, h.Samples, h.Lines, h.Bands)
	}
	if off < 0 {
		return nil, fmt.Errorf("envi header %s: header offset = %d; must not be negative", name, off)
	}
	h.HeaderOffset = int64(off)
	h.DataType = ENVIDataType(dt)
	if h.DataType.Size() == 0 {
		return nil, fmt.Errorf("envi header %s: data type %d (%s) is not supported; supported codes: 1 uint8, 2 int16, 3 int32, 4 float32, 5 float64, 12 uint16, 13 uint32, 14 int64, 15 uint64", name, dt, h.DataType)
	}
	if h.ByteOrder != 0 && h.ByteOrder != 1 {
		return nil, fmt.Errorf("envi header %s: byte order = %d; must be 0 (little-endian) or 1 (big-endian)", name, h.ByteOrder)
	}
	if v, ok := fields["interleave"]; ok {
		h.Interleave = strings.ToLower(strings.TrimSpace(v))
	}
	switch h.Interleave {
	case "bsq", "bil", "bip":
	default:
		return nil, fmt.Errorf("envi header %s: interleave = %q; must be bsq, bil or bip", name, clip(h.Interleave, 20))
	}
	h.Description = fields["description"]
	if v, ok := fields["band names"]; ok {
		for _, s := range strings.Split(v, ",") {
			h.BandNames = append(h.BandNames, strings.TrimSpace(s))
		}
	}
	h.WavelengthUnits = strings.TrimSpace(fields["wavelength units"])
	if v, ok := fields["wavelength"]; ok && strings.TrimSpace(v) != "" {
		wl, err := parseWavelengths(v, h.WavelengthUnits, h.Bands)
		if err != nil {
			return nil, fmt.Errorf("envi header %s: %w", name, err)
		}
		h.Wavelengths = wl
	}
	return h, nil
}

// parseWavelengths parses a comma-separated wavelength list and converts it to nm. Headers
// without units are taken as nm unless every value is below 50, which only micrometres give.
func parseWavelengths(v, units string, bands int) ([]float32, error) {
	parts := strings.Split(v, ",")
	if len(parts) > 0 && strings.TrimSpace(parts[len(parts)-1]) == "" {
		parts = parts[:len(parts)-1]
	}
	if len(parts) != bands {
		return nil, fmt.Errorf("wavelength lists %d values but bands = %d", len(parts), bands)
	}
	vals := make([]float64, len(parts))
	maxv := math.Inf(-1)
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("wavelength value %d (%q) is not a finite number", i, clip(strings.TrimSpace(p), 20))
		}
		vals[i] = f
		maxv = math.Max(maxv, f)
	}
	scale := 1.0
	switch u := strings.ToLower(strings.TrimSpace(units)); u {
	case "nanometers", "nanometer", "nanometres", "nanometre", "nm":
	case "micrometers", "micrometer", "micrometres", "micrometre", "microns", "micron", "um", "µm", "μm":
		scale = 1000
	case "millimeters", "millimeter", "mm":
		scale = 1e6
	case "", "unknown":
		if maxv < 50 {
			scale = 1000
		}
	default:
		return nil, fmt.Errorf("wavelength units %q cannot be converted to nm", clip(units, 30))
	}
	out := make([]float32, len(vals))
	for i, f := range vals {
		out[i] = float32(f * scale)
	}
	return out, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ENVIPaths returns the header and data file paths for path, which may name either of them.
// The data file is the header's base name with no extension or one of .img, .dat, .raw, .bsq,
// .bil, .bip (either case).
func ENVIPaths(path string) (hdr, data string, err error) {
	if strings.EqualFold(filepath.Ext(path), ".cu3s") {
		return "", "", cu3sError(path)
	}
	if strings.EqualFold(filepath.Ext(path), ".hdr") {
		hdr = path
		base := strings.TrimSuffix(path, filepath.Ext(path))
		for _, ext := range []string{".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ""} {
			for _, e := range []string{ext, strings.ToUpper(ext)} {
				if st, err := os.Stat(base + e); err == nil && st.Mode().IsRegular() {
					return hdr, base + e, nil
				}
			}
		}
		return "", "", fmt.Errorf("envi %s: no data file next to the header (looked for %s with no extension, .img, .dat, .raw, .bsq, .bil, .bip)", path, filepath.Base(base))
	}
	data = path
	for _, h := range []string{path + ".hdr", strings.TrimSuffix(path, filepath.Ext(path)) + ".hdr", strings.TrimSuffix(path, filepath.Ext(path)) + ".HDR"} {
		if _, err := os.Stat(h); err == nil {
			return h, data, nil
		}
	}
	return "", "", fmt.Errorf("envi %s: no header found (looked for %s.hdr and the same name with the extension replaced by .hdr)", path, filepath.Base(path))
}

// ReadENVI reads an ENVI cube; path may name the header or the data file.
func ReadENVI(path string) (*Cube, error) { return ReadENVIWith(path, DecodeOptions{}) }

// DecodeOptions adjust ReadENVIWith and DecodeENVIWith.
type DecodeOptions struct {
	// Into receives the values when it holds at least H·W·C of them (the cube's Data is then
	// its first H·W·C elements): a caller that reads frame after frame reuses one buffer
	// instead of faulting in fresh memory for each. A shorter Into is ignored.
	Into []float32
	// CheckFinite applies NaNPolicy block by block while the decoded values are still in
	// cache (no second pass over the cube): NaNZero replaces NaN and ±Inf with 0, anything else
	// stops at the first one with a *NonFiniteError naming the file and the value's position.
	CheckFinite bool
	NaNPolicy   NaNPolicy
}

// ReadENVIWith is ReadENVI with options.
func ReadENVIWith(path string, o DecodeOptions) (*Cube, error) {
	hdrPath, dataPath, err := ENVIPaths(path)
	if err != nil {
		return nil, err
	}
	h, err := ReadENVIHeader(hdrPath)
	if err != nil {
		return nil, err
	}
	f, size, err := openRegular(dataPath, "envi data")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeENVIWith(h, f, size, dataPath, o)
}

// decodeBlockBytes is the size of the chunk read at a time: large enough to make per-read
// costs negligible, small enough to stay in cache while it is reordered.
const decodeBlockBytes = 512 << 10

// scatterTile is the number of pixels reordered together for BSQ, so that the part of the
// output being written (scatterTile × bands values) stays in L2.
const scatterTile = 256

// DecodeENVI reads the cube described by h from r, a data source of size bytes; name is used
// in error messages. The size must equal the header offset plus the data the header implies.
func DecodeENVI(h *ENVIHeader, r io.ReaderAt, size int64, name string) (*Cube, error) {
	return DecodeENVIWith(h, r, size, name, DecodeOptions{})
}

// DecodeENVIWith is DecodeENVI with options.
func DecodeENVIWith(h *ENVIHeader, r io.ReaderAt, size int64, name string, o DecodeOptions) (*Cube, error) {
	H, W, C := h.Lines, h.Samples, h.Bands
	es := h.DataType.Size()
	if es == 0 {
		return nil, fmt.Errorf("envi data %s: unsupported data type %s", name, h.DataType)
	}
	n, ok := checkedMul(maxElements, int64(H), int64(W), int64(C))
	if !ok {
		return nil, fmt.Errorf("envi data %s: %d×%d×%d is too large", name, H, W, C)
	}
	want := h.HeaderOffset + n*int64(es)
	if size != want {
		what := "is truncated"
		if size > want {
			what = "is longer than the header implies"
		}
		return nil, fmt.Errorf("envi data %s: file %s: it has %d bytes but the header (%d lines × %d samples × %d bands of %s, header offset %d) implies %d",
			name, what, size, H, W, C, h.DataType, h.HeaderOffset, want)
	}
	if err := checkCubeSize("envi data "+name, fmt.Sprintf("a %d×%d×%d cube", H, W, C), n); err != nil {
		return nil, err
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if h.ByteOrder == 1 {
		bo = binary.BigEndian
	}
	var out []float32
	if int64(len(o.Into)) >= n {
		out = o.Into[:n]
	} else {
		out = make([]float32, n)
	}
	rowBytes := W * C * es
	rows := min(H, max(1, decodeBlockBytes/rowBytes))
	// Little-endian float32 BIP on a little-endian host needs no conversion and no staging.
	direct := h.Interleave == "bip" && h.DataType == ENVIFloat32 && bo == binary.LittleEndian && hostLittle && n > 0
	var buf []byte
	if !direct {
		buf = make([]byte, rows*rowBytes)
	}
	// BSQ and BIL are reordered to channels-last by up to decodeWorkers goroutines, each with
	// its own scratch: the reordering, not the reading, is what costs.
	var tmps [][]float32
	if h.Interleave != "bip" {
		tmps = make([][]float32, decodeWorkers())
		for i := range tmps {
			tmps[i] = make([]float32, 4*max(W, scatterTile))
		}
	}
	for r0 := 0; r0 < H; r0 += rows {
		nr := min(rows, H-r0)
		var blk []byte
		if !direct {
			blk = buf[:nr*rowBytes]
		}
		dst := out[r0*W*C : (r0+nr)*W*C]
		switch h.Interleave {
		case "bip", "bil":
			if direct {
				// the file's bytes are the values: read them straight into place
				if err := readAtFull(r, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), h.HeaderOffset+int64(r0)*int64(rowBytes)); err != nil {
					return nil, fmt.Errorf("envi data %s: reading rows %d..%d: %w", name, r0, r0+nr-1, err)
				}
				break
			}
			if err := readAtFull(r, blk, h.HeaderOffset+int64(r0)*int64(rowBytes)); err != nil {
				return nil, fmt.Errorf("envi data %s: reading rows %d..%d: %w", name, r0, r0+nr-1, err)
			}
			if h.Interleave == "bip" {
				decodeParallel(dst, blk, h.DataType, bo)
				break
			}
			// BIL: row r holds band 0 for every column, then band 1, ...
			parallelChunks(nr, tmps, func(lo, hi int, tmp []float32) {
				for rr := lo; rr < hi; rr++ {
					band := func(b int) []byte { return blk[(rr*C+b)*W*es : (rr*C+b+1)*W*es] }
					b := 0
					for ; b+4 <= C; b += 4 {
						scatterDecode4(dst[rr*W*C+b:], C, W, [4][]byte{band(b), band(b + 1), band(b + 2), band(b + 3)}, tmp, h.DataType, bo)
					}
					for ; b < C; b++ {
						scatterDecode(dst[rr*W*C+b:], C, W, band(b), tmp, h.DataType, bo)
					}
				}
			})
		case "bsq":
			plane := nr * W * es
			for b := 0; b < C; b++ {
				off := h.HeaderOffset + (int64(b)*int64(H)+int64(r0))*int64(W)*int64(es)
				if err := readAtFull(r, blk[b*plane:(b+1)*plane], off); err != nil {
					return nil, fmt.Errorf("envi data %s: reading band %d rows %d..%d: %w", name, b, r0, r0+nr-1, err)
				}
			}
			np := nr * W
			tiles := (np + scatterTile - 1) / scatterTile
			parallelChunks(tiles, tmps, func(lo, hi int, tmp []float32) {
				for ti := lo; ti < hi; ti++ {
					p0 := ti * scatterTile
					m := min(scatterTile, np-p0)
					band := func(b int) []byte { return blk[(b*np+p0)*es : (b*np+p0+m)*es] }
					b := 0
					for ; b+4 <= C; b += 4 {
						scatterDecode4(dst[p0*C+b:], C, m, [4][]byte{band(b), band(b + 1), band(b + 2), band(b + 3)}, tmp, h.DataType, bo)
					}
					for ; b < C; b++ {
						scatterDecode(dst[p0*C+b:], C, m, band(b), tmp, h.DataType, bo)
					}
				}
			})
		}
		if o.CheckFinite {
			if err := checkBlock(dst, r0*W*C, W, C, o.NaNPolicy, name); err != nil {
				return nil, err
			}
		}
	}
	return &Cube{H: H, W: W, C: C, Data: out, Wavelengths: h.Wavelengths, Source: name}, nil
}

// decodeParallel is decodeSamples split over up to decodeWorkers goroutines.
func decodeParallel(dst []float32, src []byte, t ENVIDataType, bo binary.ByteOrder) {
	k, es := decodeWorkers(), t.Size()
	if k <= 1 || len(dst) < 1<<16 {
		decodeSamples(dst, src, t, bo)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		lo, hi := i*len(dst)/k, (i+1)*len(dst)/k
		wg.Add(1)
		go func() {
			defer wg.Done()
			decodeSamples(dst[lo:hi], src[lo*es:hi*es], t, bo)
		}()
	}
	wg.Wait()
}

func decodeWorkers() int { return max(1, min(runtime.GOMAXPROCS(0), 4)) }

// parallelChunks splits [0, n) into len(tmps) contiguous chunks and runs fn on each in its
// own goroutine (inline when there is one chunk), handing each its own scratch slice.
func parallelChunks(n int, tmps [][]float32, fn func(lo, hi int, tmp []float32)) {
	k := min(len(tmps), n)
	if k <= 1 {
		fn(0, n, tmps[0])
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		lo, hi := i*n/k, (i+1)*n/k
		wg.Add(1)
		go func(tmp []float32) {
			defer wg.Done()
			fn(lo, hi, tmp)
		}(tmps[i])
	}
	wg.Wait()
}

// scatterDecode4 interleaves four bands: element k of src[j] goes to dst[k*stride+j]. Writing
// four neighbouring values per pixel touches a quarter of the cache lines that four separate
// strided passes would.
func scatterDecode4(dst []float32, stride, n int, src [4][]byte, tmp []float32, t ENVIDataType, bo binary.ByteOrder) {
	dst = dst[:(n-1)*stride+4]
	if bo == binary.LittleEndian && t == ENVIFloat32 {
		s0, s1, s2, s3 := src[0][:4*n], src[1][:4*n], src[2][:4*n], src[3][:4*n]
		for k, o := 0, 0; k < n; k, o = k+1, o+stride {
			d := dst[o : o+4 : o+4]
			d[0] = math.Float32frombits(binary.LittleEndian.Uint32(s0[4*k:]))
			d[1] = math.Float32frombits(binary.LittleEndian.Uint32(s1[4*k:]))
			d[2] = math.Float32frombits(binary.LittleEndian.Uint32(s2[4*k:]))
			d[3] = math.Float32frombits(binary.LittleEndian.Uint32(s3[4*k:]))
		}
		return
	}
	t0, t1, t2, t3 := tmp[:n], tmp[n:2*n], tmp[2*n:3*n], tmp[3*n:4*n]
	decodeSamples(t0, src[0], t, bo)
	decodeSamples(t1, src[1], t, bo)
	decodeSamples(t2, src[2], t, bo)
	decodeSamples(t3, src[3], t, bo)
	for k, o := 0, 0; k < n; k, o = k+1, o+stride {
		d := dst[o : o+4 : o+4]
		d[0], d[1], d[2], d[3] = t0[k], t1[k], t2[k], t3[k]
	}
}

// scatterDecode decodes n elements from src into dst[0], dst[stride], dst[2*stride], ...;
// tmp (at least n long) is scratch for the types without a direct path.
func scatterDecode(dst []float32, stride, n int, src []byte, tmp []float32, t ENVIDataType, bo binary.ByteOrder) {
	dst = dst[:(n-1)*stride+1]
	if bo == binary.LittleEndian {
		switch t {
		case ENVIFloat32:
			src = src[:4*n]
			for k, o := 0, 0; k < n; k, o = k+1, o+stride {
				dst[o] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*k:]))
			}
			return
		case ENVIUint16:
			src = src[:2*n]
			for k, o := 0, 0; k < n; k, o = k+1, o+stride {
				dst[o] = float32(binary.LittleEndian.Uint16(src[2*k:]))
			}
			return
		}
	}
	t2 := tmp[:n]
	decodeSamples(t2, src, t, bo)
	for k, o := 0, 0; k < n; k, o = k+1, o+stride {
		dst[o] = t2[k]
	}
}

func readAtFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// decodeSamples converts len(dst) elements of type t from src; src must hold exactly that
// many elements.
// hostLittle reports whether this machine stores numbers little-endian (then little-endian
// float32 data needs no conversion at all).
var hostLittle = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func decodeSamples(dst []float32, src []byte, t ENVIDataType, bo binary.ByteOrder) {
	little := bo == binary.LittleEndian
	switch t {
	case ENVIUint8:
		src = src[:len(dst)]
		for i, v := range src {
			dst[i] = float32(v)
		}
	case ENVIInt16:
		src = src[:2*len(dst)]
		for i := range dst {
			dst[i] = float32(int16(bo.Uint16(src[2*i:])))
		}
	case ENVIUint16:
		src = src[:2*len(dst)]
		if little {
			for i := range dst {
				dst[i] = float32(binary.LittleEndian.Uint16(src[2*i:]))
			}
			return
		}
		for i := range dst {
			dst[i] = float32(binary.BigEndian.Uint16(src[2*i:]))
		}
	case ENVIInt32:
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] = float32(int32(bo.Uint32(src[4*i:])))
		}
	case ENVIUint32:
		src = src[:4*len(dst)]
		for i := range dst {
			dst[i] = float32(bo.Uint32(src[4*i:]))
		}
	case ENVIFloat32:
		src = src[:4*len(dst)]
		if little && hostLittle && len(dst) > 0 {
			// same layout as the host's float32: a plain copy into dst's bytes
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst)), src)
			return
		}
		if little {
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
			}
			return
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.BigEndian.Uint32(src[4*i:]))
		}
	case ENVIFloat64:
		src = src[:8*len(dst)]
		for i := range dst {
			dst[i] = float32(math.Float64frombits(bo.Uint64(src[8*i:])))
		}
	case ENVIInt64:
		src = src[:8*len(dst)]
		for i := range dst {
			dst[i] = float32(int64(bo.Uint64(src[8*i:])))
		}
	case ENVIUint64:
		src = src[:8*len(dst)]
		for i := range dst {
			dst[i] = float32(bo.Uint64(src[8*i:]))
		}
	}
}

// ENVIWriteOptions selects how WriteENVI lays out a cube on disk.
type ENVIWriteOptions struct {
	// DataType is ENVIFloat32 (default) or ENVIUint16; uint16 rounds to nearest and rejects
	// values outside 0..65535.
	DataType ENVIDataType
	// Interleave is "bsq", "bil" or "bip" (default "bip", the cube's own layout).
	Interleave string
	// BigEndian writes byte order 1.
	BigEndian bool
	// Description goes into the header's description field.
	Description string
}

// WriteENVI writes c as base+".hdr" and base+".img". Each file is written under a temporary
// name and renamed into place, so a reader never sees a half-written cube.
func WriteENVI(base string, c *Cube, opts ENVIWriteOptions) error {
	if opts.DataType == 0 {
		opts.DataType = ENVIFloat32
	}
	if opts.Interleave == "" {
		opts.Interleave = "bip"
	}
	opts.Interleave = strings.ToLower(opts.Interleave)
	if opts.DataType != ENVIFloat32 && opts.DataType != ENVIUint16 {
		return fmt.Errorf("envi write %s: data type %s not supported for writing (float32 or uint16)", base, opts.DataType)
	}
	if opts.Interleave != "bsq" && opts.Interleave != "bil" && opts.Interleave != "bip" {
		return fmt.Errorf("envi write %s: interleave %q must be bsq, bil or bip", base, opts.Interleave)
	}
	if c.H <= 0 || c.W <= 0 || c.C <= 0 || len(c.Data) != c.H*c.W*c.C {
		return fmt.Errorf("envi write %s: cube is %d×%d×%d but holds %d values", base, c.H, c.W, c.C, len(c.Data))
	}
	if c.Wavelengths != nil && len(c.Wavelengths) != c.C {
		return fmt.Errorf("envi write %s: %d wavelengths for %d bands", base, len(c.Wavelengths), c.C)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if opts.BigEndian {
		bo = binary.BigEndian
	}
	es := opts.DataType.Size()
	raw := make([]byte, len(c.Data)*es)
	H, W, C := c.H, c.W, c.C
	// Walk the cube in its own order; idx is where each value goes on disk.
	for r := 0; r < H; r++ {
		for col := 0; col < W; col++ {
			px := c.Data[(r*W+col)*C : (r*W+col+1)*C]
			idx, step := (r*W+col)*C, 1
			switch opts.Interleave {
			case "bil":
				idx, step = r*C*W+col, W
			case "bsq":
				idx, step = r*W+col, H*W
			}
			for b, v := range px {
				if opts.DataType == ENVIFloat32 {
					bo.PutUint32(raw[4*idx:], math.Float32bits(v))
				} else {
					f := math.Round(float64(v))
					if !(f >= 0 && f <= 65535) {
						return fmt.Errorf("envi write %s: value %v at row %d, column %d, band %d does not fit uint16", base, v, r, col, b)
					}
					bo.PutUint16(raw[2*idx:], uint16(f))
				}
				idx += step
			}
		}
	}
	var hb strings.Builder
	hb.WriteString("ENVI\n")
	if opts.Description != "" {
		fmt.Fprintf(&hb, "description = {%s}\n", strings.ReplaceAll(opts.Description, "}", ")"))
	}
	fmt.Fprintf(&hb, "samples = %d\nlines = %d\nbands = %d\nheader offset = 0\nfile type = ENVI Standard\n", W, H, C)
	fmt.Fprintf(&hb, "data type = %d\ninterleave = %s\n", int(opts.DataType), opts.Interleave)
	bov := 0
	if opts.BigEndian {
		bov = 1
	}
	fmt.Fprintf(&hb, "byte order = %d\n", bov)
	if c.Wavelengths != nil {
		hb.WriteString("wavelength units = Nanometers\nwavelength = {")
		for i, w := range c.Wavelengths {
			if i > 0 {
				hb.WriteString(",")
			}
			if i%8 == 0 {
				hb.WriteString("\n ")
			}
			hb.WriteString(strconv.FormatFloat(float64(w), 'g', -1, 32))
		}
		hb.WriteString("}\n")
	}
	if err := writeFileAtomic(base+".img", raw); err != nil {
		return fmt.Errorf("envi write: %w", err)
	}
	if err := writeFileAtomic(base+".hdr", []byte(hb.String())); err != nil {
		return fmt.Errorf("envi write: %w", err)
	}
	return nil
}

// writeFileAtomic puts data into place at path through internal/atomicfile (temporary file
// beside it, fsync, rename, directory fsync), with the mode 0600 it has always had.
func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
