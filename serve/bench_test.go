package serve

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScorer measures the scorer alone (no transport): frames per second at batch 1
// and 8 on 256×256 frames of the run in $SPECTRACLIP_SERVE_BENCH_RUN (default: the tiny
// test run with 32×32 frames), to compare with `spectraclip bench` and `spectraclip loadtest`.
func BenchmarkScorer(b *testing.B) {
	sc, h, w := benchScorer(b)
	defer sc.Close()
	rng := rand.New(rand.NewSource(1))
	for _, bs := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d_%dx%d", bs, h, w), func(b *testing.B) {
			frames := make([]*Frame, bs)
			for i := range frames {
				frames[i] = randomFrame(rng, h, w, sc.Bands)
			}
			if _, err := sc.Score(frames); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := sc.Score(frames); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bs*b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkBatcher measures the batcher (gathering into staging tensors overlapped with the
// forward) without transport: 16 goroutines submit frames of the run in
// $SPECTRACLIP_SERVE_BENCH_RUN (default: the tiny test run) with --max-batch 8; frames per
// second, to compare with BenchmarkScorer's batch of 8 and with `spectraclip bench`.
func BenchmarkBatcher(b *testing.B) {
	sc, h, w := benchScorer(b)
	defer sc.Close()
	rng := rand.New(rand.NewSource(1))
	const clients = 16
	frames := make([]*Frame, clients)
	for i := range frames {
		frames[i] = randomFrame(rng, h, w, sc.Bands)
	}
	bt, err := NewBatcher(sc, 8, 5*time.Millisecond, 64, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Close(context.Background())
	if _, err := bt.Submit(context.Background(), frames[0]); err != nil { // warm-up
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := bt.Submit(context.Background(), frames[c]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// benchScorer opens the run in $SPECTRACLIP_SERVE_BENCH_RUN with 256×256 frames to score,
// or the tiny test run with 32×32 frames.
func benchScorer(b *testing.B) (*Scorer, int, int) {
	runDir, h, w := os.Getenv("SPECTRACLIP_SERVE_BENCH_RUN"), 256, 256
	if runDir == "" {
		runDir, h, w = testRun, 32, 32
	}
	sc, err := OpenScorer(runDir, "", 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	return sc, h, w
}

// BenchmarkFirstNonFinite: the NaN/Inf scan on 32 KiB (in the cache, as it runs right after
// each piece is copied) and on a whole 256×256×61 cube (from memory), each starting on an
// 8-byte boundary and between two.
func BenchmarkFirstNonFinite(b *testing.B) {
	v := make([]float32, 256*256*61)
	for i := range v {
		v[i] = float32(i%1000) / 7
	}
	for _, n := range []int{8192, len(v) - 1} {
		for _, at := range []int{0, 1} { // starting on an 8-byte boundary, and between two
			b.Run(fmt.Sprintf("%d/offset%d", 4*n, 4*at), func(b *testing.B) {
				b.SetBytes(int64(4 * n))
				for range b.N {
					if firstNonFinite(v[at:at+n]) != -1 {
						b.Fatal("found a NaN")
					}
				}
			})
		}
	}
}
