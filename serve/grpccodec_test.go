package serve

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

// TestRequestCodecMatchesProto: the hand decoder of ScoreRequest (requestCodec) gives what
// proto.Unmarshal gives on fresh random messages, cut into random transport chunks, with
// unknown fields and unpacked repeated fields mixed in: without copying (the values as the
// transport's pieces) when the first chunk holds the message's head, else copied, the
// values starting on a 4-byte boundary; a truncated message is an error for both decoders
// alike.
func TestRequestCodecMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	str := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.Intn(26))
		}
		return string(b)
	}
	zeroCopy, copied := 0, 0
	for it := 0; it < 300; it++ {
		c := &servepb.Cube{Dtype: str(rng.Intn(10)), Data: make([]byte, rng.Intn(5000))}
		rng.Read(c.Data)
		for range rng.Intn(4) {
			c.Shape = append(c.Shape, rng.Int63n(1<<uint(rng.Intn(40))))
		}
		for range rng.Intn(70) {
			c.Wavelengths = append(c.Wavelengths, rng.Float32()*1000)
		}
		if rng.Intn(3) == 0 {
			c.Shm = &servepb.SharedMemory{Name: str(rng.Intn(30)), Offset: rng.Uint64() >> uint(rng.Intn(64))}
		}
		req := &servepb.ScoreRequest{Cube: c, FrameId: str(rng.Intn(40)), WantMap: rng.Intn(2) == 0}
		cb, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		// extra fields in the cube: unknown ones, and a shape value and a wavelength unpacked
		// (both encodings are valid proto3 for repeated scalars)
		extraShape, extraWL := rng.Int63n(1000), rng.Float32()
		if rng.Intn(2) == 0 {
			cb = protowire.AppendTag(cb, 9, protowire.VarintType)
			cb = protowire.AppendVarint(cb, rng.Uint64())
			cb = protowire.AppendTag(cb, 1, protowire.VarintType)
			cb = protowire.AppendVarint(cb, uint64(extraShape))
			cb = protowire.AppendTag(cb, 4, protowire.Fixed32Type)
			cb = protowire.AppendFixed32(cb, math.Float32bits(extraWL))
		}
		var msg []byte
		if rng.Intn(2) == 0 { // an unknown field first: the cube is not at offset 0
			msg = protowire.AppendTag(msg, 12, protowire.BytesType)
			msg = protowire.AppendBytes(msg, []byte(str(rng.Intn(9))))
		}
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendBytes(msg, cb)
		rest, err := proto.Marshal(&servepb.ScoreRequest{FrameId: req.FrameId, WantMap: req.WantMap})
		if err != nil {
			t.Fatal(err)
		}
		msg = append(msg, rest...)

		want := &servepb.ScoreRequest{}
		wantErr := proto.Unmarshal(msg, want)
		if wantErr != nil {
			t.Fatalf("message %d: proto.Unmarshal: %v", it, wantErr)
		}
		// random transport chunks
		var bs mem.BufferSlice
		first := 0
		for off := 0; off < len(msg); {
			n := 1 + rng.Intn(len(msg)-off)
			if off == 0 && it%4 == 0 {
				// every 4th message splits the cube's head across buffers (the copying path):
				// with random cuts alone, 300 messages sometimes gave none
				n = 1 + rng.Intn(min(4, len(msg)))
			}
			if off == 0 {
				first = n
			}
			bs = append(bs, mem.SliceBuffer(slices.Clone(msg[off:off+n])))
			off += n
		}
		got := &servepb.ScoreRequest{}
		if err := (requestCodec{}).Unmarshal(bs, got); err != nil {
			t.Fatalf("message %d: %v", it, err)
		}
		rb := takeRequestBuf(got)
		if rb == nil {
			t.Fatalf("message %d: nothing recorded for the handler", it)
		}
		gc, wc := got.GetCube(), want.GetCube()
		values := gc.GetData()
		if rb.pieces != nil { // zero-copy: the values are the transport's pieces
			zeroCopy++
			if len(values) != 0 || rb.buf != nil {
				t.Fatalf("message %d: pieces and %d bytes of data", it, len(values))
			}
			for _, p := range rb.pieces {
				values = append(values, p...)
			}
			if len(values) != rb.size {
				t.Fatalf("message %d: pieces hold %d bytes, size says %d", it, len(values), rb.size)
			}
		} else {
			copied++
		}
		if !slices.Equal(gc.GetShape(), wc.GetShape()) || gc.GetDtype() != wc.GetDtype() || !bytes.Equal(values, wc.GetData()) ||
			!slices.Equal(gc.GetWavelengths(), wc.GetWavelengths()) || got.GetFrameId() != want.GetFrameId() || got.GetWantMap() != want.GetWantMap() ||
			!proto.Equal(gc.GetShm(), wc.GetShm()) {
			t.Fatalf("message %d: decoded %v (values %d bytes), proto gives %v", it, got, len(values), want)
		}
		if rb.buf != nil {
			_, headOK := findCube(msg[:first])
			if d := gc.GetData(); len(d) > 0 && headOK && uintptr(unsafe.Pointer(&d[0]))%4 != 0 {
				t.Errorf("message %d: cube data at a misaligned address although the first chunk (%d bytes) holds its offset", it, first)
			}
			// the scan made while copying (NaN, Inf or a magnitude of MaxAbsValue or more) agrees
			// with a scan of the decoded values
			if rb.scanned != headOK {
				t.Errorf("message %d: scanned %v, want %v (head in the first chunk)", it, rb.scanned, headOK)
			}
			if d := gc.GetData(); rb.scanned {
				want := firstUnusable(aliasFloat32s(d[:len(d)-len(d)%4]))
				if rb.nonFinite != want {
					t.Errorf("message %d: scan while copying found the first unusable value at %d, a scan of the values at %d", it, rb.nonFinite, want)
				}
			}
		}
		rb.release()
		// truncated: both refuse, or both accept (a cut at a field boundary is a valid message)
		cut := rng.Intn(len(msg))
		perr := proto.Unmarshal(msg[:cut], &servepb.ScoreRequest{})
		tr := &servepb.ScoreRequest{}
		cerr := (requestCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(slices.Clone(msg[:cut]))}, tr)
		if (perr == nil) != (cerr == nil) {
			t.Errorf("message %d cut at %d of %d: proto.Unmarshal says %v, the codec %v", it, cut, len(msg), perr, cerr)
		}
		if cerr == nil {
			if b := takeRequestBuf(tr); b != nil {
				b.release()
			}
		}
	}
	if zeroCopy == 0 || copied == 0 {
		t.Errorf("%d messages decoded without copying, %d copied: want both paths", zeroCopy, copied)
	}
}

// TestCopyPieces: a frame whose values are split into transport pieces at random byte
// offsets (values straddling the cuts) is copied into a staging row exactly, and the first
// NaN/Inf found while copying is the first of the whole row.
func TestCopyPieces(t *testing.T) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for it := 0; it < 200; it++ {
		v := make([]float32, 1+rng.Intn(3000))
		for i := range v {
			v[i] = rng.Float32()
		}
		for range rng.Intn(3) {
			bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
			v[rng.Intn(len(v))] = bad[rng.Intn(3)]
		}
		raw := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		var pieces [][]byte
		for rest := raw; len(rest) > 0; {
			n := 1 + rng.Intn(min(len(rest), 700))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		f := &Frame{H: 1, W: len(v), C: 1, pieces: pieces}
		if f.values() != len(v) {
			t.Fatalf("values() %d, want %d", f.values(), len(v))
		}
		row := make([]float32, len(v))
		got := f.copyPieces(row)
		if want := firstNonFinite(v); got != want {
			t.Fatalf("first NaN/Inf found at %d while copying, at %d in the values", got, want)
		}
		if got < 0 && !slices.Equal(row, v) {
			t.Fatalf("copied values differ")
		}
	}
}
