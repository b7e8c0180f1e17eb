package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dist"
	"github.com/spectraclip/spectraclip/run"
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

// joinDist resolves the run's placement (run.Place: with the data-parallel environment, a
// worker's CUDA device and its share of the cores) and joins the data-parallel group when
// the environment describes one (torchrun or Slurm variables); the group is nil without.
func joinDist(g *globals, cfg *config.Config, d *distFlags) (run.Placement, *dist.Group, error) {
	env, ok, err := dist.ParseEnv(os.Getenv)
	if err != nil {
		return run.Placement{}, nil, fmt.Errorf("data-parallel launch: %w", err)
	}
	req := run.Request{}
	if ok {
		req.Local = &env
	}
	pl, err := run.Place(cfg, req)
	if err != nil || !ok {
		return pl, nil, err
	}
	grp, err := dist.Join(env, pl.Device, d.timeout)
	if err != nil {
		return pl, nil, err
	}
	g.log.WithFields(map[string]any{"rank": env.Rank, "world_size": env.WorldSize, "local_rank": env.LocalRank, "backend": grp.Backend().String(), "device": pl.Device.String(), "threads": pl.Threads, "from": env.Source}).Info("joined the data-parallel group")
	return pl, grp, nil
}
