package dataset

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrMATv73 marks a MATLAB v7.3 file (HDF5 inside), which needs an HDF5 library that Go cannot
// get here.
var ErrMATv73 = errors.New("MATLAB v7.3 (HDF5) files are not supported")

// MAT v5 data element types.
const (
	miINT8       = 1
	miUINT8      = 2
	miINT16      = 3
	miUINT16     = 4
	miINT32      = 5
	miUINT32     = 6
	miSINGLE     = 7
	miDOUBLE     = 9
	miINT64      = 12
	miUINT64     = 13
	miMATRIX     = 14
	miCOMPRESSED = 15
	miUTF8       = 16
)

var matClassNames = map[int]string{
	1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double", 7: "single",
	8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32", 13: "uint32", 14: "int64", 15: "uint64",
	16: "function", 17: "opaque",
}

// MATFile holds the numeric variables of a MATLAB v5 file.
type MATFile struct {
	Path string
	// Header is the 116-byte descriptive text (trailing blanks removed).
	Header    string
	Variables []*Array
	// Skipped names variables of classes this reader does not decode (cell, struct, char,
	// sparse, object), with their class, so that a lookup can say why a name is missing.
	Skipped map[string]string
}

// ReadMAT reads a MATLAB v5 .mat file (plain or compressed elements, either byte order).
//
// The file is parsed as a stream: a numeric variable's values are converted to float32 as they
// are read (or inflated) and written straight to their row-major places in the array returned,
// so reading holds little more than that array, whatever the stored type or compression.
func ReadMAT(path string) (*MATFile, error) {
	limit, err := cubeLimit()
	if err != nil {
		return nil, fmt.Errorf("mat %s: %w", path, err)
	}
	f, size, err := openRegular(path, "mat")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A variable's stored bytes are at most twice its float32 size (float64, int64), and a
	// file may hold a cube and its ground truth.
	if maxBytes := 4*limit + 1<<20; size > maxBytes {
		return nil, fmt.Errorf("mat %s: the file has %s, more than the %s this reader accepts", path, FormatBytes(size), FormatBytes(maxBytes))
	}
	return parseMAT(bufio.NewReaderSize(f, 1<<16), size, path)
}

func mat73Error(name string) error {
	return fmt.Errorf("mat %s: %w; convert it once, e.g. to .npy with "+
		"python3 -c \"import h5py,numpy as n;f=h5py.File('%s','r');[n.save(k+'.npy',n.array(f[k]).T) for k in f if not k.startswith('#')]\" "+
		"(the .T restores MATLAB's row × column × band order), or to v5 in MATLAB/Octave with save('out.mat','-v7')",
		name, ErrMATv73, name)
}

// ParseMAT parses the bytes of a MATLAB v5 file; name is used in error messages.
func ParseMAT(b []byte, name string) (*MATFile, error) {
	return parseMAT(bufio.NewReaderSize(bytes.NewReader(b), 1<<16), int64(len(b)), name)
}

// parseMAT parses a MAT v5 file of size bytes from r.
func parseMAT(r *bufio.Reader, size int64, name string) (*MATFile, error) {
	first, _ := r.Peek(int(min(size, 520)))
	if len(first) >= 10 && bytes.HasPrefix(first, []byte("MATLAB 7.3")) {
		return nil, mat73Error(name)
	}
	if len(first) >= 520 && bytes.HasPrefix(first[512:], []byte("\x89HDF\r\n\x1a\n")) || bytes.HasPrefix(first, []byte("\x89HDF\r\n\x1a\n")) {
		return nil, mat73Error(name)
	}
	if size < 128 {
		return nil, fmt.Errorf("mat %s: %d bytes is too short for a MAT v5 header (128 bytes)", name, size)
	}
	hdr := make([]byte, 128)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("mat %s: reading the header: %w", name, err)
	}
	var bo binary.ByteOrder
	switch string(hdr[126:128]) {
	case "IM":
		bo = binary.LittleEndian
	case "MI":
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("mat %s: no MAT v5 endian indicator at bytes 126-127 (MAT v4 and other formats are not supported)", name)
	}
	if v := bo.Uint16(hdr[124:]); v != 0x0100 {
		return nil, fmt.Errorf("mat %s: header version 0x%04x; only MAT v5 (0x0100) is supported", name, v)
	}
	m := &MATFile{Path: name, Header: strings.TrimRight(string(bytes.TrimRight(hdr[:116], "\x00")), " "), Skipped: map[string]string{}}
	p := int64(128)
	var tag [8]byte
	for p < size {
		if size-p < 8 {
			rest := make([]byte, size-p)
			if _, err := io.ReadFull(r, rest); err != nil {
				return nil, fmt.Errorf("mat %s: reading at offset %d: %w", name, p, err)
			}
			if allZero(rest) {
				break
			}
			return nil, fmt.Errorf("mat %s: truncated data element tag at offset %d", name, p)
		}
		if _, err := io.ReadFull(r, tag[:]); err != nil {
			return nil, fmt.Errorf("mat %s: reading at offset %d: %w", name, p, err)
		}
		typ, n, small := matTag(tag[:], bo)
		if small {
			p += 8
			continue
		}
		if n > uint64(size-p-8) {
			return nil, fmt.Errorf("mat %s: data element at offset %d declares %d bytes but only %d remain (file truncated?)", name, p, n, size-p-8)
		}
		lr := &io.LimitedReader{R: r, N: int64(n)}
		var err error
		switch typ {
		case miCOMPRESSED:
			err = m.compressed(lr, bo, name, p)
		case miMATRIX:
			er := &elemReader{r: lr, total: n}
			err = m.matrix(er, bo, name, int(p), false)
			if err == nil && er.ioErr != nil {
				err = fmt.Errorf("mat %s: matrix at offset %d: %w", name, p, er.ioErr)
			}
		}
		if err != nil {
			return nil, err
		}
		// What the element's reader left, and the padding to 8 bytes (compressed elements
		// are not padded).
		skip := lr.N
		if typ != miCOMPRESSED {
			skip += min(int64(pad8(n)-n), size-p-8-int64(n))
		}
		if _, err := io.CopyN(io.Discard, r, skip); err != nil {
			return nil, fmt.Errorf("mat %s: reading at offset %d: %w", name, p, err)
		}
		p += 8 + int64(n) + skip - lr.N
	}
	return m, nil
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

func pad8(n uint64) uint64 { return (n + 7) &^ 7 }

// matTag decodes a data element tag; small reports the compressed 4-byte form, whose data sits
// in bytes 4..7 of the tag itself.
func matTag(b []byte, bo binary.ByteOrder) (typ int, n uint64, small bool) {
	w := bo.Uint32(b)
	if w>>16 != 0 {
		return int(w & 0xffff), uint64(w >> 16), true
	}
	return int(w), uint64(bo.Uint32(b[4:])), false
}

// maxMATNameBytes bounds the name sub-element of a matrix (MATLAB allows 63 characters).
const maxMATNameBytes = 4096

// maxMATHeadBytes bounds the array flags and dimensions sub-elements (8 bytes of flags; 4 per
// dimension).
const maxMATHeadBytes = 4096

// errShortElement reports a matrix whose stream ended before the bytes its tag declares.
var errShortElement = errors.New("element ends early")

// elemReader reads one matrix element of total bytes from a stream (the file, or a zlib
// stream), counting what it has read; ioErr keeps the first read error other than an early end.
type elemReader struct {
	r          io.Reader
	pos, total uint64
	ioErr      error
}

func (e *elemReader) left() uint64 { return e.total - e.pos }

// full reads len(b) bytes (the caller checked that they lie within the element).
func (e *elemReader) full(b []byte) error {
	k, err := io.ReadFull(e.r, b)
	e.pos += uint64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errShortElement
	}
	if err != nil && e.ioErr == nil {
		e.ioErr = err
	}
	return err
}

// skip discards n bytes, or what is left of the element when that is less.
func (e *elemReader) skip(n uint64) error {
	n = min(n, e.left())
	k, err := io.CopyN(io.Discard, e.r, int64(n))
	e.pos += uint64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errShortElement
	}
	if err != nil && e.ioErr == nil {
		e.ioErr = err
	}
	return err
}

// sub is one sub-element of a matrix as far as it has been read: its type and length, and its
// payload when the caller asked for it (small elements always carry theirs).
type sub struct {
	typ     int
	n       uint64
	small   bool
	at      uint64 // offset of the tag within the matrix
	payload []byte
}

// next reads a sub-element tag and, when read is true, its payload and padding; ok is false at
// the end of the element (fewer than 8 bytes left).
func (e *elemReader) next(bo binary.ByteOrder, read bool, maxRead uint64) (s sub, ok bool, err error) {
	if e.left() < 8 {
		return s, false, nil
	}
	s.at = e.pos
	var tag [8]byte
	if err := e.full(tag[:]); err != nil {
		return s, false, err
	}
	s.typ, s.n, s.small = matTag(tag[:], bo)
	if s.small {
		if s.n > 4 {
			return s, false, fmt.Errorf("small sub-element at byte %d declares %d bytes (at most 4)", s.at, s.n)
		}
		s.payload = append([]byte(nil), tag[4:4+s.n]...)
		return s, true, nil
	}
	if s.n > e.left() {
		return s, false, fmt.Errorf("sub-element at byte %d declares %d bytes but only %d remain", s.at, s.n, e.left())
	}
	if read {
		if s.n > maxRead {
			return s, false, fmt.Errorf("sub-element at byte %d declares %d bytes, more than the %d it may hold", s.at, s.n, maxRead)
		}
		b := make([]byte, min(pad8(s.n), e.left()))
		if err := e.full(b); err != nil {
			return s, false, err
		}
		s.payload = b[:s.n]
	}
	return s, true, nil
}

// skipPayload discards a sub-element's payload and padding (not yet read).
func (e *elemReader) skipPayload(s sub) error {
	if s.small {
		return nil
	}
	return e.skip(pad8(s.n))
}

// compressed reads a miCOMPRESSED element, which holds exactly one more element: a matrix is
// decoded while it is inflated (its dimensions are checked against MaxCubeBytes before any of
// its data is, and the element may not declare more bytes than they can need, so a
// decompression bomb fails before it is inflated); anything else is ignored.
func (m *MATFile) compressed(lr io.Reader, bo binary.ByteOrder, name string, at int64) error {
	fail := func(err error) error { return fmt.Errorf("mat %s: compressed element at offset %d: %w", name, at, err) }
	zr, err := zlib.NewReader(lr)
	if err != nil {
		return fail(fmt.Errorf("zlib: %w", err))
	}
	defer zr.Close()
	var tag [8]byte
	if _, err := io.ReadFull(zr, tag[:]); err != nil {
		return fail(fmt.Errorf("zlib: %w", err))
	}
	typ, n, small := matTag(tag[:], bo)
	if small || typ != miMATRIX {
		return nil // not inflated
	}
	er := &elemReader{r: zr, total: n}
	err = m.matrix(er, bo, name, int(at), true)
	if er.ioErr != nil {
		return fail(fmt.Errorf("zlib: %w", er.ioErr))
	}
	if errors.Is(err, errShortElement) {
		return fail(fmt.Errorf("decompressed element holds %d bytes but declares %d", er.pos+8, n+8))
	}
	if err != nil {
		return err
	}
	// Read through the end of the stream so that zlib verifies its checksum (MATLAB pads
	// nothing, but allow a few bytes).
	if _, err := io.Copy(io.Discard, io.LimitReader(zr, 64)); err != nil {
		return fail(fmt.Errorf("zlib: %w", err))
	}
	return nil
}

// matrix decodes one miMATRIX element (read from er, after its tag) into a variable, or records
// it as skipped. compressed elements are also checked against what their dimensions can need.
func (m *MATFile) matrix(er *elemReader, bo binary.ByteOrder, name string, at int, compressed bool) error {
	bad := func(err error) error {
		if errors.Is(err, errShortElement) || er.ioErr != nil {
			return err
		}
		return fmt.Errorf("mat %s: matrix at offset %d: %w", name, at, err)
	}
	flags, ok, err := er.next(bo, true, maxMATHeadBytes)
	if err != nil {
		return bad(err)
	}
	if !ok || flags.typ != miUINT32 || len(flags.payload) < 8 {
		return fmt.Errorf("mat %s: matrix at offset %d: missing array flags", name, at)
	}
	fl := bo.Uint32(flags.payload)
	class := int(fl & 0xff)
	complexFlag := fl&0x0800 != 0
	className, known := matClassNames[class]
	if !known {
		className = fmt.Sprintf("class %d", class)
	}
	numeric := class >= 6 && class <= 15
	limit, err := cubeLimit()
	if err != nil {
		return fmt.Errorf("mat %s: %w", name, err)
	}
	if compressed && !numeric && er.total > uint64(limit)+maxMATHeadBytes+maxMATNameBytes+64 {
		return fmt.Errorf("mat %s: compressed element at offset %d: compressed matrix declares %s, over the cube memory limit of %s (set %s to raise it)",
			name, at, FormatBytes(int64(min(er.total, 1<<62))), FormatBytes(limit), EnvMaxCubeBytes)
	}
	dimsSub, ok, err := er.next(bo, true, maxMATHeadBytes)
	if err != nil && !(errors.Is(err, errShortElement) || er.ioErr != nil) && !numeric {
		ok = false // a malformed header of a class this reader skips anyway
	} else if err != nil {
		return bad(err)
	}
	var nameSub sub
	nameOK := false
	if ok && dimsSub.typ == miINT32 && len(dimsSub.payload)%4 == 0 && len(dimsSub.payload) >= 8 {
		nameSub, nameOK, err = er.next(bo, true, maxMATNameBytes)
		if err != nil {
			return bad(err)
		}
	}
	if !nameOK {
		if numeric {
			return fmt.Errorf("mat %s: matrix at offset %d: missing or malformed dimensions", name, at)
		}
		m.Skipped[fmt.Sprintf("(unnamed at offset %d)", at)] = className
		return nil
	}
	dims := make([]int, len(dimsSub.payload)/4)
	dims64 := make([]int64, len(dims))
	for i := range dims {
		d := int32(bo.Uint32(dimsSub.payload[4*i:]))
		if d < 0 {
			return fmt.Errorf("mat %s: matrix at offset %d: negative dimension %d", name, at, d)
		}
		dims[i], dims64[i] = int(d), int64(d)
	}
	if nameSub.typ != miINT8 && nameSub.typ != miUTF8 && nameSub.typ != miUINT8 {
		return fmt.Errorf("mat %s: matrix at offset %d: array name has element type %d, expected miINT8", name, at, nameSub.typ)
	}
	varName := string(nameSub.payload)
	if !numeric {
		if varName == "" {
			varName = fmt.Sprintf("(unnamed at offset %d)", at)
		}
		m.Skipped[varName] = className
		return nil
	}
	desc := make([]string, len(dims))
	for i, d := range dims {
		desc[i] = fmt.Sprint(d)
	}
	count, ok := checkedMul(maxElements, dims64...)
	if !ok {
		return fmt.Errorf("mat %s: variable %q: dimensions %v are too large", name, varName, dims)
	}
	if err := checkCubeSize("mat "+name, fmt.Sprintf("variable %q (a %s %s array)", varName, strings.Join(desc, "×"), className), count); err != nil {
		return err
	}
	if compressed {
		// Header, name, and real and imaginary parts of at most 8 bytes per element.
		need := er.pos + 8 + maxMATNameBytes + 2*(8+pad8(uint64(count)*8))
		if er.total > need {
			return fmt.Errorf("mat %s: compressed element at offset %d: compressed %s %s matrix declares %d bytes, more than its dimensions can need (%d)",
				name, at, strings.Join(desc, "×"), className, er.total, need)
		}
	}
	re, ok, err := er.next(bo, false, 0)
	if err != nil {
		return bad(err)
	}
	if !ok {
		return fmt.Errorf("mat %s: variable %q (%s %v) has no data sub-element", name, varName, className, dims)
	}
	esize, kind, dtype := miType(re.typ)
	if esize == 0 {
		return fmt.Errorf("mat %s: variable %q: real part stored as element type %d, which is not numeric", name, varName, re.typ)
	}
	if re.n != uint64(count)*uint64(esize) {
		return fmt.Errorf("mat %s: variable %q: real part holds %d bytes of %s but dimensions %v need %d", name, varName, re.n, dtype, dims, count*int64(esize))
	}
	data := make([]float32, count)
	if re.small {
		decodeNumeric(data, re.payload, kind, esize, bo)
		if len(dims) > 1 {
			newColMajorWalker(dims).scatter(data, append([]float32(nil), data...))
		}
	} else {
		// Convert block by block straight into the row-major array.
		w := newColMajorWalker(dims)
		block := min(int64(decodeBlockBytes/esize), count)
		buf := make([]byte, block*int64(esize))
		tmp := make([]float32, block)
		for i := int64(0); i < count; {
			k := min(count-i, block)
			if err := er.full(buf[:k*int64(esize)]); err != nil {
				return bad(err)
			}
			decodeNumeric(tmp[:k], buf[:k*int64(esize)], kind, esize, bo)
			w.scatter(data, tmp[:k])
			i += k
		}
		if err := er.skip(pad8(re.n) - re.n); err != nil {
			return bad(err)
		}
	}
	if complexFlag {
		imag, ok, err := er.next(bo, false, 0)
		if err != nil {
			return bad(err)
		}
		if !ok {
			return fmt.Errorf("mat %s: variable %q is flagged complex but has no imaginary part", name, varName)
		}
		if err := er.skipPayload(imag); err != nil {
			return bad(err)
		}
	}
	if err := er.skip(er.left()); err != nil {
		return bad(err)
	}
	m.Variables = append(m.Variables, &Array{
		Name:    varName,
		Shape:   dims,
		DType:   dtype,
		Class:   className,
		Complex: complexFlag,
		Data:    data,
	})
	return nil
}

// miType maps a numeric element type to size, kind letter (numpy style) and dtype name.
func miType(t int) (size int, kind byte, dtype string) {
	switch t {
	case miINT8:
		return 1, 'i', "int8"
	case miUINT8:
		return 1, 'u', "uint8"
	case miINT16:
		return 2, 'i', "int16"
	case miUINT16:
		return 2, 'u', "uint16"
	case miINT32:
		return 4, 'i', "int32"
	case miUINT32:
		return 4, 'u', "uint32"
	case miSINGLE:
		return 4, 'f', "float32"
	case miDOUBLE:
		return 8, 'f', "float64"
	case miINT64:
		return 8, 'i', "int64"
	case miUINT64:
		return 8, 'u', "uint64"
	}
	return 0, 0, ""
}

// Var returns the variable called name, or an error that lists what the file holds.
func (m *MATFile) Var(name string) (*Array, error) {
	for _, v := range m.Variables {
		if v.Name == name {
			return v, nil
		}
	}
	if c, ok := m.Skipped[name]; ok {
		return nil, fmt.Errorf("mat %s: variable %q is a %s array; only numeric arrays are supported", m.Path, name, c)
	}
	return nil, fmt.Errorf("mat %s: no variable %q; the file holds %s", m.Path, name, m.describe())
}

func (m *MATFile) describe() string {
	var parts []string
	for _, v := range m.Variables {
		parts = append(parts, fmt.Sprintf("%s (%s %v)", v.Name, v.Class, v.Shape))
	}
	for k, c := range m.Skipped {
		parts = append(parts, fmt.Sprintf("%s (%s, unsupported)", k, c))
	}
	if len(parts) == 0 {
		return "no variables"
	}
	return strings.Join(parts, ", ")
}

// sceneVarPairs are the cube / ground-truth names used by public anomaly-detection scenes
// (ABU: data/map; others: hsi/hsi_gt, data/groundtruth).
var sceneVarPairs = [][2]string{{"data", "map"}, {"hsi", "hsi_gt"}, {"data", "groundtruth"}, {"data", "gt"}}

// FindSceneVars picks the cube and ground-truth arrays among vars. With explicit names they are
// used (gtName may be empty: no ground truth); otherwise the first known pair present wins.
// source names the file for errors.
func FindSceneVars(vars []*Array, cubeName, gtName, source string) (cube, gt *Array, err error) {
	byName := map[string]*Array{}
	var names []string
	for _, v := range vars {
		byName[v.Name] = v
		names = append(names, fmt.Sprintf("%s %v", v.Name, v.Shape))
	}
	if cubeName != "" {
		cube = byName[cubeName]
		if cube == nil {
			return nil, nil, fmt.Errorf("%s: no cube variable %q; the file holds %s", source, cubeName, strings.Join(names, ", "))
		}
		if gtName != "" {
			gt = byName[gtName]
			if gt == nil {
				return nil, nil, fmt.Errorf("%s: no ground-truth variable %q; the file holds %s", source, gtName, strings.Join(names, ", "))
			}
		}
		return cube, gt, nil
	}
	for _, p := range sceneVarPairs {
		if c, g := byName[p[0]], byName[p[1]]; c != nil && g != nil {
			return c, g, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: found none of the cube/ground-truth pairs data/map, hsi/hsi_gt, data/groundtruth, data/gt; the file holds %s; name the variables explicitly", source, strings.Join(names, ", "))
}
