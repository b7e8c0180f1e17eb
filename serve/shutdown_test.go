package serve

import (
	"context"
	"net"
	"testing"
)

// TestServeAfterShutdown: a server shut down before Serve got to start its listeners (a
// SIGTERM right at start-up) returns nil from Serve, like an ordinary drain, for HTTP and gRPC
// alike (gRPC's own answer is ErrServerStopped).
func TestServeAfterShutdown(t *testing.T) {
	s, err := New(Options{Run: testRun, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(hl, gl); err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}
