package serve

import (
	"runtime"
	"testing"

	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// TestServeAutomaticThreads: --threads 0 is serve's own automatic count, the CPU cores shared
// by the workers, not the run's training.threads (the test run trains with 1); an explicit
// --threads wins.
func TestServeAutomaticThreads(t *testing.T) {
	for _, c := range []struct{ workers, threads, want int }{
		{1, 0, run.AutoThreads(1)},
		{2, 0, run.AutoThreads(2)},
		{1, 3, 3},
	} {
		s, _, _ := startServer(t, Options{Workers: c.workers, Threads: c.threads})
		if got := torch.NumThreads(); got != c.want || s.opts.Threads != c.want {
			t.Errorf("--workers %d --threads %d: LibTorch runs %d threads (server says %d), want %d (%d CPUs)",
				c.workers, c.threads, got, s.opts.Threads, c.want, runtime.NumCPU())
		}
	}
}
