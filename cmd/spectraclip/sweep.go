package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/sweep"
	"github.com/spectraclip/spectraclip/torch"
)

func newSweepCmd(g *globals) *cobra.Command {
	var file, seeds, gpus, emit, bin string
	var variants, trainruns, scenes []string
	var maxPoints int64
	o := sweep.Options{}
	cmd := &cobra.Command{
		Use:   "sweep (-c SWEEP.yaml | --variant V,... [--seeds N] [key=v1,v2 ...]) --out DIR",
		Short: "run a batch of trainings (variants × settings × seeds) on N workers, resumable; results table and report",
		Long: "sweep expands a sweep file (or --variant/--seeds and key=v1,v2 arguments, Hydra-multirun style)\n" +
			"into points, each an ordinary run directory DIR/runs/<id> written by a `spectraclip train`\n" +
			"process, and writes DIR/sweep.json, sweep.csv and report.md. Rerunning it (or\n" +
			"`spectraclip sweep --out DIR` alone) skips finished points, resumes interrupted ones from\n" +
			"their last checkpoint and reruns failed ones only with --retry-failed.\n" +
			"--emit slurm writes DIR/sweep.sbatch, a job array whose tasks run `sweep --point I`;\n" +
			"--collect builds the results from what the tasks wrote.",
		RunE: func(cmd *cobra.Command, args []string) error {
			// SIGINT and SIGTERM end the sweep through ctx from here on, in every phase:
			// resolving the points (up to --max-points of them), generating data, running
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if !cmd.Flags().Changed("point") {
				o.Point = -1
			}
			if file != "" && (len(variants) > 0 || len(trainruns) > 0 || len(scenes) > 0 || seeds != "" || len(args) > 0) {
				return fmt.Errorf("sweep: -c %s already names the sweep: give no --variant, --trainrun, --scene, --seeds or key=value arguments", file)
			}
			switch {
			case file != "":
				s, err := sweep.LoadSpec(file)
				if err != nil {
					return err
				}
				o.Spec = s
			case len(variants) > 0 || len(trainruns) > 0:
				s, err := sweep.QuickSpec(variants, trainruns, seeds, args)
				if err != nil {
					return err
				}
				if s.Data, err = sweep.SceneSources(scenes); err != nil {
					return err
				}
				o.Spec = s
			case seeds != "" || len(args) > 0 || len(scenes) > 0:
				return fmt.Errorf("sweep: --seeds, --scene and key=value arguments need --variant or --trainrun")
			}
			if maxPoints < 1 {
				return fmt.Errorf("--max-points %d: must be >= 1 (default %d)", maxPoints, sweep.DefaultMaxPoints)
			}
			if maxT := config.MaxThreads(); o.Workers < 0 || o.Workers > maxT {
				return fmt.Errorf("--workers %d: out of range 0..%d (0 = one, or one per --gpus entry; the limit is 4 per CPU core, at least 64)", o.Workers, maxT)
			}
			if err := config.CheckThreads("--threads", o.Threads); err != nil {
				return err
			}
			if o.Spec != nil {
				o.Spec.MaxPoints = maxPoints
				if err := o.Spec.CheckPointCount(); err != nil {
					return err
				}
				n, how := o.Spec.PointCount()
				g.log.Infof("sweep %q: %d points (%s)", o.Spec.Name, n, how)
			}
			if gpus != "" {
				ids, err := parseGPUs(gpus)
				if err != nil {
					return err
				}
				o.GPUs = ids
			}
			o.Emit = emit
			o.Binary = bin
			if o.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("sweep: cannot find the spectraclip executable (%v): pass --bin", err)
				}
				o.Binary = exe
			}
			o.Ctx = ctx
			o.Log = g.log
			o.Progress = g.errOut
			sum, err := sweep.Execute(o)
			if sum != nil && sum.SlurmScript != "" {
				fmt.Fprintf(g.out, "wrote %s (%d tasks): sbatch %s; then spectraclip sweep --collect --out %s\n", sum.SlurmScript, sum.Points, sum.SlurmScript, o.Dir)
			} else if sum != nil && sum.Results != nil {
				fmt.Fprintf(g.out, "sweep %s: %d points, %d done, %d failed, %d pending; report %s/report.md\n", sum.Dir, sum.Points, sum.Done, sum.Failed, sum.Pending, sum.Dir)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "a sweep YAML file")
	f.StringSliceVar(&variants, "variant", nil, "variants to sweep (pca, drcnn, concrete), comma-separated")
	f.StringSliceVar(&trainruns, "trainrun", nil, "trainrun files to sweep")
	f.StringVar(&seeds, "seeds", "", "seeds: a count N (0..N-1) or a list 1,7,9")
	f.StringArrayVar(&scenes, "scene", nil, "a labelled scene to train every point on (train --scene), repeatable: one data source each")
	f.StringVar(&o.Dir, "out", "", "the sweep directory (required)")
	f.IntVar(&o.Workers, "workers", 0, fmt.Sprintf("runs at once, at most %d (default 1, or one per --gpus entry)", config.MaxThreads()))
	f.IntVar(&o.Threads, "threads", 0, fmt.Sprintf("training.threads of each run, at most %d (default: CPU cores / workers; under Slurm SLURM_CPUS_PER_TASK)", config.MaxThreads()))
	f.Int64Var(&maxPoints, "max-points", sweep.DefaultMaxPoints, "refuse a sweep that expands to more points (trainings) than this; the count is printed before anything runs")
	f.StringVar(&gpus, "gpus", "", "GPUs to use, one worker each: all, or ids 0,1,...")
	f.BoolVar(&o.RetryFailed, "retry-failed", false, "rerun points that failed before")
	f.IntVar(&o.Point, "point", -1, "run only this point (a Slurm array task: $SLURM_ARRAY_TASK_ID)")
	f.BoolVar(&o.Collect, "collect", false, "only build sweep.json, sweep.csv and report.md from what the points wrote")
	f.StringVar(&emit, "emit", "", "write a job script instead of running: slurm")
	f.StringVar(&bin, "bin", "", "the spectraclip executable the points run (default: this one)")
	f.IntVar(&o.Slurm.CPUsPerTask, "cpus-per-task", 1, "with --emit slurm: CPUs per array task")
	f.IntVar(&o.Slurm.GPUsPerTask, "gpus-per-task", 0, "with --emit slurm: GPUs per array task")
	f.IntVar(&o.Slurm.MaxParallel, "max-parallel", 0, "with --emit slurm: at most this many tasks at once (array %limit)")
	f.StringArrayVar(&o.Slurm.Extra, "slurm-opt", nil, "with --emit slurm: a further #SBATCH option, e.g. partition=gpu or time=02:00:00 (repeatable)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// parseGPUs reads "all" (every CUDA device LibTorch sees) or a list of device ids.
func parseGPUs(s string) ([]string, error) {
	if s == "all" {
		// CUDA_VISIBLE_DEVICES already narrows the devices: hand out its entries.
		if vis := strings.TrimSpace(os.Getenv("CUDA_VISIBLE_DEVICES")); vis != "" {
			return strings.Split(vis, ","), nil
		}
		n := torch.CUDADeviceCount()
		if n == 0 {
			return nil, fmt.Errorf("--gpus all: no CUDA device is visible (LibTorch sees none)")
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprint(i)
		}
		return ids, nil
	}
	var ids []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" || strings.Trim(f, "0123456789") != "" {
			return nil, fmt.Errorf("--gpus %q: want all or device ids like 0,1", s)
		}
		if seen[f] {
			return nil, fmt.Errorf("--gpus %q: device %s is listed twice", s, f)
		}
		seen[f] = true
		ids = append(ids, f)
	}
	return ids, nil
}
