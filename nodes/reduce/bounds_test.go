package reduce

import (
	"os"
	"testing"

	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/torch"
)

// TestCovStatsWorkingSet: folding a 128 MiB float32 batch into the PCA/mixer covariance
// statistics raises the process's peak resident memory by well under the batch's own size
// (before: two float64 copies of it, 512 MiB), and the statistics equal a float64 reference
// computed here.
func TestCovStatsWorkingSet(t *testing.T) {
	const h, w, c = 2048, 1024, 16
	vals := make([]float32, h*w*c)
	for i := range vals {
		vals[i] = float32((i*7919)%1000)/1000 + float32(i%c)
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(vals, 1, h, w, c)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	// Reset the peak (VmHWM) to the current RSS, then fold the batch in.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	base := procstat.MB("VmRSS:")
	cs := newCovStats(c)
	if err := cs.addBatch(x); err != nil {
		t.Fatal(err)
	}
	grew := procstat.MB("VmHWM:") - base
	if grew > 128 {
		t.Errorf("peak RSS grew by %.0f MiB folding a 128 MiB batch; want less than the batch", grew)
	}
	// Reference: mean and scatter in float64, two passes.
	mean := make([]float64, c)
	for i, v := range vals {
		mean[i%c] += float64(v)
	}
	n := float64(h * w)
	for k := range mean {
		mean[k] /= n
	}
	for k := range mean {
		if d := cs.mean[k] - mean[k]; d > 1e-9 || d < -1e-9 {
			t.Fatalf("mean[%d] = %v, want %v", k, cs.mean[k], mean[k])
		}
	}
	m2 := make([]float64, c*c)
	for p := 0; p < h*w; p++ {
		px := vals[p*c : (p+1)*c]
		for i := 0; i < c; i++ {
			di := float64(px[i]) - mean[i]
			for j := 0; j < c; j++ {
				m2[i*c+j] += di * (float64(px[j]) - mean[j])
			}
		}
	}
	for i := range m2 {
		if d := (cs.m2[i] - m2[i]) / max(1, abs(m2[i])); d > 1e-9 || d < -1e-9 {
			t.Fatalf("scatter[%d] = %v, want %v", i, cs.m2[i], m2[i])
		}
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
