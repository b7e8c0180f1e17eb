package client

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// LoadLevel is the outcome of one concurrency level of a load test.
type LoadLevel struct {
	Clients    int     `json:"clients"`
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Refused    int     `json:"refused"` // 503 / RESOURCE_EXHAUSTED and other errors
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"frames_per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	FirstError string  `json:"first_error,omitempty"`
	// BenchFPS is `spectraclip bench`'s frames per second measured in the same run, right
	// before and after this level (their mean); Ratio is Throughput / BenchFPS. Zero when
	// no bench was asked for.
	BenchFPS float64 `json:"bench_fps,omitempty"`
	Ratio    float64 `json:"ratio_to_bench,omitempty"`
}

// LoadTest sends requests copies of cube with each number of concurrent clients in turn
// (closed loop: each client sends its next request when the previous one is answered) and
// measures the throughput and the latency percentiles of the answered ones.
func LoadTest(ctx context.Context, c Client, cube *Cube, clients []int, requests int, timeout time.Duration) ([]LoadLevel, error) {
	if requests < 1 {
		return nil, fmt.Errorf("--requests %d: must be ≥ 1", requests)
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
	var out []LoadLevel
	for _, n := range clients {
		if n < 1 {
			return nil, fmt.Errorf("--clients %d: must be ≥ 1", n)
		}
		lv := LoadLevel{Clients: n, Requests: requests}
		var next atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := 0; w < n; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(requests) {
					rctx, cancel := context.WithTimeout(ctx, timeout)
					s := time.Now()
					err := send(rctx)
					d := time.Since(s)
					cancel()
					mu.Lock()
					if err != nil {
						lv.Refused++
						if lv.FirstError == "" {
							lv.FirstError = err.Error()
						}
					} else {
						lv.OK++
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		lv.Seconds = time.Since(t0).Seconds()
		lv.Throughput = float64(lv.OK) / lv.Seconds
		if len(lat) > 0 {
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			q := func(p float64) float64 {
				i := int(p*float64(len(lat))+0.5) - 1
				if i < 0 {
					i = 0
				}
				if i >= len(lat) {
					i = len(lat) - 1
				}
				return float64(lat[i].Microseconds()) / 1000
			}
			lv.P50ms, lv.P99ms = q(0.50), q(0.99)
		}
		out = append(out, lv)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// WriteLoadTable prints the levels as a Markdown table (with the bench columns when the
// levels have them).
func WriteLoadTable(w io.Writer, levels []LoadLevel) {
	bench := len(levels) > 0 && levels[0].BenchFPS > 0
	if bench {
		fmt.Fprintln(w, "| clients | requests | ok | refused | frames/s | p50 ms | p99 ms | bench frames/s | served/bench |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	} else {
		fmt.Fprintln(w, "| clients | requests | ok | refused | frames/s | p50 ms | p99 ms |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	}
	for _, l := range levels {
		fmt.Fprintf(w, "| %d | %d | %d | %d | %.2f | %.1f | %.1f |", l.Clients, l.Requests, l.OK, l.Refused, l.Throughput, l.P50ms, l.P99ms)
		if bench {
			fmt.Fprintf(w, " %.2f | %.0f %% |", l.BenchFPS, 100*l.Ratio)
		}
		fmt.Fprintln(w)
	}
}
