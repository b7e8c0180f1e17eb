package bench

import (
	"os"
	"strconv"
	"testing"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// The benchmarks run on 4×256×256×61 random cubes with the built-in detector, as
// `spectraclip bench` does; SPECTRACLIP_BENCH_SIZE=H and SPECTRACLIP_BENCH_THREADS=N
// change the frame side and LibTorch's thread count (default: one per core).
func benchOpts(b *testing.B) Options {
	o := Options{Batch: 4, H: 256, W: 256}
	if v, err := strconv.Atoi(os.Getenv("SPECTRACLIP_BENCH_SIZE")); err == nil && v > 0 {
		o.H, o.W = v, v
	}
	th, _ := strconv.Atoi(os.Getenv("SPECTRACLIP_BENCH_THREADS"))
	if err := (run.Placement{Threads: run.AutoThreads(0)}).Apply(); th <= 0 && err != nil {
		b.Fatal(err)
	}
	if th > 0 {
		if err := (run.Placement{Threads: th}).Apply(); err != nil {
			b.Fatal(err)
		}
	}
	if err := torch.SetCachingAllocator(true); err != nil {
		b.Fatal(err)
	}
	return o
}

func benchEnvFor(b *testing.B, variant string) *benchEnv {
	e, err := newBenchEnv(variant, benchOpts(b), torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.close)
	return e
}

func reportFrames(b *testing.B, e *benchEnv) {
	b.ReportMetric(float64(b.N*e.B)/b.Elapsed().Seconds(), "frames/s")
	b.SetBytes(e.cubeBytes)
}

// BenchmarkInference times normaliser → reducer → detector → decider on one batch, and
// reports the RSS growth over the run (memory must stay flat).
func BenchmarkInference(b *testing.B) {
	for _, v := range config.VariantNames {
		b.Run(v, func(b *testing.B) {
			e := benchEnvFor(b, v)
			if err := e.infer(); err != nil {
				b.Fatal(err)
			}
			rss0 := procstat.MB("VmRSS:")
			for b.Loop() {
				if err := e.infer(); err != nil {
					b.Fatal(err)
				}
			}
			reportFrames(b, e)
			b.ReportMetric(procstat.MB("VmRSS:")-rss0, "rss-growth-MB")
		})
	}
}

// BenchmarkDetector times the detector node alone (pre-processing, module, post-processing)
// on the same reduced input the pipeline gives it.
func BenchmarkDetector(b *testing.B) {
	e := benchEnvFor(b, "concrete")
	keep := torch.NewScope()
	defer keep.Close()
	ctx := &nodes.Context{Stage: nodes.StageInference, Scope: keep, Device: e.dev}
	keep.SetGradEnabled(false)
	out, err := e.p.Run(ctx, e.batch, nodes.RunOptions{Only: []string{"concrete_selector"}})
	if err != nil {
		b.Fatal(err)
	}
	rgb, err := out.Tensor("concrete_selector", "rgb")
	if err != nil {
		b.Fatal(err)
	}
	det, _ := e.p.Node("detector")
	for b.Loop() {
		e.s.Reset()
		e.s.SetGradEnabled(false)
		if _, err := det.Forward(&nodes.Context{Stage: nodes.StageInference, Scope: e.s}, map[string]any{"rgb_image": rgb}); err != nil {
			b.Fatal(err)
		}
	}
	reportFrames(b, e)
}

// BenchmarkTrainStep times one optimisation step of each learnable variant.
func BenchmarkTrainStep(b *testing.B) {
	for _, v := range []string{"drcnn", "concrete"} {
		b.Run(v, func(b *testing.B) {
			e := benchEnvFor(b, v)
			if err := e.trainStep(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := e.trainStep(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

// BenchmarkStatisticalFit times the statistical fit (normaliser and PCA) on one batch.
func BenchmarkStatisticalFit(b *testing.B) {
	e := benchEnvFor(b, "pca")
	for b.Loop() {
		if err := e.fit(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(e.cubeBytes)
}
