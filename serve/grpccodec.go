package serve

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

// requestCodec is gRPC's proto codec, except for ScoreRequest, which is decoded by hand
// without copying the cube's values: they stay in the transport's buffers (decodePieces),
// and the batcher copies them from there into its staging tensor. Where that cannot be done
// (the message's head not in its first buffer, another dtype than float32), the message is
// copied once into a pooled buffer, placed so that the values start on a 4-byte boundary,
// and the cube aliases it. The proto codec would gather the message into a fresh buffer and
// then copy the bytes field into another fresh one: two 16 MB copies and two allocations
// (zeroed, page-faulted) per 256×256×61 frame. The handler takes what the codec kept over
// with takeRequestBuf.
type requestCodec struct {
	b *budget // the in-flight budget a request's bytes are reserved in (nil: none)
}

const protoCodecName = "proto"

func (requestCodec) Name() string { return protoCodecName }

func (requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(protoCodecName).Marshal(v)
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*servepb.ScoreRequest)
	if !ok {
		return encoding.GetCodecV2(protoCodecName).Unmarshal(data, v)
	}
	// the message is in memory already (the transport assembled it, at most
	// MaxRecvMsgSize); it is reserved now, held until answered, and refused
	// (RESOURCE_EXHAUSTED, grpcScorer.frame) when the budget is spent
	share := c.b.reserve()
	if err := share.need(int64(data.Len())); err != nil {
		requestBufs.Store(req, &requestBuf{nonFinite: -1, err: err})
		return nil
	}
	if rb, ok := decodePieces(data, req); ok {
		rb.res = share
		requestBufs.Store(req, rb)
		return nil
	}
	// the copying form: the copy beside the transport's buffers
	if err := share.need(2 * int64(data.Len())); err != nil {
		share.release()
		requestBufs.Store(req, &requestBuf{nonFinite: -1, err: err})
		return nil
	}
	shift, off, size := 0, -1, 0
	if len(data) > 0 {
		if l, ok := findCube(data[0].ReadOnlyData()); ok {
			off, size, shift = l.off, l.size, (4-l.off%4)%4
		}
	}
	buf := getBuf(shift + data.Len())
	b := (*buf)[shift:]
	// copy piece by piece, looking for NaN/Inf in the cube's values (read as float32) while
	// each piece is in the cache; the frame uses the result if its dtype is float32
	rb := &requestBuf{buf: buf, nonFinite: -1, scanned: off >= 0 && littleEndian}
	end, scanned := off+size, off
	n := 0
	for _, piece := range data {
		n += copy(b[n:], piece.ReadOnlyData())
		if rb.scanned && rb.nonFinite < 0 && n > scanned {
			upto := min(n, end)
			upto -= (upto - off) % 4
			if upto > scanned {
				v := aliasFloat32s(b[scanned:upto])
				if v == nil && upto-scanned >= 4 {
					rb.scanned = false // not aligned after all: Check scans the frame
				}
				if i := firstUnusable(v); i >= 0 {
					rb.nonFinite = (scanned-off)/4 + i
				}
				scanned = upto
			}
		}
	}
	if err := decodeScoreRequest(b, req); err != nil {
		putBuf(buf)
		share.release()
		return err
	}
	rb.res = share
	// the scan is the cube's only if the decoded data is the field it covered (a message
	// may repeat a field: the last one counts)
	if d := req.GetCube().GetData(); rb.scanned && (len(d) != size || size > 0 && unsafe.Pointer(&d[0]) != unsafe.Pointer(&b[off])) {
		rb.scanned = false
	}
	requestBufs.Store(req, rb)
	return nil
}

// requestBuf is the pooled buffer a decoded ScoreRequest's cube aliases, and what the copy
// found: with scanned, the index of the first NaN/Inf among its values read as float32
// (-1: none).
type requestBuf struct {
	buf       *[]byte
	scanned   bool
	nonFinite int
	// the zero-copy form (decodePieces): the cube's values in the transport's buffers, in
	// order, size bytes in all; free releases the buffers
	pieces [][]byte
	size   int
	free   func()
	// res is the request's share of the in-flight budget, held until it is answered;
	// err, when set, says the budget was spent and the message was not decoded
	res *reservation
	err error
}

// release gives back what the request holds.
func (rb *requestBuf) release() {
	if rb.buf != nil {
		putBuf(rb.buf)
		rb.buf = nil
	}
	if rb.free != nil {
		rb.free()
		rb.free, rb.pieces = nil, nil
	}
}

// requestBufs holds the requestBuf of each ScoreRequest decoded by requestCodec until its
// handler takes it.
var requestBufs sync.Map

// takeRequestBuf returns what requestCodec kept for req (nil if nothing); the caller gives
// the buffer back (putBuf) or hands it to the frame.
func takeRequestBuf(req *servepb.ScoreRequest) *requestBuf {
	if v, ok := requestBufs.LoadAndDelete(req); ok {
		return v.(*requestBuf)
	}
	return nil
}

// walk calls field for each field of the protobuf message b. field gets the bytes from the
// field's value on and returns how many it consumed, or a negative number to leave the
// field to walk: skipped when it is well formed (an unknown field), an error naming it
// otherwise.
func walk(b []byte, what string, field func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("grpc: malformed %s: field tag", what)
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if err != nil {
			return err
		}
		if n < 0 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("grpc: malformed %s: field %d", what, num)
			}
		}
		b = b[n:]
	}
	return nil
}

// errFound stops a walk that found what it looked for.
var errFound = errors.New("found")

// cubeLayout is where ScoreRequest.cube and its data field lie in a message (offsets from
// the message's start): the cube's length varint at cubeLenAt (cubeLenN bytes, value
// cubeLen), the data's length varint at dataLenAt (dataLenN bytes), and the data's values
// at off (size bytes).
type cubeLayout struct {
	cubeLenAt, cubeLenN, cubeLen int
	dataLenAt, dataLenN          int
	off, size                    int
}

// findCube is the layout of the first cube field of a message that begins with b (b may be
// only the message's first piece); ok is false when b ends before the data's values start
// (or is not such a message).
func findCube(b []byte) (l cubeLayout, ok bool) {
	at := func(v []byte) int { return cap(b) - cap(v) } // v is a subslice of b: where it starts
	walk(b, "", func(num protowire.Number, typ protowire.Type, v []byte) (int, error) {
		if num != 1 || typ != protowire.BytesType {
			return -1, nil
		}
		cl, n := protowire.ConsumeVarint(v)
		if n < 0 || cl > math.MaxInt32*4 {
			return 0, errFound // cut short: not found
		}
		l.cubeLenAt, l.cubeLenN, l.cubeLen = at(v), n, int(cl)
		cube := v[n:]
		if uint64(len(cube)) > cl {
			cube = cube[:cl]
		}
		walk(cube, "", func(num protowire.Number, typ protowire.Type, d []byte) (int, error) {
			if num != 3 || typ != protowire.BytesType {
				return -1, nil
			}
			if dl, n := protowire.ConsumeVarint(d); n >= 0 && dl <= math.MaxInt32*4 {
				l.dataLenAt, l.dataLenN, l.off, l.size, ok = at(d), n, at(d)+n, int(dl), true
			}
			return 0, errFound
		})
		return 0, errFound // the first cube field decides
	})
	return l, ok
}

// decodePieces decodes req without copying the cube's values: they stay in the transport's
// buffers (kept with Ref, released by the requestBuf's free), as pieces in order. The rest of
// the message, the data field emptied, is decoded as usual. It reports false (req untouched)
// when the message's head is not in its first buffer or the data field is not where a
// well-formed message has it.
func decodePieces(data mem.BufferSlice, req *servepb.ScoreRequest) (*requestBuf, bool) {
	if len(data) < 2 {
		return nil, false
	}
	head := data[0].ReadOnlyData()
	l, ok := findCube(head)
	total := data.Len()
	cubeEnd := l.cubeLenAt + l.cubeLenN + l.cubeLen
	if !ok || l.off > len(head) || l.off+l.size > cubeEnd || cubeEnd > total {
		return nil, false
	}
	// the message without the data's values: the cube and data lengths rewritten
	skel := make([]byte, 0, l.off+16+(total-l.off-l.size))
	skel = append(skel, head[:l.cubeLenAt]...)
	skel = protowire.AppendVarint(skel, uint64(l.cubeLen-l.dataLenN-l.size+1))
	skel = append(skel, head[l.cubeLenAt+l.cubeLenN:l.dataLenAt]...)
	skel = protowire.AppendVarint(skel, 0)
	pieces := make([][]byte, 0, len(data))
	pos := 0
	for _, buf := range data {
		p := buf.ReadOnlyData()
		lo, hi := max(l.off, pos), min(l.off+l.size, pos+len(p))
		if lo < hi {
			pieces = append(pieces, p[lo-pos:hi-pos:hi-pos])
		}
		if t := max(l.off+l.size, pos); t < pos+len(p) {
			skel = append(skel, p[t-pos:]...)
		}
		pos += len(p)
	}
	var r servepb.ScoreRequest
	if err := decodeScoreRequest(skel, &r); err != nil || r.Cube == nil || len(r.Cube.Data) != 0 {
		return nil, false // malformed, or another data field: the copying path decides
	}
	req.Cube, req.FrameId, req.WantMap = r.Cube, r.FrameId, r.WantMap
	req.Cube.Data = nil
	data.Ref()
	return &requestBuf{pieces: pieces, size: l.size, free: data.Free, nonFinite: -1}, true
}

// decodeScoreRequest decodes a ScoreRequest from b, the cube's data aliasing b (unknown
// fields are skipped, as the proto codec would keep and ignore them).
func decodeScoreRequest(b []byte, req *servepb.ScoreRequest) error {
	return walk(b, "ScoreRequest", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				if req.Cube == nil {
					req.Cube = &servepb.Cube{}
				}
				if err := decodeCube(v, req.Cube); err != nil {
					return 0, err
				}
			}
			return n, nil
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			req.FrameId = string(v)
			return n, nil
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			req.WantMap = v != 0
			return n, nil
		}
		return -1, nil
	})
}

func decodeCube(b []byte, c *servepb.Cube) error {
	return walk(b, "Cube", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.BytesType: // packed shape
			v, n := protowire.ConsumeBytes(b)
			for len(v) > 0 && n >= 0 {
				x, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return 0, errors.New("grpc: malformed Cube: shape")
				}
				c.Shape = append(c.Shape, int64(x))
				v = v[k:]
			}
			return n, nil
		case num == 1 && typ == protowire.VarintType: // unpacked shape
			x, n := protowire.ConsumeVarint(b)
			c.Shape = append(c.Shape, int64(x))
			return n, nil
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			c.Dtype = string(v)
			return n, nil
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			c.Data = v[:len(v):len(v)]
			return n, nil
		case num == 4 && typ == protowire.BytesType: // packed wavelengths
			v, n := protowire.ConsumeBytes(b)
			if len(v)%4 != 0 {
				return 0, errors.New("grpc: malformed Cube: wavelengths")
			}
			for ; len(v) > 0; v = v[4:] {
				x, _ := protowire.ConsumeFixed32(v)
				c.Wavelengths = append(c.Wavelengths, math.Float32frombits(x))
			}
			return n, nil
		case num == 4 && typ == protowire.Fixed32Type: // unpacked wavelengths
			x, n := protowire.ConsumeFixed32(b)
			c.Wavelengths = append(c.Wavelengths, math.Float32frombits(x))
			return n, nil
		case num == 5 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				if c.Shm == nil {
					c.Shm = &servepb.SharedMemory{}
				}
				if err := decodeShm(v, c.Shm); err != nil {
					return 0, err
				}
			}
			return n, nil
		}
		return -1, nil
	})
}

func decodeShm(b []byte, m *servepb.SharedMemory) error {
	return walk(b, "SharedMemory", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			m.Name = string(v)
			return n, nil
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			m.Offset = v
			return n, nil
		}
		return -1, nil
	})
}
