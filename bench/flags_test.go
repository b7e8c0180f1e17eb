package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/config"
)

// TestBoundErrorsNameTheFlag: Run's bound errors name the flags that set the options:
// bench's own by default, the caller's (loadtest's --bench-*) when Flags says so.
func TestBoundErrorsNameTheFlag(t *testing.T) {
	huge := config.MaxThreads() + 1
	names := FlagNames{Threads: "--bench-threads", Batch: "--bench-batch", Iters: "--bench-iters", Size: "--size", Warmup: "--bench-warmup", TrainIters: "--bench-train-iters"}
	for _, tc := range []struct {
		o          Options
		own, named string
	}{
		{Options{Threads: huge}, "--threads", "--bench-threads"},
		{Options{Batch: config.MaxBatchSize + 1}, "--batch", "--bench-batch"},
		{Options{H: MaxSide + 1, W: 1}, "--size", "--size"},
		{Options{Iters: MaxIters + 1}, "--iters", "--bench-iters"},
		{Options{Warmup: MaxIters + 1}, "--warmup", "--bench-warmup"},
		{Options{TrainIters: MaxIters + 1}, "--train-iters", "--bench-train-iters"},
	} {
		for _, want := range []string{tc.own, tc.named} {
			o := tc.o
			if want == tc.named {
				o.Flags = names
			}
			_, err := Run(o)
			if err == nil || !strings.HasPrefix(err.Error(), want+" ") {
				t.Errorf("%+v: error %v, want it to start with %s", o, err, want)
			}
		}
	}
	if err := (Options{Threads: huge, Flags: names}).Check(); err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("--bench-threads %d:", huge)) {
		t.Errorf("Check: %v", err)
	}
}
