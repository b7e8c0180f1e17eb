package serve

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/spectraclip/spectraclip/dataset"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/spectraclip/spectraclip/nodes"
)

// Limits bound what one request may carry.
type Limits struct {
	// MaxBytes is the largest cube accepted, in bytes of its values (shape × item size).
	MaxBytes int64
	// reserve, when set, is told the bytes a decoder is about to hold in all (the
	// values read, a converted copy) before it allocates them; an error (the in-flight
	// budget is spent, budget.go) stops the decoding.
	reserve func(total int64) error
}

// need asks lim's reserve for total bytes.
func (lim Limits) need(total int64) error {
	if lim.reserve == nil {
		return nil
	}
	return lim.reserve(total)
}

var (
	reDescr   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	reFortran = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	reShape   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// itemSize is the byte size of a supported dtype (numpy descr or plain name), 0 if unsupported.
func itemSize(dtype string) (int, string) {
	switch dtype {
	case "<f4", "float32", "":
		return 4, "float32"
	case "<f8", "float64":
		return 8, "float64"
	case "<u2", "uint16":
		return 2, "uint16"
	case "|u1", "<u1", "uint8":
		return 1, "uint8"
	}
	return 0, dtype
}

// checkShape checks a cube shape (H, W, C) against the limits before anything is allocated.
func checkShape(shape []int64, item int, lim Limits) (int, int, int, error) {
	if len(shape) != 3 {
		return 0, 0, 0, fmt.Errorf("cube shape %s: want 3 dimensions (height, width, bands)", fmtShape(shape))
	}
	n := int64(item)
	for _, d := range shape {
		if d <= 0 {
			return 0, 0, 0, fmt.Errorf("cube shape %s: every dimension must be > 0", fmtShape(shape))
		}
		if d > 1<<31 || n > math.MaxInt64/d {
			return 0, 0, 0, fmt.Errorf("cube shape %s is larger than the maximum of %d bytes (--max-cube-mb)", fmtShape(shape), lim.MaxBytes)
		}
		n *= d
	}
	if lim.MaxBytes > 0 && n > lim.MaxBytes {
		return 0, 0, 0, fmt.Errorf("cube shape %s (%d bytes) is larger than the maximum of %d bytes (--max-cube-mb)", fmtShape(shape), n, lim.MaxBytes)
	}
	return int(shape[0]), int(shape[1]), int(shape[2]), nil
}

// checkSize says whether got bytes fill a cube of h×w×c values of item bytes (dtype name).
func checkSize(h, w, c, item int, name string, got int) error {
	if want := h * w * c * item; got != want {
		return fmt.Errorf("truncated or oversized cube: shape (%d, %d, %d) of %s needs %d bytes, got %d", h, w, c, name, want, got)
	}
	return nil
}

// decodeValues converts raw little-endian values of dtype to float32.
func decodeValues(raw []byte, dtype string) ([]float32, error) {
	item, name := itemSize(dtype)
	if item == 0 {
		return nil, fmt.Errorf("dtype %q: supported are float32 (<f4), float64 (<f8), uint16 (<u2), uint8 (|u1)", dtype)
	}
	if len(raw)%item != 0 {
		return nil, fmt.Errorf("%d data bytes are not a whole number of %s values", len(raw), name)
	}
	if name == "float32" {
		if v := aliasFloat32s(raw); v != nil {
			return v, nil
		}
	}
	out := make([]float32, len(raw)/item)
	switch name {
	case "float32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "float64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case "uint16":
		for i := range out {
			out[i] = float32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case "uint8":
		for i := range out {
			out[i] = float32(raw[i])
		}
	}
	return out, nil
}

// FrameFromRaw builds a frame from a shape, a dtype and raw little-endian bytes, checking
// the size against the limits and that the bytes fill the shape exactly.
func FrameFromRaw(shape []int64, dtype string, raw []byte, lim Limits) (*Frame, error) {
	item, name := itemSize(dtype)
	if item == 0 {
		return nil, fmt.Errorf("dtype %q: supported are float32 (<f4), float64 (<f8), uint16 (<u2), uint8 (|u1)", dtype)
	}
	h, w, c, err := checkShape(shape, item, lim)
	if err != nil {
		return nil, err
	}
	if err := checkSize(h, w, c, item, name, len(raw)); err != nil {
		return nil, err
	}
	if name != "float32" || aliasFloat32s(raw) == nil {
		// converted into a float32 copy
		if err := lim.need(int64(len(raw)) + 4*int64(h)*int64(w)*int64(c)); err != nil {
			return nil, err
		}
	}
	v, err := decodeValues(raw, dtype)
	if err != nil {
		return nil, err
	}
	return &Frame{H: h, W: w, C: c, Data: v}, nil
}

// ReadNPY reads a (H, W, C) .npy array (format 1.x/2.x, little endian, C order) from r,
// refusing shapes over the limits before reading their data.
func ReadNPY(r io.Reader, lim Limits) (*Frame, error) {
	return readNPY(r, lim, 3)
}

// ReadMapNPY reads an (H, W) .npy map, as /v1/score?map=npy answers; the frame has C = 1.
func ReadMapNPY(r io.Reader, lim Limits) (*Frame, error) {
	return readNPY(r, lim, 2)
}

func readNPY(r io.Reader, lim Limits, ndim int) (*Frame, error) {
	var magic [8]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf(".npy body: %w", err)
	}
	if string(magic[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf(".npy body: no \\x93NUMPY magic (is the body a .npy file?)")
	}
	var hlen int
	switch magic[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf(".npy header: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf(".npy header: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return nil, fmt.Errorf(".npy format version %d.%d is not supported", magic[6], magic[7])
	}
	if hlen > 1<<16 {
		return nil, fmt.Errorf(".npy header of %d bytes is too long", hlen)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf(".npy header: %w", err)
	}
	h := string(hdr)
	md, mf, ms := reDescr.FindStringSubmatch(h), reFortran.FindStringSubmatch(h), reShape.FindStringSubmatch(h)
	if md == nil || mf == nil || ms == nil {
		return nil, fmt.Errorf(".npy header %q: want descr, fortran_order and shape", strings.TrimSpace(h))
	}
	if mf[1] == "True" {
		return nil, fmt.Errorf(".npy: Fortran-order arrays are not supported (save with numpy.ascontiguousarray)")
	}
	var shape []int64
	for _, p := range strings.Split(ms[1], ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		d, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf(".npy shape (%s): %v", ms[1], err)
		}
		shape = append(shape, d)
	}
	item, name := itemSize(md[1])
	if item == 0 {
		return nil, fmt.Errorf(".npy dtype %q: supported are <f4, <f8, <u2, |u1", md[1])
	}
	if ndim == 2 && len(shape) == 2 {
		shape = append(shape, 1)
	}
	hh, ww, cc, err := checkShape(shape, item, lim)
	if err != nil {
		return nil, fmt.Errorf(".npy: %w", err)
	}
	want := hh * ww * cc * item
	conv := int64(0)
	if name != "float32" {
		conv = 4 * int64(hh) * int64(ww) * int64(cc) // the float32 copy decodeValues makes
	}
	if err := lim.need(int64(want) + conv); err != nil {
		return nil, err
	}
	// the bytes go into a pooled buffer (a cube is megabytes: no fresh zeroed allocation
	// per request); float32 data is then used in place and the buffer goes back to the
	// pool when the frame has been scored (Frame.release)
	bp := getBuf(want)
	raw := *bp
	// read in chunks and look for NaN/Inf in each while it is in the cache (a second pass
	// over a cold 16 MB cube costs milliseconds of memory bandwidth)
	scan := name == "float32" && littleEndian && uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%4 == 0
	bad := -1
	n := 0
	for n < want {
		end := min(n+readChunk, want)
		m, err := io.ReadFull(r, raw[n:end])
		if scan && bad < 0 && m > 0 {
			if i := firstUnusable(aliasFloat32s(raw[n : n+m-m%4])); i >= 0 {
				bad = n/4 + i
			}
		}
		n += m
		if err != nil {
			putBuf(bp)
			return nil, fmt.Errorf(".npy: truncated cube: shape (%d, %d, %d) of %s needs %d data bytes, got %d", hh, ww, cc, name, want, n)
		}
	}
	var one [1]byte
	if extra, _ := io.ReadFull(r, one[:]); extra > 0 {
		putBuf(bp)
		return nil, fmt.Errorf(".npy: more data than shape (%d, %d, %d) of %s holds (%d bytes)", hh, ww, cc, name, want)
	}
	v, err := decodeValues(raw, md[1])
	if err != nil {
		putBuf(bp)
		return nil, err
	}
	f := &Frame{H: hh, W: ww, C: cc, Data: v}
	if len(v) > 0 && len(raw) > 0 && unsafe.Pointer(&v[0]) == unsafe.Pointer(&raw[0]) {
		f.buf = bp // Data is the buffer itself
		f.scanned, f.nonFinite = scan, bad
	} else {
		putBuf(bp) // Data is a converted copy
	}
	return f, nil
}

// readChunk is how many bytes of a cube are read (and checked) at a time: well inside
// the L2 cache.
const readChunk = 256 << 10

// bufPool holds request buffers for reuse.
var bufPool sync.Pool

// getBuf returns a pooled buffer of n bytes (its contents are not cleared).
func getBuf(n int) *[]byte {
	if p, _ := bufPool.Get().(*[]byte); p != nil {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
		// too small: dropped, the larger one replaces it when it comes back
	}
	b := make([]byte, n)
	return &b
}

func putBuf(p *[]byte) { bufPool.Put(p) }

// float32Bits views v's values as their IEEE-754 bits (no copy).
func float32Bits(v []float32) []uint32 {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&v[0])), len(v))
}

func fmtShape(shape []int64) string {
	p := make([]string, len(shape))
	for i, d := range shape {
		p[i] = strconv.FormatInt(d, 10)
	}
	return "(" + strings.Join(p, ", ") + ")"
}

// WriteNPYFile writes an (h, w) float32 map as .npy, atomically.
func WriteNPYFile(path string, v []float32, h, w int) error {
	if h*w != len(v) {
		return fmt.Errorf("%s: %d values do not fill a %d×%d map", path, len(v), h, w)
	}
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, v, h, w); err != nil {
		return err
	}
	if err := nodes.WriteFileAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// littleEndian says whether this machine stores numbers little-endian.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// aliasFloat32s views little-endian float32 bytes as []float32 without a copy where the
// machine is little-endian and the bytes are aligned; nil otherwise. The bytes must not
// be changed afterwards (they are a request's own).
func aliasFloat32s(raw []byte) []float32 {
	if !littleEndian || len(raw) < 4 || uintptr(unsafe.Pointer(&raw[0]))%4 != 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4)
}
