package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/serve"
)

func newServeCmd(g *globals) *cobra.Command {
	var o serve.Options
	var addr, grpcAddr string
	var maxMB int64
	var drain time.Duration
	var imageThr float64
	cmd := &cobra.Command{
		Use:   "serve --run RUN [--addr :8080] [--grpc-addr :9090] [--device D] [--max-batch 8] [--max-wait 5ms] [--queue 64] [--workers N] [--threads T] [--shm-dir /dev/shm]",
		Short: "serve a trained run's pipeline over HTTP and gRPC (batching, back-pressure, metrics, live page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// flags first: a bad flag is refused before the run is opened
			if o.MaxBatch < 1 {
				return fmt.Errorf("--max-batch %d: must be ≥ 1 (1 = no batching)", o.MaxBatch)
			}
			if o.Queue < 1 {
				return fmt.Errorf("--queue %d: must be ≥ 1", o.Queue)
			}
			if o.MaxWait < 0 {
				return fmt.Errorf("--max-wait %v: must be ≥ 0 (0 = never wait for other requests)", o.MaxWait)
			}
			if o.MaxWait == 0 {
				o.MaxWait = serve.NoWait
			}
			if o.Workers < 0 {
				return fmt.Errorf("--workers %d: must be ≥ 1 (0 = automatic)", o.Workers)
			}
			if o.Threads < 0 {
				return fmt.Errorf("--threads %d: must be ≥ 1 (0 = automatic)", o.Threads)
			}
			if maxMB <= 0 {
				return fmt.Errorf("--max-cube-mb %d: must be > 0", maxMB)
			}
			if o.Run == "" {
				return fmt.Errorf("--run is required")
			}
			o.MaxBytes = maxMB << 20
			if cmd.Flags().Changed("image-threshold") {
				o.ImageThreshold = &imageThr
			}
			o.Log = g.log
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return serve.ListenAndServe(ctx, o, addr, grpcAddr, drain, func(h, gr string) {
				fmt.Fprintf(g.out, "serving %s: http %s grpc %s\n", o.Run, orOff(h), orOff(gr))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Run, "run", "", "run directory (outputs/<name>/<timestamp>)")
	f.StringVar(&addr, "addr", ":8080", "HTTP address (empty: no HTTP)")
	f.StringVar(&grpcAddr, "grpc-addr", ":9090", "gRPC address (empty: no gRPC)")
	f.StringVar(&o.Device, "device", "", "cpu, cuda, cuda:N (default: the run's)")
	f.IntVar(&o.MaxBatch, "max-batch", 8, "most frames in one forward (≥ 1; 1 = no batching)")
	f.DurationVar(&o.MaxWait, "max-wait", 5*time.Millisecond, "longest a request waits for others to join its batch, and only while others are arriving (0 = never wait)")
	f.IntVar(&o.Workers, "workers", 0, "forward workers, each with its own copy of the pipeline, scoring batches at once (0 = 2 on a CPU with two cores or more, else 1)")
	f.IntVar(&o.Threads, "threads", 0, "LibTorch threads per worker (0 = the CPU cores shared out among the workers)")
	f.IntVar(&o.Queue, "queue", 64, "requests that may wait; more are refused (HTTP 503, gRPC RESOURCE_EXHAUSTED)")
	f.Int64Var(&maxMB, "max-cube-mb", 256, "largest cube accepted, in MiB of values")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per-request deadline when the client sets none")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	f.Float64Var(&imageThr, "image-threshold", 0.5, "image-level decision threshold on the image score (top 0.1 % mean of the map); unset: the run's TwoStageBinaryDecider image_threshold, else calibration.json's pixel_threshold, else 0.5")
	f.StringVar(&o.ShmDir, "shm-dir", "", "let requests name their cube's values in a file of this folder (e.g. /dev/shm) instead of carrying them, for clients on this machine (loopback peers only); any file in it becomes readable through the service (default: off)")
	f.BoolVar(&o.PProf, "pprof", false, "also serve Go profiles (net/http/pprof) under /debug/pprof/ on --addr")
	f.IntVar(&o.Bands, "bands", 0, "band count, when the run's data root is gone (default: from the data root)")
	return cmd
}

func orOff(a string) string {
	if a == "" {
		return "off"
	}
	return a
}
