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
	var inflightMB int64
	var tokenFile, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "serve --run RUN [--addr 127.0.0.1:8080] [--grpc-addr 127.0.0.1:9090] [--token-file F] [--tls-cert C --tls-key K] [--device D] [--max-batch 8] [--max-wait 5ms] [--queue 64] [--workers N] [--threads T] [--shm-dir /dev/shm]",
		Short: "serve a trained run's pipeline over HTTP and gRPC (batching, back-pressure, metrics, live page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// flags first: a bad flag is refused before the run is opened, and bounded
			// before it is converted (maxMB << 20 cannot overflow)
			fl := serve.Flags{MaxBatch: o.MaxBatch, Queue: o.Queue, Workers: o.Workers, Threads: o.Threads,
				MaxWait: o.MaxWait, Timeout: o.Timeout, Drain: drain, MaxCubeMB: maxMB, MaxInflightMB: inflightMB}
			if err := fl.Check(); err != nil {
				return err
			}
			if o.MaxWait == 0 {
				o.MaxWait = serve.NoWait
			}
			var err error
			if tokenFile != "" {
				if o.Token, err = serve.ReadTokenFile(tokenFile); err != nil {
					return err
				}
			}
			if o.TLS, err = serve.LoadTLS(tlsCert, tlsKey); err != nil {
				return err
			}
			o.MaxBytes = maxMB << 20
			o.MaxInflight = inflightMB << 20
			if cmd.Flags().Changed("image-threshold") {
				o.ImageThreshold = &imageThr
			}
			if err := o.Validate(); err != nil {
				return err
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
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "HTTP address (empty: no HTTP); loopback by default: other machines reach the server only with an explicit address such as 0.0.0.0:8080 (then give --token-file)")
	f.StringVar(&grpcAddr, "grpc-addr", "127.0.0.1:9090", "gRPC address (empty: no gRPC); loopback by default, as --addr")
	f.StringVar(&o.Device, "device", "", "cpu, cuda, cuda:N (default: the run's)")
	f.IntVar(&o.MaxBatch, "max-batch", 8, fmt.Sprintf("most frames in one forward (1 to %d; 1 = no batching); the warm-up's batch is at most the run's frames that fit in --max-inflight-mb", serve.MaxMaxBatch))
	f.DurationVar(&o.MaxWait, "max-wait", 5*time.Millisecond, "longest a request waits for others to join its batch, and only while others are arriving (0 = never wait)")
	f.IntVar(&o.Workers, "workers", 0, fmt.Sprintf("forward workers, each with its own copy of the pipeline, scoring batches at once (0 = 2 on a CPU with two cores or more, else 1; at most %d)", serve.MaxWorkers))
	f.IntVar(&o.Threads, "threads", 0, fmt.Sprintf("LibTorch threads per worker (0 = the CPU cores shared out among the workers; at most %d)", serve.MaxThreads))
	f.IntVar(&o.Queue, "queue", 64, fmt.Sprintf("requests that may wait; more are refused (HTTP 503, gRPC RESOURCE_EXHAUSTED); 1 to %d", serve.MaxQueue))
	f.Int64Var(&maxMB, "max-cube-mb", 256, fmt.Sprintf("largest cube accepted, in MiB of values (1 to %d); checked against Content-Length and the declared shape before the body is read", serve.MaxCubeMB))
	f.Int64Var(&inflightMB, "max-inflight-mb", serve.DefaultInflightMB, fmt.Sprintf("memory all requests being read, queued or scored may hold together, in MiB (--max-cube-mb to %d); a request that does not fit is answered 503 (gRPC RESOURCE_EXHAUSTED) before its body is read", serve.MaxInflightMB))
	f.StringVar(&tokenFile, "token-file", "", "require 'Authorization: Bearer TOKEN' (HTTP) or metadata 'authorization: Bearer TOKEN' (gRPC), TOKEN being this file's one line (not empty; mode 600 or 640, not readable by all users); /healthz, /readyz and gRPC health stay open (default: no authentication)")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS and gRPC over TLS with this PEM certificate (chain) and --tls-key")
	f.StringVar(&tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per-request deadline when the client sets none (> 0)")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may take to finish (≥ 0); then those still arriving are cut off with a warning and serve exits 0 (finishing an upload in time is the client's part), but a request received in full and not yet answered makes it exit 1")
	f.Float64Var(&imageThr, "image-threshold", 0.5, "image-level decision threshold on the image score (top 0.1 % mean of the map); unset: the run's TwoStageBinaryDecider image_threshold, else calibration.json's pixel_threshold, else 0.5")
	f.StringVar(&o.ShmDir, "shm-dir", "", "let requests name their cube's values in a file of this folder (e.g. /dev/shm) instead of carrying them, for clients on this machine (loopback peers only). Trust model: whoever may create files in the folder may have the server read them, so give a folder only trusted local users can write to; symbolic links, files with several hard links (st_nlink > 1: a link to a file elsewhere) and non-regular files are refused (default: off)")
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
