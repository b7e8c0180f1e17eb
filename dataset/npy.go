package dataset

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"codeberg.org/sbinet/npyio"
)

// ReadNPY reads a NumPy .npy file (C or Fortran order) into a row-major Array. The data is
// read and converted in blocks, so the file's bytes are never held twice.
func ReadNPY(path string) (*Array, error) {
	f, size, err := openRegular(path, "npy")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The fixed prefix says how long the header is.
	pre := make([]byte, min(size, 12))
	if err := readAtFull(f, pre, 0); err != nil {
		return nil, fmt.Errorf("npy %s: %w", path, err)
	}
	hlen := int64(len(pre))
	if len(pre) >= 10 && pre[6] == 1 {
		hlen = 10 + int64(binary.LittleEndian.Uint16(pre[8:]))
	} else if len(pre) == 12 && (pre[6] == 2 || pre[6] == 3) {
		hlen = 12 + int64(binary.LittleEndian.Uint32(pre[8:]))
	}
	if hlen > size {
		hlen = size
	}
	head := make([]byte, hlen)
	if err := readAtFull(f, head, 0); err != nil {
		return nil, fmt.Errorf("npy %s: %w", path, err)
	}
	a, dataOff, n, es, kind, bo, fortran, err := npyLayout(head, size, path)
	if err != nil {
		return nil, err
	}
	if err := readNPYData(a, f, dataOff, n, es, kind, bo, fortran, path); err != nil {
		return nil, err
	}
	return a, nil
}

// readNPYData reads and converts the n elements at offset dataOff of r into a.Data.
func readNPYData(a *Array, r io.ReaderAt, dataOff int, n int64, es int, kind byte, bo binary.ByteOrder, fortran bool, path string) error {
	buf := make([]byte, min(int64(decodeBlockBytes)/int64(es)*int64(es), n*int64(es)))
	put := newBlockSink(a, len(buf)/es, fortran)
	for i := int64(0); i < n; {
		m := min(n-i, int64(len(buf)/es))
		blk := buf[:m*int64(es)]
		if err := readAtFull(r, blk, int64(dataOff)+i*int64(es)); err != nil {
			return fmt.Errorf("npy %s: reading data: %w", path, err)
		}
		put(i, m, blk, kind, es, bo)
		i += m
	}
	return nil
}

// newBlockSink returns the function that decodes block m elements starting at element i into
// a.Data: in place for C order, through a small buffer and a colMajorWalker for Fortran order,
// so that the values are converted once, into the final array.
func newBlockSink(a *Array, block int, fortran bool) func(i, m int64, blk []byte, kind byte, es int, bo binary.ByteOrder) {
	if !fortran || len(a.Shape) <= 1 {
		return func(i, m int64, blk []byte, kind byte, es int, bo binary.ByteOrder) {
			decodeNumeric(a.Data[i:i+m], blk, kind, es, bo)
		}
	}
	tmp := make([]float32, block)
	w := newColMajorWalker(a.Shape)
	return func(i, m int64, blk []byte, kind byte, es int, bo binary.ByteOrder) {
		decodeNumeric(tmp[:m], blk, kind, es, bo)
		w.scatter(a.Data, tmp[:m])
	}
}

// DecodeNPY decodes the bytes of a .npy file; name is used in error messages.
//
// The header is parsed by npyio after checking the structure npyio's parser relies on; the data
// is converted here in bulk, because npyio decodes element by element (about an order of
// magnitude slower for cubes) and only handles Fortran order for 2-D reads into mat.Dense.
func DecodeNPY(b []byte, name string) (*Array, error) {
	a, dataOff, n, es, kind, bo, fortran, err := npyLayout(b, int64(len(b)), name)
	if err != nil {
		return nil, err
	}
	decodeNumeric(a.Data, b[dataOff:dataOff+int(n)*es], kind, es, bo)
	if fortran {
		a.Data = colMajorToRowMajor(a.Data, a.Shape)
	}
	return a, nil
}

// npyLayout parses the header at the start of head (a prefix of a file of size bytes) and
// returns the array with its data allocated but not filled, after checking that the file size
// matches the shape and dtype.
func npyLayout(head []byte, size int64, name string) (a *Array, dataOff int, n int64, es int, kind byte, bo binary.ByteOrder, fortran bool, err error) {
	hdr, dataOff, err := npyHeader(head, name)
	if err != nil {
		return nil, 0, 0, 0, 0, nil, false, err
	}
	typ := strings.Trim(strings.TrimSpace(hdr.Descr.Type), "'\"")
	es, kind, bo, err = npyDType(typ)
	if err != nil {
		return nil, 0, 0, 0, 0, nil, false, fmt.Errorf("npy %s: %w", name, err)
	}
	shape := hdr.Descr.Shape
	dims := make([]int64, len(shape))
	for i, d := range shape {
		if d < 0 {
			return nil, 0, 0, 0, 0, nil, false, fmt.Errorf("npy %s: negative dimension %d in shape %v", name, d, shape)
		}
		dims[i] = int64(d)
	}
	n, ok := checkedMul(maxElements, dims...)
	if !ok {
		return nil, 0, 0, 0, 0, nil, false, fmt.Errorf("npy %s: shape %v is too large", name, shape)
	}
	if size >= 0 {
		if have, want := size-int64(dataOff), n*int64(es); have != want {
			what := "is truncated"
			if have > want {
				what = "has trailing bytes"
			}
			return nil, 0, 0, 0, 0, nil, false, fmt.Errorf("npy %s: data %s: %d bytes after the header but shape %v of %s needs %d", name, what, have, shape, typ, want)
		}
	}
	if err := checkCubeSize("npy "+name, fmt.Sprintf("shape %v of %s", shape, typ), n); err != nil {
		return nil, 0, 0, 0, 0, nil, false, err
	}
	a = &Array{Shape: append([]int(nil), shape...), DType: dtypeName(kind, es), Data: make([]float32, n)}
	return a, dataOff, n, es, kind, bo, hdr.Descr.Fortran, nil
}

// npyHeader checks the framing npyio assumes (its parser indexes without bounds checks) and
// then lets npyio parse the header dictionary.
func npyHeader(b []byte, name string) (hdr npyio.Header, dataOff int, err error) {
	if len(b) < 10 || !bytes.Equal(b[:6], npyio.Magic[:]) {
		return hdr, 0, fmt.Errorf("npy %s: not a NumPy .npy file (magic \\x93NUMPY missing)", name)
	}
	var hl int
	switch b[6] {
	case 1:
		hl, dataOff = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return hdr, 0, fmt.Errorf("npy %s: truncated header", name)
		}
		hl, dataOff = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return hdr, 0, fmt.Errorf("npy %s: unsupported format version %d.%d", name, b[6], b[7])
	}
	if hl < 0 || hl > len(b)-dataOff {
		return hdr, 0, fmt.Errorf("npy %s: header length %d runs past the end of the file (%d bytes)", name, hl, len(b))
	}
	text := b[dataOff : dataOff+hl]
	dataOff += hl
	nl := bytes.LastIndexByte(text, '\n')
	if nl < 0 {
		return hdr, 0, fmt.Errorf("npy %s: header does not end with a newline", name)
	}
	text = text[:nl]
	iDescr := bytes.Index(text, []byte("'descr': "))
	iOrder := bytes.Index(text, []byte("'fortran_order': "))
	iShape := bytes.Index(text, []byte("'shape': "))
	iEnd := bytes.IndexByte(text, '}')
	if iDescr < 0 || iOrder < 0 || iShape < 0 || iEnd < 0 ||
		iDescr+9 > iOrder-2 || iOrder+17 > iShape-2 || iShape+9+2 > iEnd-2 {
		return hdr, 0, fmt.Errorf("npy %s: header %q is not a dictionary with 'descr', 'fortran_order' and 'shape' in that order", name, clip(string(text), 80))
	}
	hb := append([]byte(nil), b[:dataOff]...)
	if hb[6] == 3 {
		// Version 3 differs from 2 only in allowing UTF-8 field names.
		hb[6] = 2
	}
	var r *npyio.Reader
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("npy %s: malformed header: %v", name, p)
			}
		}()
		r, err = npyio.NewReader(bytes.NewReader(hb))
	}()
	if err != nil {
		return hdr, 0, fmt.Errorf("npy %s: %w", name, err)
	}
	return r.Header, dataOff, nil
}

// npyDType decodes a numpy type string such as "<f4" into element size, kind and byte order.
func npyDType(typ string) (size int, kind byte, bo binary.ByteOrder, err error) {
	if len(typ) < 2 {
		return 0, 0, nil, fmt.Errorf("unsupported dtype %q", typ)
	}
	bo = binary.LittleEndian
	switch typ[0] {
	case '<', '|', '=':
		typ = typ[1:]
	case '>':
		bo = binary.BigEndian
		typ = typ[1:]
	}
	if len(typ) < 2 {
		return 0, 0, nil, fmt.Errorf("unsupported dtype %q", typ)
	}
	kind = typ[0]
	size, e := strconv.Atoi(typ[1:])
	if e != nil {
		return 0, 0, nil, fmt.Errorf("unsupported dtype %q", typ)
	}
	ok := false
	switch kind {
	case 'b':
		ok = size == 1
	case 'i', 'u':
		ok = size == 1 || size == 2 || size == 4 || size == 8
	case 'f':
		ok = size == 4 || size == 8
	}
	if !ok {
		return 0, 0, nil, fmt.Errorf("unsupported dtype %q (supported: bool, int8..int64, uint8..uint64, float32, float64)", typ)
	}
	return size, kind, bo, nil
}

// dtypeName names a numpy kind and size the way Array.DType does.
func dtypeName(kind byte, size int) string {
	switch kind {
	case 'b':
		return "bool"
	case 'f':
		return fmt.Sprintf("float%d", 8*size)
	case 'u':
		return fmt.Sprintf("uint%d", 8*size)
	}
	return fmt.Sprintf("int%d", 8*size)
}

// decodeNumeric converts raw elements of the given kind ('b', 'i', 'u', 'f') and size into
// dst and returns the dtype name.
func decodeNumeric(dst []float32, src []byte, kind byte, size int, bo binary.ByteOrder) string {
	switch {
	case kind == 'b':
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			}
		}
		return "bool"
	case kind == 'i' && size == 1:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
		return "int8"
	case kind == 'u' && size == 1:
		decodeSamples(dst, src, ENVIUint8, bo)
		return "uint8"
	case kind == 'i' && size == 2:
		decodeSamples(dst, src, ENVIInt16, bo)
		return "int16"
	case kind == 'u' && size == 2:
		decodeSamples(dst, src, ENVIUint16, bo)
		return "uint16"
	case kind == 'i' && size == 4:
		decodeSamples(dst, src, ENVIInt32, bo)
		return "int32"
	case kind == 'u' && size == 4:
		decodeSamples(dst, src, ENVIUint32, bo)
		return "uint32"
	case kind == 'i' && size == 8:
		decodeSamples(dst, src, ENVIInt64, bo)
		return "int64"
	case kind == 'u' && size == 8:
		decodeSamples(dst, src, ENVIUint64, bo)
		return "uint64"
	case kind == 'f' && size == 4:
		decodeSamples(dst, src, ENVIFloat32, bo)
		return "float32"
	default:
		decodeSamples(dst, src, ENVIFloat64, bo)
		return "float64"
	}
}

// ReadNPZ reads every array of a .npz archive (as written by numpy.savez or savez_compressed),
// keyed by the name given to numpy (without the ".npy" suffix). Each member's .npy header is
// read first and its declared size checked against MaxCubeBytes; the data is then read through
// a limit of exactly that size, so a decompression bomb fails before it is inflated.
func ReadNPZ(path string) (map[string]*Array, error) {
	f, size, err := openRegular(path, "npz")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("npz %s: not a zip archive as numpy.savez writes: %w", path, err)
	}
	members := append([]*zip.File(nil), zr.File...)
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	out := make(map[string]*Array, len(members))
	for _, zf := range members {
		if strings.HasSuffix(zf.Name, "/") {
			continue
		}
		name := strings.TrimSuffix(zf.Name, ".npy")
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("npz %s: member %q appears twice", path, zf.Name)
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("npz %s: member %q: %w", path, zf.Name, err)
		}
		a, err := decodeNPYStream(rc, path+":"+zf.Name)
		rc.Close()
		if err != nil {
			return nil, err
		}
		a.Name = name
		out[name] = a
	}
	return out, nil
}

// maxNPYHeaderBytes bounds a .npy header (numpy writes a few hundred bytes).
const maxNPYHeaderBytes = 1 << 20

// decodeNPYStream reads one .npy from a stream (a zip member): the header, a size check, then
// exactly the declared data in blocks, and a check that nothing follows it.
func decodeNPYStream(r io.Reader, name string) (*Array, error) {
	pre := make([]byte, 12)
	k, err := io.ReadFull(r, pre)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("npy %s: %w", name, err)
	}
	pre = pre[:k]
	hlen := int64(len(pre))
	if len(pre) >= 10 && pre[6] == 1 {
		hlen = 10 + int64(binary.LittleEndian.Uint16(pre[8:]))
	} else if len(pre) == 12 && (pre[6] == 2 || pre[6] == 3) {
		hlen = 12 + int64(binary.LittleEndian.Uint32(pre[8:]))
	}
	if hlen > maxNPYHeaderBytes {
		return nil, fmt.Errorf("npy %s: header declares %d bytes, more than %d", name, hlen, maxNPYHeaderBytes)
	}
	head := append(pre, make([]byte, max(0, hlen-int64(len(pre))))...)
	if k, err := io.ReadFull(r, head[len(pre):]); err != nil {
		head = head[:len(pre)+k]
	}
	a, dataOff, n, es, kind, bo, fortran, err := npyLayout(head, -1, name)
	if err != nil {
		return nil, err
	}
	head = head[dataOff:] // data bytes read with the header (none for a well-formed file)
	buf := make([]byte, min(int64(decodeBlockBytes)/int64(es)*int64(es), n*int64(es)))
	put := newBlockSink(a, len(buf)/es, fortran)
	for i := int64(0); i < n; {
		m := min(n-i, int64(len(buf)/es))
		blk := buf[:m*int64(es)]
		c := copy(blk, head)
		head = head[c:]
		if got, err := io.ReadFull(r, blk[c:]); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, fmt.Errorf("npy %s: data is truncated: %d bytes after the header but shape %v needs %d", name, i*int64(es)+int64(c+got), a.Shape, n*int64(es))
			}
			return nil, fmt.Errorf("npy %s: reading data: %w", name, err)
		}
		put(i, m, blk, kind, es, bo)
		i += m
	}
	var one [1]byte
	if len(head) > 0 {
		return nil, fmt.Errorf("npy %s: data has trailing bytes after the %d that shape %v needs", name, n*int64(es), a.Shape)
	}
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		return nil, fmt.Errorf("npy %s: data has trailing bytes after the %d that shape %v needs", name, n*int64(es), a.Shape)
	}
	return a, nil
}

// isFinite32 reports whether v is neither NaN nor ±Inf.
func isFinite32(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// EncodeNPY writes a float32 or uint8 array of the given shape as .npy (format 1.0, little
// endian, C order); the shape must hold exactly the values given. It makes one Write call.
func EncodeNPY(w io.Writer, v any, shape ...int) error {
	b, err := AppendNPY(nil, v, shape...)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendNPY appends the .npy encoding of v (as EncodeNPY writes it) to dst and returns the
// extended slice: a writer of many maps reuses one buffer. The values are copied in bulk (a
// plain copy of the slice's bytes on a little-endian machine), not element by element.
func AppendNPY(dst []byte, v any, shape ...int) ([]byte, error) {
	var descr string
	var n int
	switch x := v.(type) {
	case []float32:
		descr, n = "<f4", len(x)
	case []uint8:
		descr, n = "|u1", len(x)
	default:
		return dst, fmt.Errorf("cannot write %T as .npy", v)
	}
	size := 1
	for _, d := range shape {
		size *= d
	}
	if size != n {
		return dst, fmt.Errorf("npy: %d values do not fill the shape %v", n, shape)
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	pad := 64 - (10+len(hdr)+1)%64
	if pad == 64 {
		pad = 0
	}
	hdr += strings.Repeat(" ", pad) + "\n"
	dst = append(dst, "\x93NUMPY\x01\x00"...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(hdr)))
	dst = append(dst, hdr...)
	switch x := v.(type) {
	case []float32:
		if hostLittle {
			if len(x) > 0 {
				dst = append(dst, unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))...)
			}
			break
		}
		dst = slices.Grow(dst, 4*len(x))
		for _, f := range x {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
		}
	case []uint8:
		dst = append(dst, x...)
	}
	return dst, nil
}
