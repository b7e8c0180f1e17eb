package scene

import (
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testpy"
)

// A scene whose ground truth has no anomaly pixel has no ROC AUC: Detect reports NaN
// (null in JSON) and says why, instead of 0 (issue 16.9).
func TestDetectAllNormalAUCUndefined(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, gt, note string }{
		{"normal", "np.zeros((16, 12), np.uint8)", "undefined (no anomaly pixels)"},
		{"anomalous", "np.ones((16, 12), np.uint8)", "undefined (no normal pixels)"},
	} {
		p := filepath.Join(dir, c.name+".npz")
		script := "import numpy as np; r = np.random.default_rng(3); np.savez(r'" + p + "', data=r.normal(size=(16, 12, 5)).astype(np.float32), map=" + c.gt + ")"
		if out, err := exec.Command(testpy.Python(), "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("numpy: %v\n%s", err, out)
		}
		r, err := Detect(p, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if !r.HasTruth || !math.IsNaN(float64(r.AUROC)) || r.AUROCNote != c.note {
			t.Errorf("%s ground truth: AUROC %v, note %q; want NaN and %q", c.name, r.AUROC, r.AUROCNote, c.note)
		}
		b, err := json.Marshal(r)
		if err != nil || !strings.Contains(string(b), `"pixel_roc_auc":null`) {
			t.Errorf("%s: JSON %s, err %v", c.name, b, err)
		}
	}
}
