package serve

import (
	"context"
	"math"
	"math/rand"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spectraclip/spectraclip/serve/client"
)

// TestLoadTestWarmupAndBench: against a real server over both protocols, each level's
// warm-up requests are sent but not counted (the server's request counter is the closed
// form 1 + Σ clients×warmup + requests), and the bench figures around each level are the
// mean of the two samples taken before and after it.
func TestLoadTestWarmupAndBench(t *testing.T) {
	s, httpURL, grpcAddr := startServer(t, Options{MaxBatch: 4, MaxWait: time.Millisecond, Queue: 32, Workers: 1})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	cube := cubeOf(randomFrame(rng, 32, 32, s.Scorer().Bands))
	for _, c := range []struct {
		proto string
		dial  func() (client.Client, error)
	}{
		{"http", func() (client.Client, error) { return client.Dial(httpURL) }},
		{"grpc", func() (client.Client, error) { return client.Dial("grpc://" + grpcAddr) }},
	} {
		cl, err := c.dial()
		if err != nil {
			t.Fatal(err)
		}
		samples := []client.BenchSample{{FPS: 10, CPUmsFrame: 100}, {FPS: 20, CPUmsFrame: 50}, {FPS: 40, CPUmsFrame: 26}}
		benchRuns := 0
		o := client.LoadOptions{Clients: []int{1, 3}, Requests: 5, Warmup: 2, Timeout: 30 * time.Second,
			ServerCPU: client.MetricsCPU(httpURL + "/metrics"),
			Bench: func() (client.BenchSample, error) {
				benchRuns++
				return samples[benchRuns-1], nil
			}}
		before := testutil.ToFloat64(s.Metrics().requests.WithLabelValues(c.proto))
		levels, err := client.LoadTest(context.Background(), cl, cube, o)
		cl.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.proto, err)
		}
		got := testutil.ToFloat64(s.Metrics().requests.WithLabelValues(c.proto)) - before
		if want := 1.0 + (1*2 + 5) + (3*2 + 5); got != want {
			t.Errorf("%s: the server counted %v requests, want %v (1 first + warm-up + timed)", c.proto, got, want)
		}
		if len(levels) != 2 || benchRuns != 3 {
			t.Fatalf("%s: %d levels, %d bench runs", c.proto, len(levels), benchRuns)
		}
		for i, l := range levels {
			wantFPS := (samples[i].FPS + samples[i+1].FPS) / 2
			wantCPU := (samples[i].CPUmsFrame + samples[i+1].CPUmsFrame) / 2
			if l.OK != 5 || l.Refused != 0 || l.Warmup != 2*l.Clients || l.WarmupRefused != 0 {
				t.Errorf("%s level %d: %+v", c.proto, i, l)
			}
			if l.BenchFPS != wantFPS || l.BenchCPUms != wantCPU || math.Abs(l.Ratio-l.Throughput/wantFPS) > 1e-12 {
				t.Errorf("%s level %d: bench %v fps %v ms ratio %v, want %v fps %v ms ratio %v", c.proto, i, l.BenchFPS, l.BenchCPUms, l.Ratio, wantFPS, wantCPU, l.Throughput/wantFPS)
			}
			if l.ServerCPUms < 0 || math.IsNaN(l.ServerCPUms) || math.IsInf(l.ServerCPUms, 0) {
				t.Errorf("%s level %d: server CPU %v ms per frame", c.proto, i, l.ServerCPUms)
			}
		}
		var b strings.Builder
		client.WriteLoadTable(&b, levels)
		if !strings.Contains(b.String(), "| 3 | 5 | 5 | 0 |") || !strings.Contains(b.String(), "bench CPU ms/frame") {
			t.Errorf("%s table:\n%s", c.proto, b.String())
		}
	}
}

// TestMetricsCPU: the server's process_cpu_seconds_total, read through its /metrics page,
// grows by the CPU time this process (the same process) spends between two reads, measured
// independently by getrusage: the loop spins until getrusage says 0.3 s of CPU went by
// (CPU time, not wall time, so a loaded machine only makes it take longer). Tolerance: 3
// of /proc's 10 ms ticks each way.
func TestMetricsCPU(t *testing.T) {
	_, httpURL, _ := startServer(t, Options{MaxBatch: 1, Queue: 4, Workers: 1})
	read := client.MetricsCPU(httpURL + "/metrics")
	cpu := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	r0 := cpu()
	c0, err := read(context.Background())
	if err != nil || c0 <= 0 {
		t.Fatalf("first read: %v %v", c0, err)
	}
	r1 := cpu()
	var sink uint64
	for cpu()-r1 < 0.3 {
		for i := range 10000 {
			sink += uint64(i) * 2654435761
		}
	}
	r2 := cpu()
	c1, err := read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r3 := cpu()
	// c0 was read between r0 and r1, c1 between r2 and r3
	if d, lo, hi := c1-c0, r2-r1, r3-r0; d < lo-0.03 || d > hi+0.03 {
		t.Fatalf("process CPU grew by %.3f s between two reads; getrusage says %.3f to %.3f s (sink %d)", d, lo, hi, sink)
	}
	if _, err := client.MetricsCPU(httpURL + "/healthz")(context.Background()); err == nil || !strings.Contains(err.Error(), "process_cpu_seconds_total") {
		t.Fatalf("a page without the metric: %v", err)
	}
}
