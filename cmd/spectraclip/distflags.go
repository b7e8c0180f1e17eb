package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dist"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer"
)

// distFlags are train's data-parallel options.
type distFlags struct {
	nproc   int
	timeout time.Duration
}

func (d *distFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&d.nproc, "nproc-per-node", 0, "data-parallel training: start N worker processes on this machine (N at most 4 per CPU core, or 64; Gloo on the CPU; NCCL with training.device=cuda, one GPU each, cuda:LOCAL_RANK); multi-node jobs set RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (torchrun) or run under srun instead")
	cmd.Flags().DurationVar(&d.timeout, "dist-timeout", dist.DefaultTimeout, "data-parallel: how long a rank waits for the others (rendezvous, each all-reduce) before failing")
}

// launchWorkers re-executes this program as --nproc-per-node workers (torchrun's local
// launch); it reports false when this process is itself a worker or no launch is asked.
func launchWorkers(g *globals, d *distFlags) (bool, error) {
	// a worker of the local launcher dies with it; first of all, as the rendezvous may wait
	if err := dist.WatchLauncher(); err != nil {
		return true, err
	}
	if d.nproc == 0 || os.Getenv("RANK") != "" {
		return false, nil
	}
	if maxN := config.MaxThreads(); d.nproc < 0 || d.nproc > maxN {
		return true, fmt.Errorf("--nproc-per-node %d: want 1..%d (at most 4 worker processes per CPU core, at least 64)", d.nproc, maxN)
	}
	args := withoutFlag(os.Args[1:], "--nproc-per-node")
	g.log.WithField("workers", d.nproc).Info("launching data-parallel workers")
	return true, dist.Launch(dist.LaunchOptions{N: d.nproc, Args: args, Out: g.out, Err: g.errOut})
}

// withoutFlag drops a flag and its value (--name V or --name=V) from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if a == name {
			i++
			continue
		}
		if strings.HasPrefix(a, name+"=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// joinDist joins the data-parallel group when the environment describes one (torchrun or
// Slurm variables); nil without. It picks the worker's CUDA device (cuda → cuda:LOCAL_RANK
// modulo the visible devices)
// and, unless training.threads is set, an equal share of the CPU cores per local worker.
func joinDist(g *globals, cfg *config.Config, d *distFlags) (*dist.Group, error) {
	env, ok, err := dist.ParseEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("data-parallel launch: %w", err)
	}
	if !ok {
		return nil, nil
	}
	if cfg.Training.Device == "cuda" {
		// one GPU per process: LOCAL_RANK's among the visible ones (under srun
		// --gpus-per-task 1 each task sees one device, its cuda:0)
		idx := env.LocalRank
		if n := torch.CUDADeviceCount(); n > 0 {
			idx %= n
		}
		cfg.Training.Device = fmt.Sprintf("cuda:%d", idx)
	}
	if cfg.Training.Threads == 0 && env.LocalWorld > 1 {
		cfg.Training.Threads = max(1, runtime.NumCPU()/env.LocalWorld)
	}
	dev, err := torch.ParseDevice(cfg.Training.Device)
	if err != nil {
		return nil, fmt.Errorf("training.device: %w", err)
	}
	if err := trainer.SetThreads(cfg.Training.Threads); err != nil {
		return nil, err
	}
	grp, err := dist.Join(env, dev, d.timeout)
	if err != nil {
		return nil, err
	}
	g.log.WithFields(map[string]any{"rank": env.Rank, "world_size": env.WorldSize, "local_rank": env.LocalRank, "backend": grp.Backend().String(), "device": dev.String(), "threads": cfg.Training.Threads, "from": env.Source}).Info("joined the data-parallel group")
	return grp, nil
}
