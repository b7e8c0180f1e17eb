package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/bench"
	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/torch"
)

func newBenchCmd(g *globals) *cobra.Command {
	o := bench.Options{Isolate: true}
	var variant, size, tf32 string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench [--variant V] [--detector FILE] [--compiled FILE.pt2] [--device D] [--batch B] [--size HxW] [--threads N] [--json]",
		Short: "measure frames per second per variant, stage by stage, and training steps per second",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, w, err := bench.ParseSize(size)
			if err != nil {
				return err
			}
			o.H, o.W = h, w
			switch tf32 {
			case "default":
			case "true", "false":
				on := tf32 == "true"
				o.AllowTF32 = &on
			default:
				return fmt.Errorf("--allow-tf32: want default, true or false, got %q", tf32)
			}
			if variant != "" && variant != "all" {
				o.Variants = []string{variant}
			}
			r, err := bench.Run(o)
			if err != nil {
				return err
			}
			if w := torch.BLAS().Warning(); w != "" && r.Device == "cpu" {
				g.log.Warn(w)
			}
			if asJSON {
				return printJSON(g, r)
			}
			bench.WriteTable(g.out, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&variant, "variant", "all", "pca, drcnn, concrete or all")
	cmd.Flags().StringVar(&o.Detector, "detector", "", "TorchScript detector file (default: the built-in detector), or a compiled package (.pt2) alone (no training steps)")
	cmd.Flags().StringVar(&o.Compiled, "compiled", "", "the detector as a compiled AOTInductor package (.pt2, export-detector --aoti): it scores, training steps keep TorchScript")
	cmd.Flags().StringVar(&o.Device, "device", "auto", "cpu, cuda, cuda:N or auto")
	cmd.Flags().IntVar(&o.Batch, "batch", 4, fmt.Sprintf("batch size, at most %d", config.MaxBatchSize))
	cmd.Flags().StringVar(&size, "size", "256x256", fmt.Sprintf("frame size HxW, sides 1..%d", bench.MaxSide))
	cmd.Flags().IntVar(&o.Threads, "threads", 0, fmt.Sprintf("LibTorch threads, at most %d (0: one per CPU core)", config.MaxThreads()))
	cmd.Flags().IntVar(&o.Iters, "iters", 5, fmt.Sprintf("timed iterations, at most %d", bench.MaxIters))
	cmd.Flags().IntVar(&o.Warmup, "warmup", 1, fmt.Sprintf("untimed iterations first, at most %d", bench.MaxIters))
	cmd.Flags().IntVar(&o.TrainIters, "train-iters", 3, fmt.Sprintf("timed training steps, at most %d (0: skip)", bench.MaxIters))
	cmd.Flags().BoolVar(&o.Half, "half", false, "fp16 detector on CUDA")
	cmd.Flags().StringVar(&tf32, "allow-tf32", "default", "TF32 for CUDA float32 matmuls and convolutions: default (LibTorch's), true or false")
	cmd.Flags().BoolVar(&o.Isolate, "isolate", true, "run each variant in a child process, so each starts fresh and reports its own peak RSS")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
