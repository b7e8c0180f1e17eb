package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testpy"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/nodes/detect"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// TestCompiledDetectorRun: a run whose config names a compiled detector scores with it
// wherever its run directory is opened (eval, infer, serve and bench open it through
// run.Open), and agrees with the same run on TorchScript. On a LibTorch without AOTInductor
// (Debian's 1.13) runtime aoti is refused with one line naming the package, and export-detector
// --aoti with a Python that cannot compile one says so.
//
// Tolerance: infer's scores within 2e-5 of their scale (see TestCompiledDetectorNode).
func TestCompiledDetectorRun(t *testing.T) {
	dir := t.TempDir()
	pt2 := filepath.Join(dir, "builtin32.pt2")
	if torch.AOTIAvailable() != nil {
		_, err := runCLI(t, append([]string{"train", "--variant", "pca", "--out", filepath.Join(dir, "run"),
			"pipeline.detector.compiled_path=" + pt2, "pipeline.detector.runtime=aoti"}, tiny(dir, "0")...)...)
		if err == nil || !strings.Contains(err.Error(), "need LibTorch 2.6 or newer") || !strings.Contains(err.Error(), "detector") {
			t.Fatalf("runtime aoti on LibTorch %s: %v", torch.Version(), err)
		}
		return
	}
	if testing.Short() {
		t.Skip("compiles a package (about 40 s on 2 cores); skipped with -short")
	}
	if _, err := runCLI(t, "export-detector", "--builtin", "--aoti", "--python", testpy.Python(), "--image-size", "32",
		"--max-batch", "4", "--out", pt2); err != nil {
		if strings.Contains(err.Error(), "needs torch 2.6 or newer") {
			t.Skipf("%s cannot compile packages: %v", testpy.Python(), err)
		}
		t.Fatalf("export-detector --aoti: %v", err)
	}
	runs := map[string]string{}
	for _, rt := range []string{detect.RuntimeTorchScript, detect.RuntimeAOTI} {
		out := filepath.Join(dir, "run_"+rt)
		mustRun(t, append([]string{"train", "--variant", "pca", "--out", out,
			"pipeline.detector.compiled_path=" + pt2, "pipeline.detector.runtime=" + rt}, tiny(dir, "0")...)...)
		runs[rt] = out
		a, err := run.Open(out, run.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := a.Pipeline.Node("detector")
		got := nodes.UnwrapNode(n).(interface{ Runtime() string }).Runtime()
		a.Close()
		if got != rt {
			t.Errorf("run with runtime %s reopened: its detector runs %s", rt, got)
		}
	}
	frame := filepath.Join(dir, "data", "frames", "frame_000.hdr")
	var scores [2][]float32
	for i, rt := range []string{detect.RuntimeTorchScript, detect.RuntimeAOTI} {
		out := filepath.Join(dir, "infer_"+rt)
		mustRun(t, "infer", "--run", runs[rt], "--input", frame, "--out", out, "--outputs", "npy")
		scores[i], _ = npy32(t, filepath.Join(out, "frame_000_scores.npy"))
	}
	scale, worst := 0.0, 0.0
	for i := range scores[0] {
		scale = max(scale, math.Abs(float64(scores[0][i])))
		worst = max(worst, math.Abs(float64(scores[1][i]-scores[0][i])))
	}
	if len(scores[0]) == 0 || len(scores[1]) != len(scores[0]) || worst > 2e-5*scale {
		t.Errorf("infer with the compiled detector: %d scores, max |diff| %g, scale %g", len(scores[1]), worst, scale)
	}
	t.Logf("infer: compiled vs TorchScript max |diff| = %.3g × the scale %.3g", worst/scale, scale)
}
