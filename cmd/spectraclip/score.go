package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/bench"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/serve"
	"github.com/spectraclip/spectraclip/serve/client"
)

func newScoreCmd(g *globals) *cobra.Command {
	var server, mapDir string
	var cred credFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "score --server ADDR FILE...",
		Short: "score cubes (.npy, ENVI .hdr, .mat, .npz) on a running spectraclip serve; prints one JSON line per file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				return fmt.Errorf("--server is required (http://HOST:PORT or grpc://HOST:PORT)")
			}
			c, err := dialServer(server, cred)
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
	cred.flags(cmd)
	cmd.Flags().StringVar(&mapDir, "map-out", "", "also write each file's score map here as NAME_scores.npy")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "deadline per file")
	return cmd
}

type scoreLine struct {
	File string `json:"file"`
	*client.Result
}

func newLoadtestCmd(g *globals) *cobra.Command {
	var server, size, metrics, shm string
	var bands int
	var asJSON bool
	var lo client.LoadOptions
	var bo bench.Options
	var benchVariant string
	var cred credFlags
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
			if server == "" {
				return fmt.Errorf("--server is required (http://HOST:PORT or grpc://HOST:PORT)")
			}
			h, w, err := bench.ParseSize(size)
			if err != nil {
				return err
			}
			if bands < 1 {
				return fmt.Errorf("--bands %d: must be ≥ 1", bands)
			}
			if benchVariant != "" {
				if bo.Batch < 1 {
					return fmt.Errorf("--bench-batch %d: must be ≥ 1", bo.Batch)
				}
				// bench's bounds, checked before any request, naming loadtest's flags
				bo.Flags = bench.FlagNames{Threads: "--bench-threads", Batch: "--bench-batch", Iters: "--bench-iters", Size: "--size"}
				if err := bo.Check(); err != nil {
					return err
				}
			}
			c, err := dialServer(server, cred)
			if err != nil {
				return err
			}
			defer c.Close()
			if !cmd.Flags().Changed("metrics") {
				if hc, ok := c.(*client.HTTP); ok {
					metrics = hc.Base + "/metrics"
				}
			}
			if metrics != "" {
				lo.ServerCPU = client.MetricsCPU(metrics)
			}
			if benchVariant != "" {
				bo.Variants, bo.H, bo.W, bo.TrainIters, bo.Warmup = []string{benchVariant}, h, w, 0, 1
				lo.Bench = func() (client.BenchSample, error) {
					r, err := bench.Run(bo)
					if err != nil {
						return client.BenchSample{}, fmt.Errorf("--bench-variant: %w", err)
					}
					return client.BenchSample{FPS: r.Variants[0].FPS, CPUmsFrame: r.Variants[0].CPUmsPerFrame}, nil
				}
			}
			rng := rand.New(rand.NewSource(1))
			v := make([]float32, h*w*bands)
			for i := range v {
				v[i] = rng.Float32()
			}
			cube := client.Float32Cube(h, w, bands, v)
			if shm != "" {
				// written once; every request names it (the cube never changes)
				name := fmt.Sprintf("spectraclip-loadtest-%d", os.Getpid())
				if cube, err = client.WriteShm(shm, name, cube); err != nil {
					return fmt.Errorf("--shm: %w", err)
				}
				defer os.Remove(filepath.Join(shm, name))
			}
			levels, err := client.LoadTest(context.Background(), c, cube, lo)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g, levels)
			}
			client.WriteLoadTable(g.out, levels)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server address: http://HOST:PORT or grpc://HOST:PORT (https:// and grpcs:// for TLS)")
	cred.flags(cmd)
	f.IntSliceVar(&lo.Clients, "clients", []int{1, 4, 16}, "concurrent clients, one level after the other")
	f.IntVar(&lo.Requests, "requests", 64, "timed requests per level")
	f.IntVar(&lo.Warmup, "warmup", 2, "untimed requests per client before each level (0: none)")
	f.StringVar(&size, "size", "256x256", "frame size HxW (random values)")
	f.IntVar(&bands, "bands", 61, "bands per frame (the run's band count)")
	f.DurationVar(&lo.Timeout, "timeout", 60*time.Second, "deadline per request")
	f.StringVar(&metrics, "metrics", "", "the server's Prometheus URL, for its CPU time per frame (default: SERVER/metrics for an http:// server; \"\" for none)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&shm, "shm", "", "send the cube through this shared-memory folder (the server's --shm-dir, on this machine) instead of in each request")
	f.StringVar(&benchVariant, "bench-variant", "", "also run 'spectraclip bench' for this variant (the served run's) around every level and print the served/bench ratio")
	f.IntVar(&bo.Batch, "bench-batch", 8, "with --bench-variant: bench batch size (the server's --max-batch)")
	f.IntVar(&bo.Iters, "bench-iters", 3, "with --bench-variant: timed bench iterations per measurement")
	f.StringVar(&bo.Device, "bench-device", "auto", "with --bench-variant: bench device (the server's)")
	f.IntVar(&bo.Threads, "bench-threads", 0, "with --bench-variant: bench LibTorch threads (0: one per CPU core, as serve)")
	return cmd
}

// credFlags are a client's credentials for a secured server (serve --token-file,
// --tls-cert): --token-file and --tls-ca.
type credFlags struct{ tokenFile, tlsCA string }

func (c *credFlags) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.tokenFile, "token-file", "", "send the bearer token in this file (one line, mode 600), for a server started with --token-file")
	cmd.Flags().StringVar(&c.tlsCA, "tls-ca", "", "connect over TLS, trusting the CA certificates in this PEM file (a server started with --tls-cert); https:// and grpcs:// addresses use TLS with the system's CAs without it")
}

// dialServer connects to server with the credentials of c.
func dialServer(server string, c credFlags) (client.Client, error) {
	var o client.Options
	if c.tokenFile != "" {
		tok, err := serve.ReadTokenFile(c.tokenFile)
		if err != nil {
			return nil, err
		}
		o.Token = tok
	}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca %s: %w", c.tlsCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in the file", c.tlsCA)
		}
		o.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return client.DialWith(server, o)
}
