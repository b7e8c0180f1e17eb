package infer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// pipelineFPS opens run and times its pipeline alone on one frame already in a tensor (what
// `spectraclip bench` times: forward passes on batch copies of it, inference stage, no reading
// or writing), over n frames after one warm-up pass.
func pipelineFPS(b *testing.B, runDir string, frame string, threads, batch, n int) float64 {
	b.Helper()
	r, err := run.Open(runDir, run.OpenOptions{Placement: run.Request{Threads: threads}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c, err := dataset.ReadENVI(frame)
	if err != nil {
		b.Fatal(err)
	}
	keep, s := torch.NewScope(), torch.NewScope()
	defer keep.Close()
	defer s.Close()
	cube := make([]float32, 0, batch*len(c.Data))
	for k := 0; k < batch; k++ {
		cube = append(cube, c.Data...)
	}
	in, err := datanode.ToBatch(keep, &dataset.Batch{Cube: cube, B: batch, H: c.H, W: c.W, C: c.C, Wavelengths: c.Wavelengths, FrameIDs: make([]int, batch)}, r.Device(), nil)
	if err != nil {
		b.Fatal(err)
	}
	pass := func() {
		s.Reset()
		s.SetGradEnabled(false)
		if _, err := r.Pipeline.Run(&nodes.Context{Stage: nodes.StageInference, Scope: s, Device: r.Device()}, in, nodes.RunOptions{}); err != nil {
			b.Fatal(err)
		}
		_ = torch.Synchronize(r.Device())
	}
	pass()
	t0 := time.Now()
	passes := max(1, n/batch)
	for i := 0; i < passes; i++ {
		pass()
	}
	return float64(passes*batch) / time.Since(t0).Seconds()
}

// BenchmarkInfer1000x1080 writes INFER_FRAMES (default 6) random 1000×1080×61 float32 ENVI
// frames, trains a tiny INFER_VARIANT run (default drcnn; the built-in detector at its full
// size) and then, per iteration, times the run's pipeline alone on one frame in memory and
// `infer` end to end over the folder (all outputs), one after the other in the same process at
// INFER_THREADS LibTorch threads (default 2) and INFER_BATCH frames per forward pass (default
// 1; infer --batch). Metrics: infer_fps (steady state: after the
// first frame), pipeline_fps, infer/pipeline (the ratio, the figure to compare on a shared
// machine), startup_s and first_frame_s.
//
//	INFER_FRAMES=6 go test -run '^$' -bench 'Infer1000x1080' -benchtime 2x ./infer/
func BenchmarkInfer1000x1080(b *testing.B) {
	dir := b.TempDir()
	threads := envInt("INFER_THREADS", 2)
	nf := envInt("INFER_FRAMES", 6)
	h, w := envInt("INFER_H", 1000), envInt("INFER_W", 1080)
	variant := envString("INFER_VARIANT", "drcnn")
	batch := envInt("INFER_BATCH", 1)
	outs, err := ParseOutputs(envString("INFER_OUTPUTS", "npy,png,json"))
	if err != nil {
		b.Fatal(err)
	}
	runDir := trainTiny(b, dir, variant, threads)
	frames := filepath.Join(dir, "frames")
	writeFrames(b, frames, nf, h, w, 1)
	var inferFPS, pipeFPS, startup, first float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pipeFPS += pipelineFPS(b, runDir, filepath.Join(frames, "frame_000.hdr"), threads, batch, nf)
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		stop := profileInfer(b, i)
		sum, err := Run(runDir, frames, out, Options{Threads: threads, Outputs: outs, Batch: batch})
		stop()
		if err != nil {
			b.Fatal(err)
		}
		inferFPS += sum.SteadyFPS
		startup += sum.StartupSeconds
		first += sum.FirstFrameSeconds
		_ = os.RemoveAll(out)
	}
	n := float64(b.N)
	b.ReportMetric(inferFPS/n, "infer_fps")
	b.ReportMetric(pipeFPS/n, "pipeline_fps")
	b.ReportMetric(inferFPS/pipeFPS, "infer/pipeline")
	b.ReportMetric(startup/n, "startup_s")
	b.ReportMetric(first/n, "first_frame_s")
	b.ReportMetric(procstat.MB("VmHWM:"), "peak_rss_MB")
}

// profileInfer starts a CPU profile of infer alone (not the set-up or the pipeline-only
// passes) into $INFER_CPUPROFILE (iteration i > 0 appends .i) and returns its stop.
func profileInfer(b *testing.B, i int) func() {
	path := os.Getenv("INFER_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	if i > 0 {
		path += fmt.Sprint(".", i)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// BenchmarkInferFlatRSS runs infer over 100 small frames (INFER_FLAT_H×INFER_FLAT_W, default
// 64×64×61) and reports how far the resident set grew between the 10th frame and the end
// (rss_growth_MB: flat means about 0), the resident set at the 10th frame and the peak. It
// fails if the growth exceeds 32 MB or LibTorch tensors are left alive.
//
//	go test -run '^$' -bench 'InferFlatRSS' -benchtime 1x ./infer/
func BenchmarkInferFlatRSS(b *testing.B) {
	dir := b.TempDir()
	runDir := trainTiny(b, dir, "drcnn", 2)
	frames := filepath.Join(dir, "frames")
	h, w := envInt("INFER_FLAT_H", 64), envInt("INFER_FLAT_W", 64)
	writeFrames(b, frames, 100, h, w, 2)
	var growth, at10, maxRSS float64
	live := torch.LiveTensors()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var rss10, hi float64
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		_, err := Run(runDir, frames, out, Options{onFrame: func(n int) {
			rss := procstat.MB("VmRSS:")
			if n == 10 {
				rss10 = rss
			}
			if n >= 10 && rss > hi {
				hi = rss
			}
		}})
		if err != nil {
			b.Fatal(err)
		}
		growth += hi - rss10
		at10 += rss10
		maxRSS = max(maxRSS, hi)
		_ = os.RemoveAll(out)
	}
	n := float64(b.N)
	b.ReportMetric(growth/n, "rss_growth_MB")
	b.ReportMetric(at10/n, "rss_at_frame10_MB")
	b.ReportMetric(maxRSS, "rss_max_MB")
	if growth/n > 32 {
		b.Errorf("resident set grew by %.1f MB between the 10th and the 100th frame", growth/n)
	}
	if d := torch.LiveTensors() - live; d != 0 {
		b.Errorf("%d LibTorch tensors left alive after infer", d)
	}
}
