package bench

import (
	"strings"
	"testing"
)

// Each variant runs in a child process of the test binary (re-run through TestMain's
// ChildMain) and reports its own peak RSS; a failing child's error names the variant and the
// child's message.
func TestRunIsolatedPerVariantPeak(t *testing.T) {
	o := Options{Variants: []string{"pca", "drcnn"}, Device: "cpu", Batch: 1, H: 16, W: 16, Threads: 1, Iters: 1, Isolate: true}
	rep, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Isolated || len(rep.Variants) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	peak := 0.0
	for _, v := range rep.Variants {
		if v.FPS <= 0 || v.PeakRSSMB <= 0 || v.PeakRSSMB+1 < v.RSSEndMB || len(v.Stages) != 6 {
			t.Errorf("%s: fps %v peak %v MB, rss at end %v MB, stages %v", v.Variant, v.FPS, v.PeakRSSMB, v.RSSEndMB, v.Stages)
		}
		// one LibTorch thread: a frame's CPU time is at most its wall time, plus the Go
		// runtime's own threads (closed form: 1000/FPS ms of wall per frame)
		if wall := 1000 / v.FPS; v.CPUmsPerFrame <= 0 || v.CPUmsPerFrame > 1.5*wall+5 {
			t.Errorf("%s: %.2f CPU ms per frame at one thread and %.2f wall ms per frame", v.Variant, v.CPUmsPerFrame, wall)
		}
		peak = max(peak, v.PeakRSSMB)
	}
	if rep.PeakRSSMB != peak {
		t.Errorf("report peak %v, largest variant's %v", rep.PeakRSSMB, peak)
	}
	o.Variants = []string{"nope"}
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "bench nope") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown variant in a child: %v", err)
	}
}
