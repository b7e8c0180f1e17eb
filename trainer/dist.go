package trainer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/nodes"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/torch"
)

// Collective is what data-parallel training needs from its process group (package dist
// implements it over c10d; nil in Options means one process). Every method is a collective:
// all ranks call it in the same order.
type Collective interface {
	Rank() int
	WorldSize() int
	// AllReduceMean averages the tensors (on the run's device) across ranks in place, in
	// one flat buffer.
	AllReduceMean(ts []*torch.Tensor) error
	// AllReduceFloat64 sums host values across ranks in place.
	AllReduceFloat64(v []float64) error
	// AllGatherBytes returns every rank's bytes in rank order.
	AllGatherBytes(b []byte) ([][]byte, error)
	// Broadcast overwrites the tensors (on the run's device) with rank root's, in place.
	Broadcast(ts []*torch.Tensor, root int) error
	Barrier() error
	// Shard returns this rank's part of an epoch's frame order (pad: to equal shards).
	Shard(order []int, pad bool) []int
}

// ShardFitter is a statistically fitted node whose sufficient statistics can be pooled
// across the ranks of a data-parallel run: every rank fits its shard, then each rank merges
// all ranks' statistics in rank order, so every rank publishes the same values.
type ShardFitter interface {
	// FitPartial returns the statistics gathered since FitReset.
	FitPartial() ([]float64, error)
	// FitMerge replaces them with the pool of every rank's FitPartial (in rank order).
	FitMerge(parts [][]float64) error
}

// rank is this process's rank (0 without a process group).
func (e *Evaluator) rank() int {
	if e.dist == nil {
		return 0
	}
	return e.dist.Rank()
}

// leader reports whether this process writes the run directory (rank 0).
func (r *Run) leader() bool { return r.rank() == 0 }

// worldSize is the number of data-parallel processes (1 without a process group).
func (e *Evaluator) worldSize() int {
	if e.dist == nil {
		return 1
	}
	return e.dist.WorldSize()
}

// sampler shards a split between the ranks: a training epoch's frames padded to equal
// shards (pad: every rank takes the same number of steps), evaluation frames and the
// statistical fit's pass over the training split without padding (pooled metrics count each
// pixel once, and the pooled fit counts each frame once, as one process does: a repeated
// frame would weigh twice in the min/max and covariance statistics).
func (e *Evaluator) sampler(pad bool) func(epoch int, order []int) []int {
	if e.dist == nil || e.dist.WorldSize() == 1 {
		return nil
	}
	return func(_ int, order []int) []int { return e.dist.Shard(order, pad) }
}

// agreeDir makes every rank use rank 0's run directory (a default directory carries a
// timestamp that may differ between processes).
func agreeDir(c Collective, dir string) (string, error) {
	parts, err := c.AllGatherBytes([]byte(dir))
	if err != nil {
		return "", fmt.Errorf("agreeing on the run directory: %w", err)
	}
	return string(parts[0]), nil
}

// fitAcrossRanks pools a fitted node's statistics over the ranks before FitFinish.
func (r *Run) fitAcrossRanks(n nodes.Node, f nodes.Fitter) error {
	if r.dist == nil {
		return nil
	}
	sf, ok := nodes.UnwrapNode(n).(ShardFitter)
	if !ok {
		if sf, ok = f.(ShardFitter); !ok {
			return fmt.Errorf("node %q cannot pool its statistical fit across ranks (it has no ShardFitter); train it in one process", n.Name())
		}
	}
	mine, err := sf.FitPartial()
	if err != nil {
		return fmt.Errorf("fit %s: %w", n.Name(), err)
	}
	parts, err := r.dist.AllGatherBytes(float64Bytes(mine))
	if err != nil {
		return fmt.Errorf("fit %s: %w", n.Name(), err)
	}
	all := make([][]float64, len(parts))
	for i, p := range parts {
		all[i] = bytesFloat64(p)
	}
	if err := sf.FitMerge(all); err != nil {
		return fmt.Errorf("fit %s: pooling %d ranks: %w", n.Name(), len(all), err)
	}
	return nil
}

// reduceGrads averages the gradients of the trainable parameters across ranks (one flat
// buffer) with the step's loss in the same buffer; it returns the mean loss over the
// ranks and the bytes all-reduced.
func (r *Run) reduceGrads(s *torch.Scope, params []*torch.Tensor, loss *torch.Tensor) (float64, int64, error) {
	var ts []*torch.Tensor
	var bytes int64
	for _, p := range params {
		if g := s.Grad(p); g != nil {
			ts = append(ts, g)
			bytes += g.Numel() * int64(g.DType().Size())
		}
	}
	l := s.Reshape(s.ToDType(s.Detach(loss), torch.Float32), 1)
	l = s.Clone(l)
	if err := s.Err(); err != nil {
		return 0, 0, err
	}
	ts = append(ts, l)
	bytes += 4
	if err := r.dist.AllReduceMean(ts); err != nil {
		return 0, 0, err
	}
	v, err := l.Item()
	return v, bytes, err
}

// poolEvaluation pools an evaluation over the ranks: the metric accumulators are merged
// in rank order (exact ranking metrics stay exact: the kept pixels are concatenated), the
// loss sums and frame counts are added.
func (e *Evaluator) poolEvaluation(acc *metriccore.Accumulator, lossSum *float64, lossN, frames *int, seconds *float64) (*metriccore.Accumulator, error) {
	if e.dist == nil {
		return acc, nil
	}
	v := []float64{*lossSum, float64(*lossN), float64(*frames), *seconds}
	if err := e.dist.AllReduceFloat64(v); err != nil {
		return nil, err
	}
	*lossSum, *lossN, *frames = v[0], int(v[1]), int(v[2])
	*seconds = v[3] / float64(e.worldSize())
	if acc == nil {
		return nil, errors.New("pooling metrics across ranks: no accumulator")
	}
	b, err := acc.MarshalBinary()
	if err != nil {
		return nil, err
	}
	parts, err := e.dist.AllGatherBytes(b)
	if err != nil {
		return nil, err
	}
	out, err := metriccore.NewAccumulatorOptions(acc.Options())
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		a := new(metriccore.Accumulator)
		if err := a.UnmarshalBinary(p); err != nil {
			return nil, fmt.Errorf("metrics of rank %d: %w", i, err)
		}
		if err := out.Merge(a); err != nil {
			return nil, fmt.Errorf("pooling the metrics of rank %d: %w", i, err)
		}
	}
	return out, nil
}

// barrier waits for every rank (a no-op in one process).
func (r *Run) barrier() error {
	if r.dist == nil {
		return nil
	}
	return r.dist.Barrier()
}

// followerTB is where a rank other than 0 sends its TensorBoard events: a temporary
// directory removed at Close, never the run directory.
func followerTB() (string, error) { return os.MkdirTemp("", "spectraclip-rank-tb-") }

// checkWorldSize refuses to resume a checkpoint written with another number of ranks
// (the shards, hence the batches of each step, would differ).
func (r *Run) checkWorldSize(st TrainerState) error {
	was := max(st.WorldSize, 1)
	if was != r.worldSize() {
		return fmt.Errorf("resume %s: the run was trained with %d data-parallel process(es), this one has %d: resume it with --nproc-per-node %d (or WORLD_SIZE=%d)", r.resume, was, r.worldSize(), was, was)
	}
	return nil
}

func (r *Run) logDist(bytesPerStep int64, nparams int) {
	if r.dist == nil {
		return
	}
	r.Log.WithFields(logrus.Fields{"rank": r.rank(), "world_size": r.worldSize(), "allreduce_bytes_per_step": bytesPerStep, "gradient_tensors": nparams}).Info("data-parallel training: gradients averaged across ranks in one flat buffer per step")
}

func float64Bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		u := math.Float64bits(x)
		for k := 0; k < 8; k++ {
			b[8*i+k] = byte(u >> (8 * k))
		}
	}
	return b
}

func bytesFloat64(b []byte) []float64 {
	v := make([]float64, len(b)/8)
	for i := range v {
		var u uint64
		for k := 0; k < 8; k++ {
			u |= uint64(b[8*i+k]) << (8 * k)
		}
		v[i] = math.Float64frombits(u)
	}
	return v
}

// poolEvaluate finishes Evaluate in a data-parallel run: every rank gets the metrics of the
// whole split (its pixels pooled over the ranks), the mean loss over every batch and the
// total frame count.
func (e *Evaluator) poolEvaluate(ev *Evaluation, mname string, mnode metricsSource, own *metriccore.Accumulator, stage nodes.Stage, lossSum *float64, lossN *int) error {
	acc := own
	hasScore := 1.0
	if mnode != nil {
		if hs, ok := mnode.(interface{ HasScores() bool }); ok && !hs.HasScores() {
			hasScore = 0
		}
		acc = mnode.Take()
	}
	// a rank whose shard was empty has seen no scores: the ranks agree on "any has"
	flag := []float64{hasScore}
	if err := e.dist.AllReduceFloat64(flag); err != nil {
		return err
	}
	pooled, err := e.poolEvaluation(acc, lossSum, lossN, &ev.Frames, &ev.Seconds)
	if err != nil {
		return err
	}
	if mnode != nil && pooled.Count() == 0 && ev.Frames > 0 {
		return fmt.Errorf("metrics node %q pooled no pixels in the %s stage (is it connected and does it run in %s?)", mname, stage, stage)
	}
	ev.Acc = pooled
	m := pooled.Result().Map()
	if mnode != nil && flag[0] == 0 {
		for _, k := range []string{"average_precision", "auroc", "average_precision_max_error", "auroc_max_error"} {
			delete(m, k)
		}
	}
	ev.Metrics = m
	return nil
}

// EnvTestDistKill is a test hook: "R:S" makes rank R of a data-parallel run SIGKILL itself
// at the start of global training step S (a rank dying mid-epoch).
const EnvTestDistKill = "SPECTRACLIP_TEST_DIST_KILL"

func (r *Run) distKillPoint(step int64) {
	if r.dist == nil {
		return
	}
	v := os.Getenv(EnvTestDistKill)
	if v == "" {
		return
	}
	var rank int
	var at int64
	if _, err := fmt.Sscanf(v, "%d:%d", &rank, &at); err != nil || rank != r.rank() || at != step {
		return
	}
	r.Log.WithFields(logrus.Fields{"rank": rank, "step": step}).Warn(EnvTestDistKill + ": killing this rank")
	p, _ := os.FindProcess(os.Getpid())
	_ = p.Kill()
	select {} // the signal is on its way
}

// syncState gives every rank rank 0's node state (parameters and fitted buffers, the float
// tensors on the run's device), as DistributedDataParallel does when it wraps a module: the
// ranks start from identical weights whatever rounding their fits or loads had, and evaluate
// the checkpoint rank 0 restored even where they cannot see its files.
func (r *Run) syncState(what string) error {
	if r.dist == nil {
		return nil
	}
	m, err := r.Pipeline.State()
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k, t := range m {
		if t.DType().IsFloat() && t.Device() == r.Device {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	ts := make([]*torch.Tensor, len(keys))
	for i, k := range keys {
		ts[i] = m[k]
	}
	if err := r.dist.Broadcast(ts, 0); err != nil {
		return fmt.Errorf("%s: broadcasting rank 0's weights: %w", what, err)
	}
	return nil
}
