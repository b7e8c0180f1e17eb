package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadLevel is the outcome of one concurrency level of a load test.
type LoadLevel struct {
	Clients  int `json:"clients"`
	Requests int `json:"requests"`
	// Warmup is how many untimed requests went before the timed ones (Warmup per client
	// in LoadOptions); WarmupRefused how many of them were not answered.
	Warmup        int     `json:"warmup_requests"`
	WarmupRefused int     `json:"warmup_refused,omitempty"`
	OK            int     `json:"ok"`
	Refused       int     `json:"refused"` // 503 / RESOURCE_EXHAUSTED and other errors
	Seconds       float64 `json:"seconds"`
	Throughput    float64 `json:"frames_per_second"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	FirstError    string  `json:"first_error,omitempty"`
	// ServerCPUms is the server process's CPU time (user + system) per answered frame over
	// the timed requests, from its process_cpu_seconds_total; zero without LoadOptions.ServerCPU.
	ServerCPUms float64 `json:"server_cpu_ms_per_frame,omitempty"`
	// BenchFPS is `spectraclip bench`'s frames per second measured in the same run, right
	// before and after this level (their mean); Ratio is Throughput / BenchFPS; BenchCPUms
	// is bench's CPU time per frame (the mean of the two). Zero when no bench was asked for.
	BenchFPS   float64 `json:"bench_fps,omitempty"`
	Ratio      float64 `json:"ratio_to_bench,omitempty"`
	BenchCPUms float64 `json:"bench_cpu_ms_per_frame,omitempty"`
}

// BenchSample is one bench measurement: frames per second and CPU milliseconds per frame.
type BenchSample struct {
	FPS        float64
	CPUmsFrame float64
}

// LoadOptions configure LoadTest.
type LoadOptions struct {
	Clients  []int         // concurrent clients, one level after the other
	Requests int           // timed requests per level
	Warmup   int           // untimed requests per client before each level's timed ones
	Timeout  time.Duration // deadline per request
	// Bench, when set, runs before the first level and after every level (the server idles
	// meanwhile); each level's bench figures are the mean of the two runs around it.
	Bench func() (BenchSample, error)
	// ServerCPU, when set, reads the server's CPU seconds so far (MetricsCPU); each level
	// then reports the server's CPU time per frame.
	ServerCPU func(context.Context) (float64, error)
}

// LoadTest sends o.Requests copies of cube with each number of concurrent clients in turn
// (closed loop: each client sends its next request when the previous one is answered) and
// measures the throughput and the latency percentiles of the answered ones. Before each
// level's timed requests every client sends o.Warmup untimed ones, so that the level is
// measured in the server's steady state at that concurrency (its buffers grown, its
// allocator's blocks for those batch sizes cached), not through its first-time costs.
func LoadTest(ctx context.Context, c Client, cube *Cube, o LoadOptions) ([]LoadLevel, error) {
	if o.Requests < 1 {
		return nil, fmt.Errorf("--requests %d: must be ≥ 1", o.Requests)
	}
	if o.Warmup < 0 {
		return nil, fmt.Errorf("--warmup %d: must be ≥ 0", o.Warmup)
	}
	for _, n := range o.Clients {
		if n < 1 {
			return nil, fmt.Errorf("--clients %d: must be ≥ 1", n)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	// the request is encoded once where the client can (the sender's CPU is not the
	// server's, but on one machine they share the cores)
	send := func(ctx context.Context) error { _, err := c.Score(ctx, cube, false); return err }
	if pc, ok := c.(Preparer); ok {
		p, err := pc.Prepare(cube, false)
		if err != nil {
			return nil, err
		}
		send = func(ctx context.Context) error { _, err := p.Send(ctx); return err }
	}
	// one untimed request first: connections, server warm
	if err := send(ctx); err != nil {
		return nil, fmt.Errorf("first request: %w", err)
	}
	var before BenchSample
	if o.Bench != nil {
		var err error
		if before, err = o.Bench(); err != nil {
			return nil, err
		}
	}
	var out []LoadLevel
	for _, n := range o.Clients {
		lv := LoadLevel{Clients: n, Requests: o.Requests, Warmup: n * o.Warmup}
		if lv.Warmup > 0 {
			w := closedLoop(ctx, send, n, lv.Warmup, o.Timeout)
			lv.WarmupRefused = w.refused
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		var cpu0 float64
		if o.ServerCPU != nil {
			var err error
			if cpu0, err = o.ServerCPU(ctx); err != nil {
				return out, err
			}
		}
		t0 := time.Now()
		r := closedLoop(ctx, send, n, o.Requests, o.Timeout)
		lv.Seconds = time.Since(t0).Seconds()
		lv.OK, lv.Refused, lv.FirstError = len(r.lat), r.refused, r.firstErr
		lv.Throughput = float64(lv.OK) / lv.Seconds
		if o.ServerCPU != nil {
			cpu1, err := o.ServerCPU(ctx)
			if err != nil {
				return out, err
			}
			if lv.OK > 0 {
				lv.ServerCPUms = 1000 * (cpu1 - cpu0) / float64(lv.OK)
			}
		}
		if len(r.lat) > 0 {
			lat := r.lat
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			q := func(p float64) float64 {
				i := int(p*float64(len(lat))+0.5) - 1
				i = min(max(i, 0), len(lat)-1)
				return float64(lat[i].Microseconds()) / 1000
			}
			lv.P50ms, lv.P99ms = q(0.50), q(0.99)
		}
		if err := ctx.Err(); err != nil {
			return append(out, lv), err
		}
		if o.Bench != nil {
			after, err := o.Bench()
			if err != nil {
				return out, err
			}
			lv.BenchFPS = (before.FPS + after.FPS) / 2
			lv.BenchCPUms = (before.CPUmsFrame + after.CPUmsFrame) / 2
			if lv.BenchFPS > 0 {
				lv.Ratio = lv.Throughput / lv.BenchFPS
			}
			before = after
		}
		out = append(out, lv)
	}
	return out, nil
}

type loopResult struct {
	lat      []time.Duration // of the answered requests
	refused  int
	firstErr string
}

// closedLoop sends requests requests from n concurrent senders, each sending its next one
// when its last is answered.
func closedLoop(ctx context.Context, send func(context.Context) error, n, requests int, timeout time.Duration) loopResult {
	var r loopResult
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(requests) && ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, timeout)
				s := time.Now()
				err := send(rctx)
				d := time.Since(s)
				cancel()
				mu.Lock()
				if err != nil {
					r.refused++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				} else {
					r.lat = append(r.lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return r
}

// MetricsCPU returns a reader of a server's CPU seconds so far: process_cpu_seconds_total
// on its Prometheus page (url: http://HOST:PORT/metrics of `spectraclip serve`).
func MetricsCPU(url string) func(context.Context) (float64, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context) (float64, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return 0, fmt.Errorf("--metrics %s: %w", url, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, fmt.Errorf("--metrics %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("--metrics %s: answered %s", url, resp.Status)
		}
		v, err := promValue(resp.Body, "process_cpu_seconds_total")
		if err != nil {
			return 0, fmt.Errorf("--metrics %s: %w", url, err)
		}
		return v, nil
	}
}

// promValue is the value of an unlabelled metric in Prometheus's text format.
func promValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || !strings.HasPrefix(rest, " ") {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no " + name + " on the page (not a spectraclip serve /metrics?)")
}

// WriteLoadTable prints the levels as a Markdown table (with the server CPU and bench
// columns when the levels have them).
func WriteLoadTable(w io.Writer, levels []LoadLevel) {
	var cpu, bench bool
	for _, l := range levels {
		cpu = cpu || l.ServerCPUms > 0
		bench = bench || l.BenchFPS > 0
	}
	head, rule := "| clients | requests | ok | refused | frames/s | p50 ms | p99 ms |", "|---:|---:|---:|---:|---:|---:|---:|"
	if cpu {
		head, rule = head+" server CPU ms/frame |", rule+"---:|"
	}
	if bench {
		head, rule = head+" bench frames/s | bench CPU ms/frame | served/bench |", rule+"---:|---:|---:|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, l := range levels {
		fmt.Fprintf(w, "| %d | %d | %d | %d | %.2f | %.1f | %.1f |", l.Clients, l.Requests, l.OK, l.Refused, l.Throughput, l.P50ms, l.P99ms)
		if cpu {
			fmt.Fprintf(w, " %.1f |", l.ServerCPUms)
		}
		if bench {
			fmt.Fprintf(w, " %.2f | %.1f | %.0f %% |", l.BenchFPS, l.BenchCPUms, 100*l.Ratio)
		}
		fmt.Fprintln(w)
	}
}
