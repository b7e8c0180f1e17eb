package serve

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/spectraclip/spectraclip/bench"
	"github.com/spectraclip/spectraclip/serve/client"
)

// LoadTestOptions are `spectraclip loadtest`'s: the server, the frame sent, the levels of
// concurrency and what else is measured around them. Errors name loadtest's flags.
type LoadTestOptions struct {
	Server      string // http://HOST:PORT or grpc://HOST:PORT (https:// and grpcs:// for TLS)
	Credentials        // --token-file, --tls-ca
	Size        string // frame size HxW (random values)
	Bands       int    // bands per frame

	Clients  []int         // concurrent clients, one level after the other
	Requests int           // timed requests per level
	Warmup   int           // untimed requests per client before each level
	Timeout  time.Duration // deadline per request

	// Metrics is the server's Prometheus URL, for its CPU time per frame ("" for none).
	// DefaultMetrics replaces it with SERVER/metrics for an http(s):// server (the flag
	// was not given).
	Metrics        string
	DefaultMetrics bool
	// Shm, when set, is the server's --shm-dir on this machine: the cube is written there
	// once and every request names it instead of carrying it.
	Shm string
	// BenchVariant, when set, runs bench for that variant in this process before the first
	// level and after every level (the served/bench ratio), with Bench's Batch, Iters,
	// Device and Threads (--bench-batch, --bench-iters, --bench-device, --bench-threads);
	// LoadTest sets the rest.
	BenchVariant string
	Bench        bench.Options
}

// LoadTestResult is a load test's outcome: one level per number of concurrent clients.
type LoadTestResult struct {
	Levels []client.LoadLevel
}

// LoadTest checks o, every bound before any request, connects to o.Server and sends the
// same random cube (seeded, encoded once) from each number of concurrent clients in turn
// (client.LoadTest), with the server's CPU time per frame and bench's figures when asked.
func LoadTest(ctx context.Context, o LoadTestOptions) (*LoadTestResult, error) {
	if o.Server == "" {
		return nil, errors.New("--server is required (http://HOST:PORT or grpc://HOST:PORT)")
	}
	h, w, err := bench.ParseSize(o.Size)
	if err != nil {
		return nil, err
	}
	if o.Bands < 1 {
		return nil, fmt.Errorf("--bands %d: must be ≥ 1", o.Bands)
	}
	bo := o.Bench
	if o.BenchVariant != "" {
		if bo.Batch < 1 {
			return nil, fmt.Errorf("--bench-batch %d: must be ≥ 1", bo.Batch)
		}
		// bench's bounds, checked before any request, naming loadtest's flags
		bo.Flags = bench.FlagNames{Threads: "--bench-threads", Batch: "--bench-batch", Iters: "--bench-iters", Size: "--size"}
		if err := bo.Check(); err != nil {
			return nil, err
		}
	}
	c, err := Dial(o.Server, o.Credentials)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lo := client.LoadOptions{Clients: o.Clients, Requests: o.Requests, Warmup: o.Warmup, Timeout: o.Timeout}
	metrics := o.Metrics
	if o.DefaultMetrics {
		if hc, ok := c.(*client.HTTP); ok {
			metrics = hc.Base + "/metrics"
		}
	}
	if metrics != "" {
		lo.ServerCPU = client.MetricsCPU(metrics)
	}
	if o.BenchVariant != "" {
		bo.Variants, bo.H, bo.W, bo.TrainIters, bo.Warmup = []string{o.BenchVariant}, h, w, 0, 1
		lo.Bench = func() (client.BenchSample, error) {
			r, err := bench.Run(bo)
			if err != nil {
				return client.BenchSample{}, fmt.Errorf("--bench-variant: %w", err)
			}
			return client.BenchSample{FPS: r.Variants[0].FPS, CPUmsFrame: r.Variants[0].CPUmsPerFrame}, nil
		}
	}
	rng := rand.New(rand.NewSource(1))
	v := make([]float32, h*w*o.Bands)
	for i := range v {
		v[i] = rng.Float32()
	}
	cube := client.Float32Cube(h, w, o.Bands, v)
	if o.Shm != "" {
		// written once; every request names it (the cube never changes)
		name := fmt.Sprintf("spectraclip-loadtest-%d", os.Getpid())
		if cube, err = client.WriteShm(o.Shm, name, cube); err != nil {
			return nil, fmt.Errorf("--shm: %w", err)
		}
		defer os.Remove(filepath.Join(o.Shm, name))
	}
	levels, err := client.LoadTest(ctx, c, cube, lo)
	if err != nil {
		return nil, err
	}
	return &LoadTestResult{Levels: levels}, nil
}
