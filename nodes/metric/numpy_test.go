package metric

import (
	"encoding/binary"
	"encoding/json"
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
	const script = `
import sys, json, numpy as np
d = sys.argv[1]
s = np.fromfile(d + "/s.bin", dtype="<f8")
y = np.fromfile(d + "/l.bin", dtype=np.uint8).astype(bool)
# Mann-Whitney with average ranks for ties
order = np.argsort(s, kind="mergesort")
ss = s[order]
ranks = np.empty(len(s))
i = 0
while i < len(ss):
    j = i
    while j + 1 < len(ss) and ss[j + 1] == ss[i]:
        j += 1
    ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
    i = j + 1
P, N = y.sum(), (~y).sum()
auc = (ranks[y].sum() - P * (P + 1) / 2) / (P * N)
# sklearn's precision_recall_curve + average_precision_score
desc = np.argsort(-s, kind="mergesort")
s2, y2 = s[desc], y[desc].astype(float)
idx = np.r_[np.where(np.diff(s2))[0], len(s2) - 1]
tps = np.cumsum(y2)[idx]
fps = 1 + idx - tps
prec = tps / (tps + fps)
rec = tps / tps[-1]
prec = np.r_[prec[::-1], 1]
rec = np.r_[rec[::-1], 0]
ap = -np.sum(np.diff(rec) * np.array(prec)[:-1])
print(json.dumps({"auroc": float(auc), "ap": float(ap)}))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	var r struct{ AUROC, AP float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("numpy output %q: %v", out, err)
	}
	return r.AUROC, r.AP
}
