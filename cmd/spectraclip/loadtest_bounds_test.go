package main

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spectraclip/spectraclip/bench"
	"github.com/spectraclip/spectraclip/config"
)

// TestLoadtestBenchBounds: loadtest's --bench-threads, --bench-batch and --bench-iters
// beyond bench's bounds are refused before any request, and the error names the flag the
// user typed (before: the request went out, then bench's check named --threads, --batch
// or --iters, flags loadtest does not have).
func TestLoadtestBenchBounds(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	huge := fmt.Sprint(config.MaxThreads() + 1)
	for _, tc := range []struct {
		flag, value, bound string
	}{
		{"--bench-threads", huge, fmt.Sprint(config.MaxThreads())},
		{"--bench-batch", "100000", fmt.Sprint(config.MaxBatchSize)},
		{"--bench-iters", "1000000000", fmt.Sprint(bench.MaxIters)},
	} {
		_, err := runCLI(t, "loadtest", "--server", "http://"+l.Addr().String(), "--metrics", "", "--clients", "1", "--requests", "1",
			"--size", "8x8", "--bench-variant", "pca", tc.flag, tc.value)
		if err == nil {
			t.Errorf("%s %s: accepted", tc.flag, tc.value)
			continue
		}
		msg := errorLine(NewRootCmd(nil, nil), err)
		bare := "--" + strings.TrimPrefix(tc.flag, "--bench-") // the bench command's own flag
		if !strings.HasPrefix(msg, tc.flag+" "+tc.value) || !strings.Contains(msg, tc.bound) || strings.Contains(msg, bare) {
			t.Errorf("%s %s: error %q: want it to start with %q, name the bound %s and not %s", tc.flag, tc.value, msg, tc.flag+" "+tc.value, tc.bound, bare)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the refused loadtests connected to the server %d times (want the bounds checked before any request)", n)
	}
}
