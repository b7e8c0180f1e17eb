package dataset

import (
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
func ReadMAT(path string) (*MATFile, error) {
	limit, err := cubeLimit()
	if err != nil {
		return nil, fmt.Errorf("mat %s: %w", path, err)
	}
	// A variable's stored bytes are at most twice its float32 size (float64, int64), and a
	// file may hold a cube and its ground truth.
	b, err := ReadRegularFile(path, "mat", 4*limit+1<<20)
	if err != nil {
		return nil, err
	}
	return ParseMAT(b, path)
}

func mat73Error(name string) error {
	return fmt.Errorf("mat %s: %w; convert it once, e.g. to .npy with "+
		"python3 -c \"import h5py,numpy as n;f=h5py.File('%s','r');[n.save(k+'.npy',n.array(f[k]).T) for k in f if not k.startswith('#')]\" "+
		"(the .T restores MATLAB's row × column × band order), or to v5 in MATLAB/Octave with save('out.mat','-v7')",
		name, ErrMATv73, name)
}

// ParseMAT parses the bytes of a MATLAB v5 file; name is used in error messages.
func ParseMAT(b []byte, name string) (*MATFile, error) {
	if len(b) >= 10 && bytes.HasPrefix(b, []byte("MATLAB 7.3")) {
		return nil, mat73Error(name)
	}
	if len(b) >= 520 && bytes.HasPrefix(b[512:], []byte("\x89HDF\r\n\x1a\n")) || bytes.HasPrefix(b, []byte("\x89HDF\r\n\x1a\n")) {
		return nil, mat73Error(name)
	}
	if len(b) < 128 {
		return nil, fmt.Errorf("mat %s: %d bytes is too short for a MAT v5 header (128 bytes)", name, len(b))
	}
	var bo binary.ByteOrder
	switch string(b[126:128]) {
	case "IM":
		bo = binary.LittleEndian
	case "MI":
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("mat %s: no MAT v5 endian indicator at bytes 126-127 (MAT v4 and other formats are not supported)", name)
	}
	if v := bo.Uint16(b[124:]); v != 0x0100 {
		return nil, fmt.Errorf("mat %s: header version 0x%04x; only MAT v5 (0x0100) is supported", name, v)
	}
	m := &MATFile{Path: name, Header: strings.TrimRight(string(bytes.TrimRight(b[:116], "\x00")), " "), Skipped: map[string]string{}}
	p := 128
	for p < len(b) {
		if len(b)-p < 8 {
			if allZero(b[p:]) {
				break
			}
			return nil, fmt.Errorf("mat %s: truncated data element tag at offset %d", name, p)
		}
		typ, n, small := matTag(b[p:], bo)
		if small {
			p += 8
			continue
		}
		if n > uint64(len(b)-p-8) {
			return nil, fmt.Errorf("mat %s: data element at offset %d declares %d bytes but only %d remain (file truncated?)", name, p, n, len(b)-p-8)
		}
		payload := b[p+8 : p+8+int(n)]
		switch typ {
		case miCOMPRESSED:
			inner, err := inflateElement(payload, bo)
			if err != nil {
				return nil, fmt.Errorf("mat %s: compressed element at offset %d: %w", name, p, err)
			}
			if err := m.topElement(inner, bo, name, p); err != nil {
				return nil, err
			}
			p += 8 + int(n)
		case miMATRIX:
			if err := m.matrix(payload, bo, name, p); err != nil {
				return nil, err
			}
			p += 8 + int(pad8(n))
		default:
			p += 8 + int(pad8(n))
		}
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

// maxMATNameBytes bounds the name sub-element of a compressed matrix (MATLAB allows 63
// characters).
const maxMATNameBytes = 4096

// inflateElement decompresses a miCOMPRESSED payload, which holds exactly one more element.
// For a numeric matrix the dimensions are read first and checked against MaxCubeBytes, and the
// element's declared length must not exceed what those dimensions can need; the stream is then
// read through a limit of that length, so a decompression bomb fails before it is inflated.
// Elements of other kinds (cells, structs, chars) are bounded by MaxCubeBytes.
func inflateElement(payload []byte, bo binary.ByteOrder) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("zlib: %w", err)
	}
	defer zr.Close()
	var tag [8]byte
	if _, err := io.ReadFull(zr, tag[:]); err != nil {
		return nil, fmt.Errorf("zlib: %w", err)
	}
	typ, n, small := matTag(tag[:], bo)
	if small || typ != miMATRIX {
		return tag[:], nil // ignored by topElement: not inflated
	}
	limit, err := cubeLimit()
	if err != nil {
		return nil, err
	}
	// Array flags (16 bytes) and the dimensions tag (8).
	head := make([]byte, 24)
	if n < 24 {
		head = head[:n]
	}
	if _, err := io.ReadFull(zr, head); err != nil {
		return nil, fmt.Errorf("zlib: reading the matrix header: %w", err)
	}
	bound := limit // non-numeric classes and malformed headers (matrix reports those)
	if len(head) == 24 {
		class := int(bo.Uint32(head[8:]) & 0xff)
		dt, dn, dsmall := matTag(head[16:], bo)
		var dims []byte
		if dsmall {
			dims = head[20 : 20+min(int(dn), 4)]
		} else if dt == miINT32 && dn%4 == 0 && dn <= 4*64 && dn <= n-24 {
			dims = make([]byte, pad8(dn))
			if _, err := io.ReadFull(zr, dims); err != nil {
				return nil, fmt.Errorf("zlib: reading the dimensions: %w", err)
			}
			head = append(head, dims...)
			dims = dims[:dn]
		}
		if class >= 6 && class <= 15 && len(dims) >= 4 {
			count, desc := int64(1), make([]string, 0, len(dims)/4)
			for i := 0; i+4 <= len(dims); i += 4 {
				d := int64(int32(bo.Uint32(dims[i:])))
				desc = append(desc, fmt.Sprint(d))
				if d < 0 || (d > 0 && count > maxElements/d) {
					count = -1
					break
				}
				count *= d
			}
			className := matClassNames[class]
			if count >= 0 {
				if err := checkCubeSize("", fmt.Sprintf("a %s %s array", strings.Join(desc, "×"), className), count); err != nil {
					return nil, err
				}
				// Header, name, and real and imaginary parts of at most 8 bytes per element.
				need := uint64(len(head)) + 8 + maxMATNameBytes + 2*(8+pad8(uint64(count)*8))
				if n > need {
					return nil, fmt.Errorf("compressed %s %s matrix declares %d bytes, more than its dimensions can need (%d)", strings.Join(desc, "×"), className, n, need)
				}
			}
		}
	}
	if n > uint64(bound)+uint64(len(head))+maxMATNameBytes+64 {
		return nil, fmt.Errorf("compressed matrix declares %s, over the cube memory limit of %s (set %s to raise it)", FormatBytes(int64(min(n, 1<<62))), FormatBytes(limit), EnvMaxCubeBytes)
	}
	// Read through the end of the stream so that zlib verifies its checksum, but never more
	// than the declared element plus padding; the buffer grows with the data that arrives.
	rest, err := io.ReadAll(io.LimitReader(zr, int64(n)-int64(len(head))+64))
	if err != nil {
		return nil, fmt.Errorf("zlib: %w", err)
	}
	if uint64(len(head)+len(rest)) < n {
		return nil, fmt.Errorf("decompressed element holds %d bytes but declares %d", len(head)+len(rest), n)
	}
	out := make([]byte, 0, 8+len(head)+len(rest))
	return append(append(append(out, tag[:]...), head...), rest...), nil
}

// topElement handles the element found inside a miCOMPRESSED block.
func (m *MATFile) topElement(b []byte, bo binary.ByteOrder, name string, at int) error {
	typ, n, small := matTag(b, bo)
	if small || typ != miMATRIX {
		return nil
	}
	if n > uint64(len(b)-8) {
		return fmt.Errorf("mat %s: compressed element at offset %d: matrix declares %d bytes but holds %d", name, at, n, len(b)-8)
	}
	return m.matrix(b[8:8+int(n)], bo, name, at)
}

// subElements splits a miMATRIX payload into its sub-elements.
func subElements(b []byte, bo binary.ByteOrder) (types []int, payloads [][]byte, err error) {
	q := 0
	for q < len(b) {
		if len(b)-q < 8 {
			if allZero(b[q:]) {
				break
			}
			return nil, nil, fmt.Errorf("truncated sub-element tag at byte %d", q)
		}
		typ, n, small := matTag(b[q:], bo)
		if small {
			if n > 4 {
				return nil, nil, fmt.Errorf("small sub-element at byte %d declares %d bytes (at most 4)", q, n)
			}
			types = append(types, typ)
			payloads = append(payloads, b[q+4:q+4+int(n)])
			q += 8
			continue
		}
		if n > uint64(len(b)-q-8) {
			return nil, nil, fmt.Errorf("sub-element at byte %d declares %d bytes but only %d remain", q, n, len(b)-q-8)
		}
		types = append(types, typ)
		payloads = append(payloads, b[q+8:q+8+int(n)])
		q += 8 + int(pad8(n))
	}
	return types, payloads, nil
}

// matrix decodes one miMATRIX payload into a variable, or records it as skipped.
func (m *MATFile) matrix(b []byte, bo binary.ByteOrder, name string, at int) error {
	types, pl, err := subElements(b, bo)
	if err != nil {
		return fmt.Errorf("mat %s: matrix at offset %d: %w", name, at, err)
	}
	if len(types) < 1 || types[0] != miUINT32 || len(pl[0]) < 8 {
		return fmt.Errorf("mat %s: matrix at offset %d: missing array flags", name, at)
	}
	flags := bo.Uint32(pl[0])
	class := int(flags & 0xff)
	complexFlag := flags&0x0800 != 0
	className, known := matClassNames[class]
	if !known {
		className = fmt.Sprintf("class %d", class)
	}
	if len(types) < 3 || types[1] != miINT32 || len(pl[1])%4 != 0 || len(pl[1]) < 8 {
		if class >= 6 && class <= 15 {
			return fmt.Errorf("mat %s: matrix at offset %d: missing or malformed dimensions", name, at)
		}
		m.Skipped[fmt.Sprintf("(unnamed at offset %d)", at)] = className
		return nil
	}
	dims := make([]int, len(pl[1])/4)
	dims64 := make([]int64, len(dims))
	for i := range dims {
		d := int32(bo.Uint32(pl[1][4*i:]))
		if d < 0 {
			return fmt.Errorf("mat %s: matrix at offset %d: negative dimension %d", name, at, d)
		}
		dims[i], dims64[i] = int(d), int64(d)
	}
	if types[2] != miINT8 && types[2] != miUTF8 && types[2] != miUINT8 {
		return fmt.Errorf("mat %s: matrix at offset %d: array name has element type %d, expected miINT8", name, at, types[2])
	}
	varName := string(pl[2])
	if class < 6 || class > 15 {
		if varName == "" {
			varName = fmt.Sprintf("(unnamed at offset %d)", at)
		}
		m.Skipped[varName] = className
		return nil
	}
	count, ok := checkedMul(maxElements, dims64...)
	if !ok {
		return fmt.Errorf("mat %s: variable %q: dimensions %v are too large", name, varName, dims)
	}
	if err := checkCubeSize("mat "+name, fmt.Sprintf("variable %q (%s %v)", varName, className, dims), count); err != nil {
		return err
	}
	if len(types) < 4 {
		return fmt.Errorf("mat %s: variable %q (%s %v) has no data sub-element", name, varName, className, dims)
	}
	esize, kind, dtype := miType(types[3])
	if esize == 0 {
		return fmt.Errorf("mat %s: variable %q: real part stored as element type %d, which is not numeric", name, varName, types[3])
	}
	if int64(len(pl[3])) != count*int64(esize) {
		return fmt.Errorf("mat %s: variable %q: real part holds %d bytes of %s but dimensions %v need %d", name, varName, len(pl[3]), dtype, dims, count*int64(esize))
	}
	data := make([]float32, count)
	decodeNumeric(data, pl[3], kind, esize, bo)
	if complexFlag && len(types) < 5 {
		return fmt.Errorf("mat %s: variable %q is flagged complex but has no imaginary part", name, varName)
	}
	m.Variables = append(m.Variables, &Array{
		Name:    varName,
		Shape:   dims,
		DType:   dtype,
		Class:   className,
		Complex: complexFlag,
		Data:    colMajorToRowMajor(data, dims),
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
