package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/torch"
)

// BenchmarkBuiltinAOTI times the built-in detector module alone (no pre- or post-processing)
// as TorchScript and as an AOTInductor package compiled from it, fp32 on the CPU, at 1 and 2
// intra-op threads: [4,3,256,256], and at the node's default S = 224 (what 4×256×256 and
// 1×1000×1080 frames are resized to) at batch 4 and 1. The packages are compiled first
// (scripts/export_adaclip.py --aoti --builtin-from, about 45 s each on 2 cores), e.g.
//
//	PYTHON=$PWD/.venv/bin/python go test -tags torchpip -run '^$' -bench BuiltinAOTI -benchtime 20x ./nodes/detect/
func BenchmarkBuiltinAOTI(b *testing.B) {
	dir := b.TempDir()
	prev := torch.NumThreads()
	defer func() { _ = torch.SetNumThreads(prev) }()
	for _, size := range []int{256, 224} {
		tsPath, pt2 := exportBuiltinAOTI(b, dir, size, 16)
		ts, err := torch.LoadModule(tsPath, torch.CPU)
		if err != nil {
			b.Fatal(err)
		}
		pkg, err := torch.LoadAOTI(pt2, torch.CPU)
		if err != nil {
			ts.Free()
			b.Fatal(err)
		}
		batches := []int{4}
		if size == 224 {
			batches = []int{4, 1}
		}
		for _, batch := range batches {
			r := rand.New(rand.NewPCG(uint64(size), uint64(batch)))
			x := make([]float32, batch*3*size*size)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for _, threads := range []int{1, 2} {
				for _, runtime := range []string{"torchscript", "aoti"} {
					name := fmt.Sprintf("%dx3x%dx%d/threads=%d/%s", batch, size, size, threads, runtime)
					b.Run(name, func(b *testing.B) {
						if err := torch.SetNumThreads(threads); err != nil {
							b.Fatal(err)
						}
						s := torch.NewScope()
						s.SetGradEnabled(false)
						defer s.Close()
						in := s.FromFloat32(x, int64(batch), 3, int64(size), int64(size))
						s.Keep(in)
						defer in.Free()
						run := func() {
							if runtime == "aoti" {
								s.RunAOTI(pkg, in)
							} else {
								s.Forward(ts, in)
							}
							if err := s.Err(); err != nil {
								b.Fatal(err)
							}
							s.Reset()
						}
						run() // warm-up (TorchScript's profiling executor optimises on the first runs)
						run()
						for b.Loop() {
							run()
						}
						b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "images/s")
					})
				}
			}
		}
		pkg.Close()
		ts.Free()
	}
}
