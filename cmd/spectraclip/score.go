package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
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
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "score --server ADDR FILE...",
		Short: "score cubes (.npy, ENVI .hdr, .mat, .npz) on a running spectraclip serve; prints one JSON line per file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				return fmt.Errorf("--server is required (http://HOST:PORT or grpc://HOST:PORT)")
			}
			c, err := client.Dial(server)
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
	cmd.Flags().StringVar(&server, "server", "", "server address: http://HOST:PORT or grpc://HOST:PORT")
	cmd.Flags().StringVar(&mapDir, "map-out", "", "also write each file's score map here as NAME_scores.npy")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "deadline per file")
	return cmd
}

type scoreLine struct {
	File string `json:"file"`
	*client.Result
}

func newLoadtestCmd(g *globals) *cobra.Command {
	var server, size string
	var clients []int
	var requests, bands int
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "loadtest --server ADDR [--clients 1,4,16] [--requests 64] [--size 256x256] [--bands 61]",
		Short: "measure a running spectraclip serve: throughput and p50/p99 latency per number of concurrent clients",
		Args:  cobra.NoArgs,
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
			c, err := client.Dial(server)
			if err != nil {
				return err
			}
			defer c.Close()
			rng := rand.New(rand.NewSource(1))
			v := make([]float32, h*w*bands)
			for i := range v {
				v[i] = rng.Float32()
			}
			levels, err := client.LoadTest(context.Background(), c, client.Float32Cube(h, w, bands, v), clients, requests, timeout)
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
	f.StringVar(&server, "server", "", "server address: http://HOST:PORT or grpc://HOST:PORT")
	f.IntSliceVar(&clients, "clients", []int{1, 4, 16}, "concurrent clients, one level after the other")
	f.IntVar(&requests, "requests", 64, "requests per level")
	f.StringVar(&size, "size", "256x256", "frame size HxW (random values)")
	f.IntVar(&bands, "bands", 61, "bands per frame (the run's band count)")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "deadline per request")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
