package serve

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"
)

// ListenAndServe opens the run, warms it up, listens on httpAddr and grpcAddr (either may
// be "" to leave that protocol off), calls ready with the bound addresses, and serves until
// ctx ends (SIGTERM in the CLI); then it stops accepting, drains what is in flight within
// drain, and returns nil when that went cleanly.
func ListenAndServe(ctx context.Context, o Options, httpAddr, grpcAddr string, drain time.Duration, ready func(httpAddr, grpcAddr string)) error {
	if httpAddr == "" && grpcAddr == "" {
		return fmt.Errorf("--addr and --grpc-addr are both empty: nothing to serve on")
	}
	var hl, gl net.Listener
	var err error
	if httpAddr != "" {
		if hl, err = net.Listen("tcp", httpAddr); err != nil {
			return fmt.Errorf("--addr: %w", err)
		}
	}
	if grpcAddr != "" {
		if gl, err = net.Listen("tcp", grpcAddr); err != nil {
			if hl != nil {
				hl.Close()
			}
			return fmt.Errorf("--grpc-addr: %w", err)
		}
	}
	if o.Token == "" && o.Log != nil {
		for _, a := range []struct{ flag, addr string }{{"--addr", httpAddr}, {"--grpc-addr", grpcAddr}} {
			if a.addr != "" && exposed(a.addr) {
				o.Log.Warnf("%s %s listens beyond this machine without authentication: anyone who can reach it may score cubes; give --token-file (and --tls-cert/--tls-key), or listen on 127.0.0.1", a.flag, a.addr)
			}
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// the Go heap's soft limit: the in-flight budget and room for the runtime, so
		// that garbage left by requests is collected before the heap doubles (GOGC)
		// instead of adding up to another budget's worth of RSS
		inflight := o.MaxInflight
		if inflight == 0 {
			inflight = max(DefaultInflightMB<<20, o.MaxBytes, 256<<20)
		}
		debug.SetMemoryLimit(inflight + 64<<20)
	}
	// /healthz answers while the pipeline warms up; /readyz and scoring only after
	s, err := open(o)
	if err != nil {
		if hl != nil {
			hl.Close()
		}
		if gl != nil {
			gl.Close()
		}
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(hl, gl) }()
	if err := s.WarmUp(); err != nil {
		<-done
		return err
	}
	if ready != nil {
		var ha, ga string
		if hl != nil {
			ha = hl.Addr().String()
		}
		if gl != nil {
			ga = gl.Addr().String()
		}
		ready(ha, ga)
	}
	select {
	case <-ctx.Done():
	case err := <-done:
		if err != nil {
			return err
		}
	}
	o.Log.Info("shutting down: draining requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return <-done
}
