package serve

import (
	"runtime"
	"testing"
)

// TestWarmUpWithinBudget (#25 item 9): the warm-up's full batch is at most the frames of
// the run's size that fit in --max-inflight-mb (a batch of more could never fill: each of
// its requests holds its frame in the budget). With --max-batch 1024 and a 4 MiB budget the
// 32×32×61 run warms up with 16 frames instead of 1024 (250 MB of random frames; with
// 256×256 frames 16 GB).
func TestWarmUpWithinBudget(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s, err := New(Options{Run: testRun, MaxBatch: 1024, MaxInflight: 4 << 20, MaxBytes: 1 << 20, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	s.Shutdown(t.Context())
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Errorf("opening and warming up allocated %d MiB in Go, want < 64 (16 frames of 244 KiB)", d>>20)
	}
}
