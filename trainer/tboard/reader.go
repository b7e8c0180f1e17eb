package tboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Event is the decoded subset of a TensorBoard Event record.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Values      []Value
}

// Kind says which field of a Summary.Value was set.
type Kind int

// Kinds of summary values the reader decodes.
const (
	KindUnknown Kind = iota
	KindScalar
	KindImage
	KindHistogram
	KindText
	KindTensor // a tensor that is not text (e.g. TF2's scalar tensors); not decoded further
)

func (k Kind) String() string {
	switch k {
	case KindScalar:
		return "scalar"
	case KindImage:
		return "image"
	case KindHistogram:
		return "histogram"
	case KindText:
		return "text"
	case KindTensor:
		return "tensor"
	}
	return "unknown"
}

// Value is one decoded Summary.Value.
type Value struct {
	Tag        string
	Kind       Kind
	PluginName string     // from metadata.plugin_data.plugin_name, if present
	Scalar     float32    // KindScalar: simple_value
	Image      *ImageData // KindImage
	Histo      *Histogram // KindHistogram
	Text       []string   // KindText: the tensor's string_val entries
}

// ImageData is a decoded Summary.Image; Encoded holds the PNG bytes.
type ImageData struct {
	Height, Width, Colorspace int
	Encoded                   []byte
}

// ReadEvents reads every record of the event file at path, verifying the masked CRC32C of each
// record's length and data. A damaged or truncated record is an error naming the file and the
// record index, because a silently skipped record would hide a writer bug.
func ReadEvents(path string) ([]Event, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tboard: %w", err)
	}
	var events []Event
	for idx, off := 0, 0; off < len(data); idx++ {
		rec, next, err := nextRecord(data, off)
		if err != nil {
			return nil, fmt.Errorf("tboard: %s: record %d at byte %d: %w", path, idx, off, err)
		}
		ev, err := decodeEvent(rec)
		if err != nil {
			return nil, fmt.Errorf("tboard: %s: record %d: %w", path, idx, err)
		}
		events = append(events, ev)
		off = next
	}
	return events, nil
}

// ReadRecords returns the raw payloads (serialized Events) of the file at path after checking
// their CRCs; it lets tests hand the bytes to an independent protobuf decoder.
func ReadRecords(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tboard: %w", err)
	}
	var recs [][]byte
	for idx, off := 0, 0; off < len(data); idx++ {
		rec, next, err := nextRecord(data, off)
		if err != nil {
			return nil, fmt.Errorf("tboard: %s: record %d at byte %d: %w", path, idx, off, err)
		}
		recs = append(recs, rec)
		off = next
	}
	return recs, nil
}

// EventFiles lists the event files directly inside logdir, sorted by name (hence by creation
// second). TensorBoard only requires "tfevents" in the base name, and so does this.
func EventFiles(logdir string) ([]string, error) {
	ents, err := os.ReadDir(logdir)
	if err != nil {
		return nil, fmt.Errorf("tboard: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.Contains(e.Name(), "tfevents") {
			out = append(out, filepath.Join(logdir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func nextRecord(data []byte, off int) (rec []byte, next int, err error) {
	if len(data)-off < 12 {
		return nil, 0, fmt.Errorf("truncated header (%d bytes left, need 12)", len(data)-off)
	}
	hdr := data[off : off+8]
	n := binary.LittleEndian.Uint64(hdr)
	if got, want := binary.LittleEndian.Uint32(data[off+8:]), MaskedCRC32C(hdr); got != want {
		return nil, 0, fmt.Errorf("length CRC mismatch (stored %#08x, computed %#08x)", got, want)
	}
	rest := uint64(len(data) - off - 12)
	if n > rest || rest-n < 4 {
		return nil, 0, fmt.Errorf("truncated data (length %d, %d bytes left)", n, rest)
	}
	start := off + 12
	end := start + int(n)
	rec = data[start:end]
	if got, want := binary.LittleEndian.Uint32(data[end:]), MaskedCRC32C(rec); got != want {
		return nil, 0, fmt.Errorf("data CRC mismatch (stored %#08x, computed %#08x)", got, want)
	}
	return rec, end + 4, nil
}

// fields walks a message, calling fn for each field with its raw value bytes (for bytes type),
// or numeric value (varint, fixed32, fixed64).
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var bs []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var u uint32
			u, n = protowire.ConsumeFixed32(b)
			v = uint64(u)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			bs, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, bs); err != nil {
			return err
		}
	}
	return nil
}

func wantType(num protowire.Number, got, want protowire.Type) error {
	if got != want {
		return fmt.Errorf("field %d has wire type %d, want %d", num, got, want)
	}
	return nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case evWallTime:
			if err := wantType(num, typ, protowire.Fixed64Type); err != nil {
				return err
			}
			ev.WallTime = math.Float64frombits(v)
		case evStep:
			if err := wantType(num, typ, protowire.VarintType); err != nil {
				return err
			}
			ev.Step = int64(v)
		case evFileVersion:
			if err := wantType(num, typ, protowire.BytesType); err != nil {
				return err
			}
			ev.FileVersion = string(bs)
		case evSummary:
			if err := wantType(num, typ, protowire.BytesType); err != nil {
				return err
			}
			return fields(bs, func(num protowire.Number, typ protowire.Type, _ uint64, vb []byte) error {
				if num != sumValue {
					return nil
				}
				if err := wantType(num, typ, protowire.BytesType); err != nil {
					return err
				}
				val, err := decodeValue(vb)
				if err != nil {
					return fmt.Errorf("summary value %d: %w", len(ev.Values), err)
				}
				ev.Values = append(ev.Values, val)
				return nil
			})
		}
		return nil
	})
	return ev, err
}

func decodeValue(b []byte) (Value, error) {
	var val Value
	var tensor []byte
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case valTag:
			val.Tag = string(bs)
		case valSimpleValue:
			if err := wantType(num, typ, protowire.Fixed32Type); err != nil {
				return err
			}
			val.Kind = KindScalar
			val.Scalar = math.Float32frombits(uint32(v))
		case valImage:
			img, err := decodeImage(bs)
			if err != nil {
				return fmt.Errorf("image: %w", err)
			}
			val.Kind, val.Image = KindImage, img
		case valHisto:
			h, err := decodeHisto(bs)
			if err != nil {
				return fmt.Errorf("histogram: %w", err)
			}
			val.Kind, val.Histo = KindHistogram, h
		case valTensor:
			tensor = bs
		case valMetadata:
			return fields(bs, func(num protowire.Number, _ protowire.Type, _ uint64, pd []byte) error {
				if num != mdPluginData {
					return nil
				}
				return fields(pd, func(num protowire.Number, _ protowire.Type, _ uint64, s []byte) error {
					if num == pdPluginName {
						val.PluginName = string(s)
					}
					return nil
				})
			})
		}
		return nil
	})
	if err != nil {
		return val, err
	}
	if tensor != nil {
		val.Kind = KindTensor
		var dtype uint64
		var strs []string
		err := fields(tensor, func(num protowire.Number, _ protowire.Type, v uint64, bs []byte) error {
			switch num {
			case tpDtype:
				dtype = v
			case tpStringVal:
				strs = append(strs, string(bs))
			}
			return nil
		})
		if err != nil {
			return val, fmt.Errorf("tensor: %w", err)
		}
		if dtype == dtString && val.PluginName == "text" {
			val.Kind, val.Text = KindText, strs
		}
	}
	return val, nil
}

func decodeImage(b []byte) (*ImageData, error) {
	img := &ImageData{}
	err := fields(b, func(num protowire.Number, _ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case imgHeight:
			img.Height = int(int32(v))
		case imgWidth:
			img.Width = int(int32(v))
		case imgColorspace:
			img.Colorspace = int(int32(v))
		case imgEncoded:
			img.Encoded = bs
		}
		return nil
	})
	return img, err
}

func decodeHisto(b []byte) (*Histogram, error) {
	h := &Histogram{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		f := math.Float64frombits(v)
		switch num {
		case hMin:
			h.Min = f
		case hMax:
			h.Max = f
		case hNum:
			h.Num = f
		case hSum:
			h.Sum = f
		case hSumSquares:
			h.SumSquares = f
		case hBucketLimit, hBucket:
			var vals []float64
			if typ == protowire.BytesType { // packed
				if len(bs)%8 != 0 {
					return fmt.Errorf("packed doubles of %d bytes", len(bs))
				}
				for i := 0; i < len(bs); i += 8 {
					vals = append(vals, math.Float64frombits(binary.LittleEndian.Uint64(bs[i:])))
				}
			} else {
				vals = []float64{f}
			}
			if num == hBucketLimit {
				h.BucketLimit = append(h.BucketLimit, vals...)
			} else {
				h.Bucket = append(h.Bucket, vals...)
			}
		}
		return nil
	})
	if err == nil && len(h.Bucket) != len(h.BucketLimit) {
		err = errors.New("bucket and bucket_limit lengths differ")
	}
	return h, err
}
