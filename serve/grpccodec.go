package serve

import (
	"fmt"
	"math"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

// requestCodec is gRPC's proto codec, except for ScoreRequest: that one is copied once from
// the transport's buffers into a pooled buffer, placed so that the cube's values start on a
// 4-byte boundary, and decoded by hand with the cube's bytes aliasing the buffer. The proto
// codec would gather the message into a fresh buffer and then copy the bytes field into
// another fresh one: two 16 MB copies and two allocations (zeroed, page-faulted) per
// 256×256×61 frame instead of one copy into reused memory. The handler takes the buffer
// over with takeRequestBuf.
type requestCodec struct{}

const protoCodecName = "proto"

func (requestCodec) Name() string { return protoCodecName }

func (requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(protoCodecName).Marshal(v)
}

func (requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*servepb.ScoreRequest)
	if !ok {
		return encoding.GetCodecV2(protoCodecName).Unmarshal(data, v)
	}
	shift := 0
	if len(data) > 0 {
		if off := cubeDataOffset(data[0].ReadOnlyData()); off >= 0 {
			shift = (4 - off%4) % 4
		}
	}
	buf := getBuf(shift + data.Len())
	b := (*buf)[shift:]
	data.CopyTo(b)
	if err := decodeScoreRequest(b, req); err != nil {
		putBuf(buf)
		return err
	}
	requestBufs.Store(req, buf)
	return nil
}

// requestBufs holds the pooled buffer of each ScoreRequest decoded by requestCodec until its
// handler takes it.
var requestBufs sync.Map

// takeRequestBuf returns the pooled buffer req's cube aliases (nil if it has none); the
// caller gives it back (putBuf) or hands it to the frame.
func takeRequestBuf(req *servepb.ScoreRequest) *[]byte {
	if v, ok := requestBufs.LoadAndDelete(req); ok {
		return v.(*[]byte)
	}
	return nil
}

// cubeDataOffset is where the values of ScoreRequest.cube.data start in a message that
// begins with b, or -1 when b ends before them (or is not such a message).
func cubeDataOffset(b []byte) int {
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return -1
		}
		pos += n
		if num == 1 && typ == protowire.BytesType { // cube
			l, n := protowire.ConsumeVarint(b[pos:])
			if n < 0 {
				return -1
			}
			pos += n
			end := pos + int(min(l, uint64(len(b))))
			for pos < end && pos < len(b) {
				num, typ, n := protowire.ConsumeTag(b[pos:])
				if n < 0 {
					return -1
				}
				pos += n
				if num == 3 && typ == protowire.BytesType { // data
					_, n := protowire.ConsumeVarint(b[pos:])
					if n < 0 {
						return -1
					}
					return pos + n
				}
				n = protowire.ConsumeFieldValue(num, typ, b[pos:])
				if n < 0 {
					return -1
				}
				pos += n
			}
			return -1
		}
		n = protowire.ConsumeFieldValue(num, typ, b[pos:])
		if n < 0 {
			return -1
		}
		pos += n
	}
	return -1
}

// decodeScoreRequest decodes a ScoreRequest from b, the cube's data aliasing b (unknown
// fields are skipped, as the proto codec would keep and ignore them).
func decodeScoreRequest(b []byte, req *servepb.ScoreRequest) error {
	bad := func(what string) error { return fmt.Errorf("grpc: malformed ScoreRequest: %s", what) }
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return bad("field tag")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return bad("cube")
			}
			if req.Cube == nil {
				req.Cube = &servepb.Cube{}
			}
			if err := decodeCube(v, req.Cube); err != nil {
				return err
			}
			b = b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return bad("frame_id")
			}
			req.FrameId = string(v)
			b = b[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return bad("want_map")
			}
			req.WantMap = v != 0
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return bad(fmt.Sprintf("field %d", num))
			}
			b = b[n:]
		}
	}
	return nil
}

func decodeCube(b []byte, c *servepb.Cube) error {
	bad := func(what string) error { return fmt.Errorf("grpc: malformed Cube: %s", what) }
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return bad("field tag")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType: // packed shape
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return bad("shape")
			}
			for len(v) > 0 {
				x, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return bad("shape")
				}
				c.Shape = append(c.Shape, int64(x))
				v = v[k:]
			}
			b = b[n:]
		case num == 1 && typ == protowire.VarintType: // unpacked shape
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return bad("shape")
			}
			c.Shape = append(c.Shape, int64(x))
			b = b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return bad("dtype")
			}
			c.Dtype = string(v)
			b = b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return bad("data")
			}
			c.Data = v[:len(v):len(v)]
			b = b[n:]
		case num == 4 && typ == protowire.BytesType: // packed wavelengths
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || len(v)%4 != 0 {
				return bad("wavelengths")
			}
			for ; len(v) > 0; v = v[4:] {
				x, _ := protowire.ConsumeFixed32(v)
				c.Wavelengths = append(c.Wavelengths, math.Float32frombits(x))
			}
			b = b[n:]
		case num == 4 && typ == protowire.Fixed32Type: // unpacked wavelengths
			x, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return bad("wavelengths")
			}
			c.Wavelengths = append(c.Wavelengths, math.Float32frombits(x))
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return bad(fmt.Sprintf("field %d", num))
			}
			b = b[n:]
		}
	}
	return nil
}
