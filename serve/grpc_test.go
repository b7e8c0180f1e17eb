package serve

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	refpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/client"
	"github.com/spectraclip/spectraclip/serve/servepb"
)

func cubeOf(f *Frame) *client.Cube { return client.Float32Cube(f.H, f.W, f.C, f.Data) }

func dialGRPC(t *testing.T, addr string) *client.GRPC {
	t.Helper()
	c, err := client.DialGRPC(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGRPCScoreEqualsInfer: the unary RPC gives infer's score map bit for bit; the HTTP
// client gives the same.
func TestGRPCScoreEqualsInfer(t *testing.T) {
	f, wantScores, wantDec := inferOutputs(t)
	_, url, gaddr := startServer(t, Options{MaxBatch: 4, MaxWait: time.Millisecond})
	g := dialGRPC(t, gaddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := g.C.Score(ctx, client.Request(&client.Cube{Shape: []int64{int64(f.H), int64(f.W), int64(f.C)}, DType: "float32", Data: cubeOf(f).Data, FrameID: "f0"}, true))
	if err != nil {
		t.Fatal(err)
	}
	if p.FrameId != "f0" || p.Height != 32 || p.Width != 32 {
		t.Errorf("response header: %+v", p)
	}
	// infer's .npy files end with the raw little-endian data
	if !bytes.Equal(p.Scores, wantScores[len(wantScores)-len(p.Scores):]) || len(p.Scores) != 4*32*32 {
		t.Errorf("gRPC score map differs from infer's")
	}
	if !bytes.Equal(p.Decisions, wantDec[len(wantDec)-len(p.Decisions):]) || len(p.Decisions) != 32*32 {
		t.Errorf("gRPC decisions differ from infer's")
	}
	hc, err := client.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hc.Score(ctx, cubeOf(f), true)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range r.Scores {
		if math.Float32bits(v) != binary.LittleEndian.Uint32(p.Scores[4*i:]) {
			t.Fatalf("HTTP client pixel %d: %v differs from gRPC", i, v)
		}
	}
	if r.ImageScore != p.ImageScore || r.AnomalyPixels != int(p.AnomalyPixels) {
		t.Errorf("HTTP %v/%d vs gRPC %v/%d", r.ImageScore, r.AnomalyPixels, p.ImageScore, p.AnomalyPixels)
	}
}

// TestGRPCHealthReflectionAndErrors: the health service says SERVING, reflection lists the
// Scorer service, and bad cubes get INVALID_ARGUMENT naming the problem.
func TestGRPCHealthReflectionAndErrors(t *testing.T) {
	s, _, gaddr := startServer(t, Options{MaxBytes: 1 << 20})
	conn, err := grpc.NewClient(gaddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: servepb.Scorer_ServiceDesc.ServiceName})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", hr, err)
	}
	rs, err := refpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&refpb.ServerReflectionRequest{MessageRequest: &refpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sv := range rr.GetListServicesResponse().GetService() {
		found = found || sv.Name == "spectraclip.serve.v1.Scorer"
	}
	if !found {
		t.Errorf("reflection does not list the Scorer: %v", rr)
	}
	rs.CloseSend()
	sc := servepb.NewScorerClient(conn)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	good := cubeOf(randomFrame(rng, 32, 32, s.Scorer().Bands))
	// a NaN at a random place (found while the request is copied out of the transport)
	nf := randomFrame(rng, 32, 32, s.Scorer().Bands)
	row, col, band := rng.Intn(32), rng.Intn(32), rng.Intn(s.Scorer().Bands)
	nf.Data[(row*32+col)*s.Scorer().Bands+band] = float32(math.NaN())
	bad := []struct {
		name string
		c    *client.Cube
		want string
	}{
		{"truncated", &client.Cube{Shape: good.Shape, DType: "float32", Data: good.Data[:100]}, "truncated"},
		{"bands", cubeOf(randomFrame(rng, 4, 4, s.Scorer().Bands+1)), "bands"},
		{"too large", &client.Cube{Shape: []int64{2048, 2048, 61}, DType: "float32"}, "larger than the maximum"},
		{"dtype", &client.Cube{Shape: good.Shape, DType: "complex64", Data: good.Data}, "dtype"},
		{"NaN", cubeOf(nf), fmt.Sprintf("NaN/Inf) at row %d, column %d, band %d", row, col, band)},
	}
	for _, b := range bad {
		_, err := sc.Score(ctx, client.Request(b.c, false))
		if status.Code(err) != codes.InvalidArgument || !bytes.Contains([]byte(status.Convert(err).Message()), []byte(b.want)) {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Nanosecond)
	defer dcancel()
	if _, err := sc.Score(dctx, client.Request(good, false)); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("expired deadline: %v", err)
	}
	if _, err := sc.Score(ctx, client.Request(good, false)); err != nil {
		t.Errorf("a good request after the bad ones: %v", err)
	}
}

// TestGRPCOverload: more concurrent unary calls than the queue holds get RESOURCE_EXHAUSTED
// or a result; none is lost.
func TestGRPCOverload(t *testing.T) {
	// one worker, one frame a forward (as TestOverload)
	s, _, gaddr := startServer(t, Options{MaxBatch: 1, Queue: 2, Workers: 1})
	g := dialGRPC(t, gaddr)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	req := client.Request(cubeOf(randomFrame(rng, 128, 128, s.Scorer().Bands)), false)
	const n = 32
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, errs[i] = g.C.Score(ctx, req)
		}(i)
	}
	wg.Wait()
	ok, busy := 0, 0
	for i, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			busy++
		default:
			t.Errorf("call %d: %v", i, err)
		}
	}
	if ok == 0 || busy == 0 {
		t.Errorf("%d scored, %d RESOURCE_EXHAUSTED: want both", ok, busy)
	}
	checkNoRequestBufs(t)
}

// TestScoreStream: a stream of frames is answered in order; a bad frame in the middle gets
// its error in its response and the stream goes on; a client that disconnects mid-stream
// leaves the server serving.
func TestScoreStream(t *testing.T) {
	s, _, gaddr := startServer(t, Options{MaxBatch: 4, MaxWait: 2 * time.Millisecond})
	g := dialGRPC(t, gaddr)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := g.C.ScoreStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	frames := make([]*Frame, n)
	for i := range frames {
		frames[i] = randomFrame(rng, 32, 32, s.Scorer().Bands)
	}
	go func() {
		for i := 0; i < n; i++ {
			c := cubeOf(frames[i])
			if i == 5 {
				c.Data = c.Data[:10]
			}
			c.FrameID = string(rune('a' + i))
			if err := st.Send(client.Request(c, true)); err != nil {
				return
			}
		}
		st.CloseSend()
	}()
	for i := 0; i < n; i++ {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if r.FrameId != string(rune('a'+i)) {
			t.Errorf("response %d is for frame %q", i, r.FrameId)
		}
		if i == 5 {
			if codes.Code(r.ErrorCode) != codes.InvalidArgument || r.Error == "" {
				t.Errorf("truncated frame: code %d %q", r.ErrorCode, r.Error)
			}
			continue
		}
		if r.ErrorCode != 0 || len(r.Scores) != 4*32*32 {
			t.Errorf("frame %d: code %d %q, %d map bytes", i, r.ErrorCode, r.Error, len(r.Scores))
		}
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("after the last response: %v", err)
	}
	// a client that goes away mid-stream
	cctx, ccancel := context.WithCancel(ctx)
	st2, err := g.C.ScoreStream(cctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		st2.Send(client.Request(cubeOf(frames[i]), true))
	}
	ccancel()
	if _, err := g.Score(ctx, cubeOf(frames[0]), false); err != nil {
		t.Errorf("after a client disconnected mid-stream: %v", err)
	}
	checkNoRequestBufs(t)
}

// checkNoRequestBufs fails when requestCodec kept a request's bytes that no handler took
// over (they would never go back to the transport or the pool), waiting up to 5 s for
// handlers still finishing.
func checkNoRequestBufs(t *testing.T) {
	t.Helper()
	n := 0
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n = 0
		requestBufs.Range(func(any, any) bool { n++; return true })
		if n == 0 || time.Now().After(end) {
			break
		}
	}
	if n > 0 {
		t.Errorf("%d decoded requests' bytes were never taken over by a handler", n)
	}
}

// TestJSONAndUint16Cubes: a uint16 cube sent as JSON (HTTP) and over gRPC scores like the
// same values sent as float32.
func TestJSONAndUint16Cubes(t *testing.T) {
	s, url, gaddr := startServer(t, Options{})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	bands := s.Scorer().Bands
	u16 := make([]byte, 2*16*16*bands)
	f := &Frame{H: 16, W: 16, C: bands, Data: make([]float32, 16*16*bands)}
	for i := range f.Data {
		v := uint16(rng.Intn(4096))
		binary.LittleEndian.PutUint16(u16[2*i:], v)
		f.Data[i] = float32(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := dialGRPC(t, gaddr)
	want, err := g.Score(ctx, cubeOf(f), true)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := client.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	cu := &client.Cube{Shape: []int64{16, 16, int64(bands)}, DType: "uint16", Data: u16, FrameID: "u16"}
	for name, c := range map[string]client.Client{"http+json": hc, "grpc": g} {
		got, err := c.Score(ctx, cu, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ImageScore != want.ImageScore || got.AnomalyPixels != want.AnomalyPixels || got.Height != 16 {
			t.Errorf("%s: %+v, float32 gave %+v", name, got, want)
		}
	}
}
