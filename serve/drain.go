package serve

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/stats"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

// inFlight counts the requests in progress, so that a drain cut short by its deadline can
// say how many requests it cut off and whose they were:
//
//   - http: HTTP connections holding a request (from its first byte to its answer's end);
//   - grpc: Scorer calls begun and not ended (from their headers, so while the cube is still
//     arriving too);
//   - scoring: requests received in full and handed to the batcher, not yet answered.
//
// A request cut off while it was still arriving (or its answer was being read) was the
// client's to finish; one received in full and not answered is the server's failure.
type inFlight struct {
	mu      sync.Mutex
	conns   map[net.Conn]http.ConnState
	active  int // conns in StateActive
	grpc    atomic.Int64
	scoring atomic.Int64

	cutOnce sync.Once
	cut     cutOff // taken once, at the drain deadline, before anything is cut
}

// cutOff is what was in flight when the drain deadline passed.
type cutOff struct{ http, grpc, scoring int64 }

// connState is the HTTP server's ConnState hook.
func (f *inFlight) connState(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		f.conns = map[net.Conn]http.ConnState{}
	}
	if f.conns[c] == http.StateActive {
		f.active--
	}
	if st == http.StateActive {
		f.active++
	}
	if st == http.StateClosed || st == http.StateHijacked {
		delete(f.conns, c)
	} else {
		f.conns[c] = st
	}
}

type scorerCall struct{}

// TagRPC, HandleRPC, TagConn and HandleConn make inFlight a gRPC stats.Handler counting
// the Scorer service's calls (not health watches, which last as long as their client).
func (f *inFlight) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, "/"+servepb.Scorer_ServiceDesc.ServiceName+"/") {
		return context.WithValue(ctx, scorerCall{}, true)
	}
	return ctx
}

func (f *inFlight) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if s.IsClient() || ctx.Value(scorerCall{}) == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		f.grpc.Add(1)
	case *stats.End:
		f.grpc.Add(-1)
	}
}

func (f *inFlight) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (f *inFlight) HandleConn(context.Context, stats.ConnStats)                       {}

// noteCut records, once, what is in flight; Shutdown calls it when the drain deadline has
// passed and before it cuts anything off.
func (f *inFlight) noteCut() {
	f.cutOnce.Do(func() {
		f.mu.Lock()
		f.cut.http = int64(f.active)
		f.mu.Unlock()
		f.cut.grpc, f.cut.scoring = f.grpc.Load(), f.scoring.Load()
	})
}

// drainVerdict is Shutdown's outcome when the drain deadline passed with requests still in
// flight. Those received in full and not answered make it an error (the CLI exits 1);
// those still arriving, or whose answers were still being read, are cut off with a warning
// and the drain counts as done (exit 0): finishing an upload within --drain-timeout is the
// client's part.
func (s *Server) drainVerdict() error {
	s.flight.noteCut()
	c := s.flight.cut
	if c.scoring > 0 {
		return fmt.Errorf("drain timed out: %d request(s) received in full were not answered (in flight then: %d HTTP, %d gRPC)", c.scoring, c.http, c.grpc)
	}
	if n := c.http + c.grpc; n > 0 {
		s.opts.Log.Warnf("drain timed out: cut off %d request(s) still arriving or reading their answer (%d HTTP, %d gRPC); every request received in full was answered", n, c.http, c.grpc)
	}
	return nil
}
