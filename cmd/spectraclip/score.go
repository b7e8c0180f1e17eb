package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/serve"
	"github.com/spectraclip/spectraclip/serve/client"
)

func newScoreCmd(g *globals) *cobra.Command {
	var server, mapDir string
	var cred serve.Credentials
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "score --server ADDR FILE...",
		Short: "score cubes (.npy, ENVI .hdr, .mat, .npz) on a running spectraclip serve; prints one JSON line per file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				return fmt.Errorf("--server is required (http://HOST:PORT or grpc://HOST:PORT)")
			}
			c, err := serve.Dial(server, cred)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, path := range args {
				cube, _, err := dataset.LoadScene(path, dataset.SceneOptions{})
				if err != nil {
					return err
				}
				name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
				req := client.Float32Cube(cube.H, cube.W, cube.C, cube.Data)
				req.Wavelengths, req.FrameID = cube.Wavelengths, name
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				r, err := c.Score(ctx, req, mapDir != "")
				cancel()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if mapDir != "" {
					if err := serve.WriteNPYFile(filepath.Join(mapDir, name+"_scores.npy"), r.Scores, r.Height, r.Width); err != nil {
						return err
					}
				}
				b, err := json.Marshal(scoreLine{File: path, Result: r})
				if err != nil {
					return err
				}
				fmt.Fprintln(g.out, string(b))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "server address: http://HOST:PORT or grpc://HOST:PORT (https:// and grpcs:// for TLS)")
	credentialFlags(cmd, &cred)
	cmd.Flags().StringVar(&mapDir, "map-out", "", "also write each file's score map here as NAME_scores.npy")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "deadline per file")
	return cmd
}

type scoreLine struct {
	File string `json:"file"`
	*client.Result
}

func newLoadtestCmd(g *globals) *cobra.Command {
	var o serve.LoadTestOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "loadtest --server ADDR [--clients 1,4,16] [--requests 64] [--warmup 2] [--size 256x256] [--bands 61] [--metrics URL] [--shm DIR] [--bench-variant V --bench-batch 8]",
		Short: "measure a running spectraclip serve: throughput and p50/p99 latency per number of concurrent clients",
		Long: `loadtest sends the same random cube (encoded once) from 1, 4, 16… concurrent clients in
turn, each sending its next request when the last is answered, and prints throughput and
p50/p99 latency per level. Before a level is timed each client sends --warmup untimed
requests, so that the level is measured in the server's steady state at that concurrency.

With --metrics (the server's /metrics URL; the default for an http:// server) it also prints
the server's CPU time per frame. With --bench-variant it runs 'spectraclip bench' for that
variant and --bench-batch in this process right before every level and after the last, and
prints bench's frames/s and CPU time per frame and each level's throughput as a share of the
mean of the two bench figures around it (the served/bench ratio; the server is idle while
the bench runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.DefaultMetrics = !cmd.Flags().Changed("metrics")
			r, err := serve.LoadTest(context.Background(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g, r.Levels)
			}
			client.WriteLoadTable(g.out, r.Levels)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "", "server address: http://HOST:PORT or grpc://HOST:PORT (https:// and grpcs:// for TLS)")
	credentialFlags(cmd, &o.Credentials)
	f.IntSliceVar(&o.Clients, "clients", []int{1, 4, 16}, "concurrent clients, one level after the other")
	f.IntVar(&o.Requests, "requests", 64, "timed requests per level")
	f.IntVar(&o.Warmup, "warmup", 2, "untimed requests per client before each level (0: none)")
	f.StringVar(&o.Size, "size", "256x256", "frame size HxW (random values)")
	f.IntVar(&o.Bands, "bands", 61, "bands per frame (the run's band count)")
	f.DurationVar(&o.Timeout, "timeout", 60*time.Second, "deadline per request")
	f.StringVar(&o.Metrics, "metrics", "", "the server's Prometheus URL, for its CPU time per frame (default: SERVER/metrics for an http:// server; \"\" for none)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&o.Shm, "shm", "", "send the cube through this shared-memory folder (the server's --shm-dir, on this machine) instead of in each request")
	f.StringVar(&o.BenchVariant, "bench-variant", "", "also run 'spectraclip bench' for this variant (the served run's) around every level and print the served/bench ratio")
	f.IntVar(&o.Bench.Batch, "bench-batch", 8, "with --bench-variant: bench batch size (the server's --max-batch)")
	f.IntVar(&o.Bench.Iters, "bench-iters", 3, "with --bench-variant: timed bench iterations per measurement")
	f.StringVar(&o.Bench.Device, "bench-device", "auto", "with --bench-variant: bench device (the server's)")
	f.IntVar(&o.Bench.Threads, "bench-threads", 0, "with --bench-variant: bench LibTorch threads (0: one per CPU core, as serve)")
	return cmd
}

// credentialFlags binds a client's credentials for a secured server (serve --token-file,
// --tls-cert): --token-file and --tls-ca.
func credentialFlags(cmd *cobra.Command, c *serve.Credentials) {
	cmd.Flags().StringVar(&c.TokenFile, "token-file", "", "send the bearer token in this file (one line, mode 600), for a server started with --token-file")
	cmd.Flags().StringVar(&c.TLSCA, "tls-ca", "", "connect over TLS, trusting the CA certificates in this PEM file (a server started with --tls-cert); https:// and grpcs:// addresses use TLS with the system's CAs without it")
}
