// Package dist runs data-parallel training: the rendezvous from the environment that
// torchrun or Slurm sets, c10d process groups (Gloo on CPUs, NCCL on CUDA) through package
// torch, the distributed sampler, the trainer's collectives (trainer.Collective), and the
// local launcher behind `spectraclip train --nproc-per-node N`.
package dist

import (
	"fmt"
	"strconv"
	"strings"
)

// Env is one process's place in a data-parallel job.
type Env struct {
	Rank       int
	WorldSize  int
	LocalRank  int
	LocalWorld int // processes on this node
	MasterAddr string
	MasterPort int
	Source     string // "torchrun" (RANK, WORLD_SIZE, ...), "slurm" (SLURM_PROCID, ...)
}

// String describes the env for logs.
func (e Env) String() string {
	return fmt.Sprintf("rank %d of %d (local %d of %d, store %s:%d, from %s)", e.Rank, e.WorldSize, e.LocalRank, e.LocalWorld, e.MasterAddr, e.MasterPort, e.Source)
}

// ParseEnv reads the job's environment through getenv (os.Getenv): torchrun's RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, or, when RANK and
// WORLD_SIZE are absent, Slurm's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and
// SLURM_NTASKS_PER_NODE (MASTER_ADDR then defaults to 127.0.0.1 on a one-node job and
// MASTER_PORT to 29500 + SLURM_JOB_ID mod 1000). ok is false when neither is set (a plain
// single-process run). Errors are one line naming the variable.
func ParseEnv(getenv func(string) string) (e Env, ok bool, err error) {
	num := func(name string, lo int) (int, error) {
		v := strings.TrimSpace(getenv(name))
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: not an integer", name, v)
		}
		if n < lo {
			return 0, fmt.Errorf("%s=%d: must be at least %d", name, n, lo)
		}
		return n, nil
	}
	has := func(name string) bool { return getenv(name) != "" }
	switch {
	case has("RANK") || has("WORLD_SIZE"):
		e.Source = "torchrun"
		for _, v := range []string{"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} {
			if !has(v) {
				return e, true, fmt.Errorf("%s is not set (a data-parallel launch needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)", v)
			}
		}
		if e.Rank, err = num("RANK", 0); err != nil {
			return e, true, err
		}
		if e.WorldSize, err = num("WORLD_SIZE", 1); err != nil {
			return e, true, err
		}
		if has("LOCAL_RANK") {
			if e.LocalRank, err = num("LOCAL_RANK", 0); err != nil {
				return e, true, err
			}
		} else {
			e.LocalRank = e.Rank
		}
		e.LocalWorld = e.WorldSize
		if has("LOCAL_WORLD_SIZE") {
			if e.LocalWorld, err = num("LOCAL_WORLD_SIZE", 1); err != nil {
				return e, true, err
			}
		}
	case has("SLURM_PROCID") && has("SLURM_NTASKS"):
		e.Source = "slurm"
		if e.Rank, err = num("SLURM_PROCID", 0); err != nil {
			return e, true, err
		}
		if e.WorldSize, err = num("SLURM_NTASKS", 1); err != nil {
			return e, true, err
		}
		if has("SLURM_LOCALID") {
			if e.LocalRank, err = num("SLURM_LOCALID", 0); err != nil {
				return e, true, err
			}
		}
		e.LocalWorld = e.WorldSize
		if v := getenv("SLURM_NTASKS_PER_NODE"); v != "" {
			// "4" or "4(x2)": the first count
			if n, err := strconv.Atoi(strings.SplitN(v, "(", 2)[0]); err == nil && n > 0 {
				e.LocalWorld = n
			}
		}
		if !has("MASTER_ADDR") {
			if nn := getenv("SLURM_NNODES"); nn != "" && nn != "1" {
				return e, true, fmt.Errorf("MASTER_ADDR is not set: a Slurm job over %s nodes needs it (e.g. export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1))", nn)
			}
			e.MasterAddr = "127.0.0.1"
		}
		if !has("MASTER_PORT") {
			id, err := num("SLURM_JOB_ID", 0)
			if err != nil {
				return e, true, fmt.Errorf("MASTER_PORT is not set and SLURM_JOB_ID cannot provide one (%v)", err)
			}
			e.MasterPort = 29500 + id%1000
		}
	default:
		return e, false, nil
	}
	if e.MasterAddr == "" {
		e.MasterAddr = strings.TrimSpace(getenv("MASTER_ADDR"))
	}
	if e.MasterPort == 0 {
		if e.MasterPort, err = num("MASTER_PORT", 1); err != nil {
			return e, true, err
		}
		if e.MasterPort > 65535 {
			return e, true, fmt.Errorf("MASTER_PORT=%d: not a TCP port (1..65535)", e.MasterPort)
		}
	}
	rankVar, worldVar := "RANK", "WORLD_SIZE"
	if e.Source == "slurm" {
		rankVar, worldVar = "SLURM_PROCID", "SLURM_NTASKS"
	}
	if e.Rank >= e.WorldSize {
		return e, true, fmt.Errorf("%s=%d must be below %s=%d", rankVar, e.Rank, worldVar, e.WorldSize)
	}
	if e.LocalRank >= e.LocalWorld {
		return e, true, fmt.Errorf("LOCAL_RANK=%d must be below the %d processes of this node", e.LocalRank, e.LocalWorld)
	}
	return e, true, nil
}
