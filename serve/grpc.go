package serve

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

type grpcScorer struct {
	servepb.UnimplementedScorerServer
	s *Server
}

func (g *grpcScorer) frame(ctx context.Context, req *servepb.ScoreRequest) (*Frame, error) {
	rb := takeRequestBuf(req) // what the codec kept of the cube's values (requestCodec)
	if rb != nil && rb.err != nil {
		// the in-flight budget was spent: the message was not decoded (budget.go)
		return nil, status.Error(codes.ResourceExhausted, rb.err.Error())
	}
	c := req.GetCube()
	if c == nil {
		if rb != nil {
			rb.release()
		}
		return nil, status.Error(codes.InvalidArgument, "request has no cube")
	}
	lim := Limits{MaxBytes: g.s.opts.MaxBytes}
	if m := c.GetShm(); m != nil {
		hasData := len(c.GetData()) > 0 || rb != nil && rb.size > 0
		if rb != nil {
			rb.release()
		}
		if hasData {
			return nil, status.Error(codes.InvalidArgument, "cube has both data and shm: send one")
		}
		if p, ok := peer.FromContext(ctx); !ok || !localPeer(p.Addr.String()) {
			from := "an unknown peer"
			if ok {
				from = p.Addr.String()
			}
			return nil, status.Error(codes.PermissionDenied, (&remoteShmError{from}).Error())
		}
		f, err := g.s.shmFrame(c.GetShape(), c.GetDtype(), m.GetName(), m.GetOffset())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		f.Wavelengths, f.ID = c.GetWavelengths(), req.GetFrameId()
		return f, nil
	}
	if rb != nil && rb.pieces != nil {
		if item, name := itemSize(c.GetDtype()); name == "float32" && littleEndian {
			// the values stay in the transport's buffers until the batcher stages them
			h, w, ch, err := checkShape(c.GetShape(), item, lim)
			if err == nil {
				err = checkSize(h, w, ch, item, name, rb.size)
			}
			if err != nil {
				rb.release()
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			return &Frame{H: h, W: w, C: ch, pieces: rb.pieces, freePieces: rb.free, Wavelengths: c.GetWavelengths(), ID: req.GetFrameId()}, nil
		}
		// another dtype: gathered into one buffer and converted as usual
		buf := getBuf(rb.size)
		n := 0
		for _, p := range rb.pieces {
			n += copy((*buf)[n:], p)
		}
		rb.release()
		c.Data = *buf
		rb = &requestBuf{buf: buf, nonFinite: -1}
	}
	f, err := FrameFromRaw(c.GetShape(), c.GetDtype(), c.GetData(), lim)
	if rb != nil {
		if err == nil && len(f.Data) > 0 && unsafe.Pointer(&f.Data[0]) == unsafe.Pointer(&c.GetData()[0]) {
			f.buf = rb.buf // the frame's values are the request's bytes: back to the pool once scored
			f.scanned, f.nonFinite = rb.scanned, rb.nonFinite
		} else {
			rb.release() // converted (another dtype) or refused: the bytes are no longer needed
		}
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.Wavelengths = c.GetWavelengths()
	f.ID = req.GetFrameId()
	return f, nil
}

func (g *grpcScorer) score(ctx context.Context, req *servepb.ScoreRequest) (*servepb.ScoreResponse, error) {
	t0 := time.Now()
	if v, ok := requestBufs.Load(req); ok {
		defer v.(*requestBuf).res.release() // the request's share of the budget, once answered
	}
	f, err := g.frame(ctx, req)
	if err != nil {
		cause := "bad_request"
		switch status.Code(err) {
		case codes.PermissionDenied:
			cause = "forbidden"
		case codes.ResourceExhausted:
			cause = "busy"
		}
		g.s.m.error(cause)
		return nil, err
	}
	g.s.m.stage("decode", time.Since(t0))
	r, err := g.s.Score(ctx, f)
	if err != nil {
		return nil, grpcError(err)
	}
	t1 := time.Now()
	defer func() { g.s.m.stage("encode", time.Since(t1)) }()
	return responseOf(req, &r, g.s.sc.Rule.Threshold), nil
}

func responseOf(req *servepb.ScoreRequest, r *Result, threshold float64) *servepb.ScoreResponse {
	resp := &servepb.ScoreResponse{FrameId: req.GetFrameId(), ImageScore: r.ImageScore, ImageThreshold: threshold, Decision: r.Decision,
		AnomalyPixels: int64(r.AnomalyPixels), Height: int32(r.H), Width: int32(r.W)}
	if req.GetWantMap() {
		resp.Scores = make([]byte, 4*len(r.Scores))
		for i, v := range r.Scores {
			binary.LittleEndian.PutUint32(resp.Scores[4*i:], math.Float32bits(v))
		}
		resp.Decisions = make([]byte, len(r.Decisions))
		for i, v := range r.Decisions {
			if v {
				resp.Decisions[i] = 1
			}
		}
	}
	return resp
}

// Score scores one cube.
func (g *grpcScorer) Score(ctx context.Context, req *servepb.ScoreRequest) (*servepb.ScoreResponse, error) {
	g.s.m.request("grpc")
	return g.score(ctx, req)
}

// ScoreStream answers each request of a camera feed in order. Up to the batch size of
// frames of one stream are in flight at once (so they batch together); a frame that
// fails is answered with its error code and message, and the stream goes on.
func (g *grpcScorer) ScoreStream(stream servepb.Scorer_ScoreStreamServer) error {
	ctx := stream.Context()
	type pending struct{ ch chan *servepb.ScoreResponse }
	inflight := make(chan pending, g.s.opts.MaxBatch)
	sendErr := make(chan error, 1)
	go func() {
		for p := range inflight {
			resp := <-p.ch
			if err := stream.Send(resp); err != nil {
				// the client went away: drain the rest without sending
				for p := range inflight {
					<-p.ch
				}
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	var recvErr error
	for {
		req, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		g.s.m.request("grpc_stream")
		p := pending{ch: make(chan *servepb.ScoreResponse, 1)}
		select {
		case inflight <- p:
		case <-ctx.Done():
			recvErr = ctx.Err()
		}
		if recvErr != nil {
			if rb := takeRequestBuf(req); rb != nil { // not scored: give its bytes back
				rb.release()
				rb.res.release()
			}
			break
		}
		go func(req *servepb.ScoreRequest) {
			resp, err := g.score(ctx, req)
			if err != nil {
				st, _ := status.FromError(err)
				resp = &servepb.ScoreResponse{FrameId: req.GetFrameId(), ErrorCode: int32(st.Code()), Error: st.Message()}
			}
			p.ch <- resp
		}(req)
	}
	close(inflight)
	if err := <-sendErr; err != nil {
		return err
	}
	if recvErr != nil {
		return status.FromContextError(recvErr).Err()
	}
	return nil
}
