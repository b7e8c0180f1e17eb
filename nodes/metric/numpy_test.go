package metric

import (
	"encoding/binary"
	"encoding/json"
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// numpyRanking computes AUROC (Mann–Whitney U with average ranks for ties) and sklearn's
// average precision (−Σ diff(recall)·precision over the distinct thresholds, as
// sklearn.metrics.average_precision_score) in numpy, independently of this package.
func numpyRanking(t *testing.T, scores []float64, labels []bool) (auroc, ap float64) {
	t.Helper()
	dir := t.TempDir()
	sb := make([]byte, 8*len(scores))
	lb := make([]byte, len(labels))
	for i, s := range scores {
		binary.LittleEndian.PutUint64(sb[8*i:], math.Float64bits(s))
		if labels[i] {
			lb[i] = 1
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "s.bin"), sb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "l.bin"), lb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testpy.Python(), filepath.Join("testdata", "ranking.py"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	var r struct{ AUROC, AP float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("numpy output %q: %v", out, err)
	}
	return r.AUROC, r.AP
}
