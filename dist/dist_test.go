package dist

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShard: for fresh random orders and world sizes, padded shards are equal in length,
// cover every frame, repeat only the first frames of the order, and the ranks' k-th batches
// of b together are the one-process k-th batch of world·b; unpadded shards partition the
// order exactly.
func TestShard(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	for trial := 0; trial < 200; trial++ {
		n, world, b := rng.IntN(40)+1, rng.IntN(5)+1, rng.IntN(4)+1
		order := rng.Perm(n)
		shards := make([][]int, world)
		for r := range shards {
			shards[r] = Shard(order, r, world, true)
		}
		want := (n + world - 1) / world
		seen := map[int]int{}
		for r, s := range shards {
			if len(s) != want {
				t.Fatalf("seed %d n %d world %d: rank %d has %d frames, want %d", seed, n, world, r, len(s), want)
			}
			for _, f := range s {
				seen[f]++
			}
		}
		if len(seen) != n {
			t.Fatalf("seed %d: padded shards cover %d of %d frames", seed, len(seen), n)
		}
		// the padding repeats the order from its start (cyclically when world > n)
		padded := make([]int, want*world)
		for i := range padded {
			padded[i] = order[i%n]
		}
		for i, f := range order {
			c := 0
			for j := i; j < len(padded); j += n {
				c++
			}
			if seen[f] != c {
				t.Fatalf("seed %d n %d world %d: frame at %d served %d times, want %d", seed, n, world, i, seen[f], c)
			}
		}
		for k := 0; k*b < want; k++ {
			var union []int
			for r := range shards {
				union = append(union, shards[r][k*b:min((k+1)*b, want)]...)
			}
			global := padded[k*b*world : min((k+1)*b*world, len(padded))]
			slices.Sort(union)
			g := append([]int(nil), global...)
			slices.Sort(g)
			if !slices.Equal(union, g) {
				t.Fatalf("seed %d n %d world %d b %d: batch %d of the ranks %v != one process's %v", seed, n, world, b, k, union, g)
			}
		}
		var all []int
		for r := 0; r < world; r++ {
			all = append(all, Shard(order, r, world, false)...)
		}
		slices.Sort(all)
		o := append([]int(nil), order...)
		slices.Sort(o)
		if !slices.Equal(all, o) {
			t.Fatalf("seed %d: unpadded shards are not a partition", seed)
		}
	}
}

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// TestParseEnv: torchrun and Slurm variables, and one-line errors naming the variable.
func TestParseEnv(t *testing.T) {
	e, ok, err := ParseEnv(envOf("RANK=3", "WORLD_SIZE=4", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=node0", "MASTER_PORT=29500"))
	if err != nil || !ok || e.Rank != 3 || e.WorldSize != 4 || e.LocalRank != 1 || e.LocalWorld != 2 || e.MasterAddr != "node0" || e.MasterPort != 29500 || e.Source != "torchrun" {
		t.Fatalf("torchrun: %+v %v %v", e, ok, err)
	}
	if _, ok, err := ParseEnv(envOf()); ok || err != nil {
		t.Fatalf("no env: ok %v err %v", ok, err)
	}
	e, ok, err = ParseEnv(envOf("SLURM_PROCID=1", "SLURM_NTASKS=2", "SLURM_LOCALID=1", "SLURM_NTASKS_PER_NODE=2", "SLURM_NNODES=1", "SLURM_JOB_ID=1234"))
	if err != nil || !ok || e.Rank != 1 || e.WorldSize != 2 || e.LocalRank != 1 || e.MasterAddr != "127.0.0.1" || e.MasterPort != 29500+234 || e.Source != "slurm" {
		t.Fatalf("slurm: %+v %v %v", e, ok, err)
	}
	// torchrun variables win over Slurm's (torchrun inside an allocation)
	e, _, err = ParseEnv(envOf("RANK=0", "WORLD_SIZE=1", "MASTER_ADDR=a", "MASTER_PORT=1", "SLURM_PROCID=5", "SLURM_NTASKS=8"))
	if err != nil || e.Source != "torchrun" || e.WorldSize != 1 {
		t.Fatalf("torchrun over slurm: %+v %v", e, err)
	}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h"}, "MASTER_PORT is not set"},
		{[]string{"RANK=0", "WORLD_SIZE=2", "MASTER_PORT=1"}, "MASTER_ADDR is not set"},
		{[]string{"WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1"}, "RANK is not set"},
		{[]string{"RANK=2", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1"}, "RANK=2 must be below WORLD_SIZE=2"},
		{[]string{"RANK=-1", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1"}, "RANK=-1: must be at least 0"},
		{[]string{"RANK=0", "WORLD_SIZE=two", "MASTER_ADDR=h", "MASTER_PORT=1"}, `WORLD_SIZE="two": not an integer`},
		{[]string{"RANK=0", "WORLD_SIZE=0", "MASTER_ADDR=h", "MASTER_PORT=1"}, "WORLD_SIZE=0: must be at least 1"},
		{[]string{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=70000"}, "MASTER_PORT=70000: not a TCP port"},
		{[]string{"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1"}, "LOCAL_RANK=2 must be below"},
		{[]string{"SLURM_PROCID=0", "SLURM_NTASKS=4", "SLURM_NNODES=2", "SLURM_JOB_ID=1"}, "MASTER_ADDR is not set: a Slurm job over 2 nodes"},
		{[]string{"SLURM_PROCID=4", "SLURM_NTASKS=4", "SLURM_JOB_ID=1"}, "SLURM_PROCID=4 must be below SLURM_NTASKS=4"},
	} {
		_, _, err := ParseEnv(envOf(c.env...))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: got %v, want one line with %q", c.env, err, c.want)
		}
	}
}
