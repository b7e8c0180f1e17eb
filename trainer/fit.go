package trainer

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/config"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// TrainerState is the part of a checkpoint that is not tensors.
type TrainerState struct {
	Epoch      int               `json:"epoch"` // the last completed epoch: 0 the initialisation's validation, N after N training epochs
	GlobalStep int64             `json:"global_step"`
	LR         float64           `json:"lr"`
	Scheduler  *SchedulerState   `json:"scheduler,omitempty"`
	Best       []CheckpointInfo  `json:"best"`
	History    []run.EpochRecord `json:"history"`
	EarlyBest  config.Float      `json:"early_best"`
	EarlyBad   int               `json:"early_bad"`
	Monitor    string            `json:"monitor,omitempty"` // the checkpoint monitor and its mode
	Mode       string            `json:"mode,omitempty"`
	Self       *CheckpointInfo   `json:"self,omitempty"`       // set in a top-k checkpoint: its own record
	WorldSize  int               `json:"world_size,omitempty"` // data-parallel processes (0 or 1: one)
	// EpochZero: epochs are numbered from the initialisation, validated before training as
	// epoch 0 (training epochs are 1, 2, …). A checkpoint written before epoch 0 existed
	// numbered its training epochs from 0; it is renumbered when read (fromInit).
	EpochZero bool `json:"epoch_zero,omitempty"`
}

// fromInit renumbers a state whose training epochs were numbered from 0 (a checkpoint
// written before the initialisation was validated as epoch 0) so that training epoch e is
// e+1, as now; a state numbered from the initialisation is left as it is.
func (st *TrainerState) fromInit() {
	if st.EpochZero {
		return
	}
	if st.Epoch >= 0 {
		st.Epoch++
	}
	for i := range st.History {
		st.History[i].Epoch++
	}
	for i := range st.Best {
		st.Best[i].Epoch++
	}
	if st.Self != nil {
		st.Self.Epoch++
	}
	st.EpochZero = true
}

// CheckpointInfo names a kept checkpoint (Prefix: its directory relative to the run
// directory) and its monitored value.
type CheckpointInfo struct {
	Prefix string  `json:"prefix"`
	Value  float64 `json:"value"`
	Epoch  int     `json:"epoch"`
}

const rngKey = trainerKeys + "rng_default_cpu"

// TrainGradient runs the epochs: optimisation over the training split with the loss nodes,
// validation each epoch, the LR schedule, checkpoints and early stopping. It resumes from
// Options.Resume when set.
//
// Before the first training epoch the initialised pipeline is validated as epoch 0: the
// history's first entry (validation metrics, no train loss), a top-k checkpoint candidate
// and early stopping's first reference, so that the checkpoint chosen is never worse on
// validation than the initialisation. Epoch 0 does not step the LR schedule. Training epoch
// e (0-based: the loader's shuffle, the Concrete temperature and the schedule count it so)
// is recorded, logged and checkpointed as epoch e+1.
func (r *Run) TrainGradient() error {
	// Every step is recorded and differentiated on one OS thread. LibTorch numbers autograd
	// functions from a thread-local counter and its backward engine runs the ready ones in
	// that order; a goroutine changes OS threads between cgo calls, so a step recorded on
	// two threads could run its backward branches in another order and sum the gradients
	// that meet at a tensor with three or more consumers in another order (the Concrete
	// selection weights: convolution, fused bias, distinctness loss). Same seed, different
	// weights (issues 16.8 and 11.7; TestConcreteSameSeedSameWeights).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tc := r.Cfg.Training
	if tc.Trainer.MaxEpochs == 0 {
		return nil
	}
	if len(r.Cfg.LossNodes) == 0 {
		r.Log.WithField("max_epochs", tc.Trainer.MaxEpochs).Info("no loss_nodes: statistical fitting only, no gradient epochs")
		return nil
	}
	params := r.Pipeline.Parameters()
	if len(params) == 0 {
		return fmt.Errorf("training: no trainable parameters (unfreeze_nodes: %v)", r.Cfg.UnfreezeNodes)
	}
	ts := make([]*torch.Tensor, len(params))
	for i, p := range params {
		ts[i] = p.Tensor
	}
	kind, err := torch.ParseOptimKind(tc.Optimizer.Name)
	if err != nil {
		return fmt.Errorf("training.optimizer.name: %w", err)
	}
	oc := torch.OptimConfig{LR: tc.Optimizer.LR, WeightDecay: tc.Optimizer.WeightDecay, Momentum: tc.Optimizer.Momentum}
	if len(tc.Optimizer.Betas) == 2 {
		oc.Betas = [2]float64{tc.Optimizer.Betas[0], tc.Optimizer.Betas[1]}
	}
	opt, err := torch.NewOptimizer(kind, ts, oc)
	if err != nil {
		return err
	}
	defer opt.Free()
	sched, err := NewScheduler(tc.Scheduler, tc.Optimizer.LR, tc.Trainer.MaxEpochs)
	if err != nil {
		return err
	}
	st := TrainerState{Epoch: -1, LR: tc.Optimizer.LR, EarlyBest: config.Float(math.NaN()), EpochZero: true}
	loggedDist := false
	if r.resumeState != nil {
		st = *r.resumeState
		st.Self = nil
		_, of, _ := run.CheckpointFiles(r.resume)
		if err := opt.Load(of); err != nil {
			return fmt.Errorf("resume %s: %w", r.resume, err)
		}
		if err := opt.SetLR(st.LR); err != nil {
			return fmt.Errorf("resume %s: %w", r.resume, err)
		}
		if r.leader() {
			r.removeOrphanCheckpoints(st)
		}
		if sched != nil && st.Scheduler != nil {
			sched.SetState(*st.Scheduler)
		}
		r.History = st.History
		r.Log.WithFields(logrus.Fields{"from": r.resume, "epoch": st.Epoch}).Info("resuming")
	}
	if r.worldSize() > 1 {
		st.WorldSize = r.worldSize()
	}
	if err := r.syncState("training"); err != nil {
		return err
	}
	if st.Epoch < 0 {
		if err := r.validateInit(&st, sched, opt); err != nil {
			return err
		}
	}
	// epoch is the 0-based training epoch; st.Epoch (the last completed, 0 = the
	// initialisation) is the next one's index
	for epoch := st.Epoch; epoch < tc.Trainer.MaxEpochs; epoch++ {
		t0 := time.Now()
		r.Pipeline.SetTraining(true)
		var lossSum float64
		var lossN int
		tTrain := time.Now()
		var commSec float64 // time in the gradient all-reduce, waiting for the slowest rank included
		err := r.eachBatch("train", epoch, fmt.Sprintf("epoch %d/%d", epoch+1, tc.Trainer.MaxEpochs), true, func(ctx *nodes.Context, batch map[string]any) error {
			ctx.Stage = nodes.StageTrain
			ctx.GlobalStep = st.GlobalStep
			r.distKillPoint(st.GlobalStep)
			s := ctx.Scope
			s.SetGradEnabled(true)
			out, err := r.Pipeline.Run(ctx, batch, nodes.RunOptions{})
			if err != nil {
				return err
			}
			loss, ok := out.SumLosses(s, r.Cfg.LossNodes)
			if !ok {
				return fmt.Errorf("training: no loss node produced a loss in the train stage (loss_nodes %v)", r.Cfg.LossNodes)
			}
			if err := opt.ZeroGrad(); err != nil {
				return err
			}
			s.Backward(loss, nil, false)
			if err := s.Err(); err != nil {
				return err
			}
			var v float64
			if r.dist != nil { // every collective runs in a world of 1 too (a check of the backend)
				// data-parallel: average the gradients (and the loss, in the same buffer)
				tc := time.Now()
				mean, bytes, err := r.reduceGrads(s, ts, loss)
				commSec += time.Since(tc).Seconds()
				if err != nil {
					return fmt.Errorf("all-reduce of the gradients at step %d: %w", st.GlobalStep, err)
				}
				if !loggedDist {
					r.logDist(bytes, len(ts))
					loggedDist = true
				}
				v = mean
			}
			if tc.Trainer.GradientClipVal > 0 {
				if _, err := torch.ClipGradNorm(ts, tc.Trainer.GradientClipVal, 2); err != nil {
					return err
				}
			}
			if err := opt.Step(); err != nil {
				return err
			}
			if r.dist == nil {
				if v, err = loss.Item(); err != nil {
					return err
				}
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("training: loss is %v at epoch %d batch %d", v, epoch, ctx.BatchIdx)
			}
			lossSum += v
			lossN++
			_ = r.TB.AddScalar("train/loss", v, st.GlobalStep)
			for k, pv := range out.LossParts(r.Cfg.LossNodes) {
				_ = r.TB.AddScalar("train/"+k, pv, st.GlobalStep)
			}
			st.GlobalStep++
			return nil
		})
		if err != nil {
			return fmt.Errorf("epoch %d: %w", epoch, err)
		}
		if sec := time.Since(tTrain).Seconds(); lossN > 0 {
			// the optimisation steps alone (no validation): the speed figure of data-parallel runs
			r.Log.WithFields(logrus.Fields{"epoch": epoch + 1, "rank": r.rank(), "world_size": r.worldSize(), "steps": lossN, "seconds": round4(sec), "steps_per_s": round4(float64(lossN) / sec), "allreduce_seconds": round4(commSec)}).Debug("train steps")
		}
		rec := run.EpochRecord{Epoch: epoch + 1, TrainLoss: config.Float(lossSum / math.Max(1, float64(lossN))), LR: st.LR}
		if t, ok := r.temperature(epoch); ok {
			rec.Temperature = t
			_ = r.TB.AddScalar("concrete/temperature", t, int64(rec.Epoch))
		}
		ev, err := r.Evaluate("val", nodes.StageVal, 2)
		if err != nil {
			return fmt.Errorf("epoch %d validation: %w", epoch, err)
		}
		rec.ValLoss = config.Float(ev.Loss)
		rec.Val = ev.Metrics
		rec.Seconds = time.Since(t0).Seconds()
		r.logEpoch(rec, ev)
		r.History = append(r.History, rec)
		st.History = r.History
		if sched != nil {
			newLR := sched.Step(epoch, st.LR, monitored(rec, tc.Scheduler.Monitor))
			if newLR != st.LR {
				if err := opt.SetLR(newLR); err != nil {
					return err
				}
				r.Log.WithFields(logrus.Fields{"epoch": rec.Epoch, "lr": newLR}).Info("learning rate changed")
				st.LR = newLR
			}
			ss := sched.State()
			st.Scheduler = &ss
		}
		st.Epoch = rec.Epoch
		stop := r.earlyStop(&st, rec)
		if err := r.checkpoint(&st, rec, opt); err != nil {
			return err
		}
		_ = r.TB.Flush()
		if stop {
			r.Log.WithField("epoch", rec.Epoch).Info("early stopping")
			break
		}
	}
	return nil
}

// validateInit validates the initialised pipeline as epoch 0 (before any training step):
// its record opens the history with validation metrics and no train loss (NaN, null in
// JSON), it is early stopping's first reference and a top-k checkpoint candidate like any
// epoch (checkpoints/epoch=00 holds the initial weights and the optimizer's initial state).
// The LR schedule is not stepped. Every data-parallel rank validates (the metrics are pooled
// across ranks); rank 0 writes the checkpoint.
func (r *Run) validateInit(st *TrainerState, sched Scheduler, opt *torch.Optimizer) error {
	t0 := time.Now()
	ev, err := r.Evaluate("val", nodes.StageVal, 2)
	if err != nil {
		return fmt.Errorf("epoch 0 (the initialisation) validation: %w", err)
	}
	rec := run.EpochRecord{Epoch: 0, TrainLoss: config.Float(math.NaN()), LR: st.LR, ValLoss: config.Float(ev.Loss), Val: ev.Metrics, Seconds: time.Since(t0).Seconds()}
	r.logEpoch(rec, ev)
	r.History = append(r.History, rec)
	st.History = r.History
	if sched != nil {
		ss := sched.State()
		st.Scheduler = &ss
	}
	st.Epoch = 0
	if es := r.Cfg.Training.Callbacks.EarlyStopping; es.Enabled && !math.IsNaN(monitored(rec, es.Monitor)) {
		r.earlyStop(st, rec) // the first defined value: an improvement, never a stop
	}
	if err := r.checkpoint(st, rec, opt); err != nil {
		return err
	}
	_ = r.TB.Flush()
	return nil
}

// monitored reads a metric of an epoch record by its logged name.
func monitored(rec run.EpochRecord, name string) float64 {
	switch name {
	case "", "val/loss", "val_loss":
		return float64(rec.ValLoss)
	case "train/loss", "train_loss":
		return float64(rec.TrainLoss)
	}
	short := name
	if i := strings.LastIndex(name, "/"); i >= 0 {
		short = name[i+1:]
	}
	if v, ok := rec.Val[short]; ok {
		return v
	}
	return math.NaN()
}

func (r *Run) temperature(epoch int) (float64, bool) {
	for _, n := range r.Pipeline.Nodes() {
		if t, ok := nodes.UnwrapNode(n).(interface{ Temperature(int) float64 }); ok {
			return t.Temperature(epoch), true
		}
	}
	return 0, false
}

func (r *Run) logEpoch(rec run.EpochRecord, ev *Evaluation) {
	step := int64(rec.Epoch)
	if !math.IsNaN(float64(rec.TrainLoss)) {
		_ = r.TB.AddScalar("train/epoch_loss", float64(rec.TrainLoss), step)
	}
	if !math.IsNaN(float64(rec.ValLoss)) {
		_ = r.TB.AddScalar("val/loss", float64(rec.ValLoss), step)
	}
	_ = r.TB.AddScalar("lr-"+r.Cfg.Training.Optimizer.Name, rec.LR, step)
	metricNode := "metrics_anomaly"
	if len(r.Cfg.MetricNodes) > 0 {
		metricNode = r.Cfg.MetricNodes[0]
	}
	for _, k := range slices.Sorted(maps.Keys(rec.Val)) {
		_ = r.TB.AddScalar(metricNode+"/"+k, rec.Val[k], step)
	}
	r.logImages(ev, step)
	r.logBands(step)
	f := logrus.Fields{"epoch": rec.Epoch, "val_loss": round4(float64(rec.ValLoss)), "lr": rec.LR, "seconds": round4(rec.Seconds)}
	if math.IsNaN(float64(rec.TrainLoss)) {
		f["initialisation"] = true // epoch 0: validated before training, no train loss
	} else {
		f["train_loss"] = round4(float64(rec.TrainLoss))
	}
	for _, k := range []string{"iou", "f1_score", "average_precision", "auroc"} {
		f["val_"+k] = round4(rec.Val[k])
	}
	if rec.Temperature > 0 {
		f["tau"] = round4(rec.Temperature)
	}
	r.Log.WithFields(f).Info("epoch done")
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// logImages writes the DRCNN visualiser's images for the first validation frames.
func (r *Run) logImages(ev *Evaluation, step int64) {
	for i, smp := range ev.Samples {
		hw := smp.H * smp.W
		if smp.Hsi != nil {
			_ = r.TB.AddImageRGB(fmt.Sprintf("val/hsi_input_sample_%d", i), smp.Hsi, smp.H, smp.W, step)
		}
		if smp.Reduced != nil {
			_ = r.TB.AddImageRGB(fmt.Sprintf("val/mixer_output_adaclip_input_sample_%d", i), clamp01(smp.Reduced), smp.H, smp.W, step)
		}
		gt := make([]float32, hw*3)
		for p, v := range smp.Target {
			if v {
				gt[p*3] = 1
			}
		}
		_ = r.TB.AddImageRGB(fmt.Sprintf("val/ground_truth_mask_sample_%d", i), gt, smp.H, smp.W, step)
		lo, hi := minMax(smp.Scores)
		hm := make([]float32, hw*3)
		for p, v := range smp.Scores {
			s := float32(0)
			if hi > lo {
				s = (v - lo) / (hi - lo)
			}
			hm[p*3], hm[p*3+2] = s, 1-s
		}
		_ = r.TB.AddImageRGB(fmt.Sprintf("val/adaclip_scores_heatmap_sample_%d", i), hm, smp.H, smp.W, step)
	}
}

func (r *Run) logBands(step int64) {
	for _, n := range r.Pipeline.Nodes() {
		if sb, ok := nodes.UnwrapNode(n).(interface {
			SelectedBands([]float32) ([]int, []float32, error)
		}); ok {
			idx, wl, err := sb.SelectedBands(r.Data.Wavelengths)
			if err == nil {
				_ = r.TB.AddText("concrete/selected_bands", fmt.Sprintf("bands %v = %v nm", idx, wl), step)
			}
		}
	}
}

func clamp01(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(math.Min(1, math.Max(0, float64(x))))
	}
	return out
}

func minMax(v []float32) (float32, float32) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func (r *Run) earlyStop(st *TrainerState, rec run.EpochRecord) bool {
	es := r.Cfg.Training.Callbacks.EarlyStopping
	if !es.Enabled {
		return false
	}
	v := monitored(rec, es.Monitor)
	eb := float64(st.EarlyBest)
	// a NaN value is never an improvement
	improved := !math.IsNaN(v) && (math.IsNaN(eb) || (es.Mode == "max" && v > eb+es.MinDelta) || (es.Mode != "max" && v < eb-es.MinDelta))
	if improved {
		st.EarlyBest = config.Float(v)
		st.EarlyBad = 0
		return false
	}
	st.EarlyBad++
	return st.EarlyBad >= es.Patience
}

// checkpoint writes the top-k checkpoints by the monitored metric and last (when
// save_last). Each checkpoint is one directory, checkpoints/<name>/, holding weights.pt
// (every node's parameters and buffers plus the RNG states), optim.pt, state.json and a
// manifest of their sha256 sums written last; it is renamed into place as a whole (see
// package run), so a kill never pairs new weights with an old optimizer state. Pruned
// checkpoints are removed only after the new state is saved.
func (r *Run) checkpoint(st *TrainerState, rec run.EpochRecord, opt *torch.Optimizer) error {
	cc := r.Cfg.Training.Callbacks.Checkpoint
	if !cc.Enabled || !r.leader() {
		return nil // data-parallel ranks other than 0 write nothing
	}
	st.Monitor, st.Mode = cc.Monitor, cc.Mode
	var drop []CheckpointInfo
	if cc.SaveTopK != 0 {
		v := monitored(rec, cc.Monitor)
		if !math.IsNaN(v) {
			name := fmt.Sprintf("epoch=%02d", rec.Epoch)
			self := CheckpointInfo{Prefix: filepath.ToSlash(filepath.Join(run.CheckpointsDir, name)), Value: v, Epoch: rec.Epoch}
			st.Best = append(st.Best, self)
			sortBest(st.Best, cc.Mode)
			keep := true
			if cc.SaveTopK > 0 && len(st.Best) > cc.SaveTopK {
				for _, d := range st.Best[cc.SaveTopK:] {
					if d.Prefix == self.Prefix {
						keep = false
					} else {
						drop = append(drop, d)
					}
				}
				st.Best = st.Best[:cc.SaveTopK]
			}
			if keep {
				st.Self = &self
				err := r.saveCheckpoint(name, st, opt)
				st.Self = nil
				if err != nil {
					return err
				}
			}
		}
	}
	if cc.SaveLast {
		if err := r.saveCheckpoint(run.LastCheckpoint, st, opt); err != nil {
			return err
		}
	}
	for _, d := range drop {
		if err := removeCheckpoint(r.Dir, d.Prefix); err != nil {
			r.Log.WithError(err).Warn("removing a pruned checkpoint")
		}
	}
	return nil
}

func sortBest(b []CheckpointInfo, mode string) {
	sort.SliceStable(b, func(i, j int) bool {
		if mode == "min" {
			return b[i].Value < b[j].Value
		}
		return b[i].Value > b[j].Value
	})
}

// checkpointDir is where a recorded checkpoint lives. Records hold paths relative to the run
// directory ("checkpoints/epoch=02"); older runs recorded them relative to the working
// directory of the time, or absolute: only the name is used, under this run's checkpoints/.
func checkpointDir(runDir, recorded string) string {
	return run.CheckpointPath(runDir, filepath.Base(filepath.FromSlash(recorded)))
}

func removeCheckpoint(runDir, recorded string) error {
	d := checkpointDir(runDir, recorded)
	if err := run.Remove(filepath.Dir(d), filepath.Base(d)); err != nil {
		return err
	}
	for _, ext := range []string{".weights.pt", ".optim.pt", ".json"} { // the old three-file layout
		os.Remove(d + ext)
	}
	return nil
}

// trainerKeys is the prefix of the checkpoint entries that belong to the trainer (RNG
// states), not to a node.
const trainerKeys = "__trainer__/"

// loadNodeState copies a checkpoint's node entries into the pipeline.
func loadNodeState(p *nodes.Pipeline, m map[string]*torch.Tensor) error {
	own := make(map[string]*torch.Tensor, len(m))
	for k, t := range m {
		if !strings.HasPrefix(k, trainerKeys) {
			own[k] = t
		}
	}
	return p.LoadState(own)
}

func (r *Run) saveCheckpoint(name string, st *TrainerState, opt *torch.Optimizer) error {
	m, err := r.Pipeline.State()
	if err != nil {
		return err
	}
	rng, err := torch.DefaultGeneratorState()
	if err != nil {
		return err
	}
	defer rng.Free()
	m[rngKey] = rng
	for _, n := range r.Pipeline.Nodes() {
		if g, ok := nodes.UnwrapNode(n).(interface{ GeneratorState() (*torch.Tensor, error) }); ok {
			t, err := g.GeneratorState()
			if err != nil {
				return err
			}
			defer t.Free()
			m[trainerKeys+"gen_"+n.Name()] = t
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint %s: state: %w", name, err)
	}
	s, err := run.Stage(run.Path(r.Dir, run.CheckpointsDir), name)
	if err != nil {
		return err
	}
	run.KillPoint("write weights " + name)
	if err := torch.SaveTensors(s.Path(run.CkptWeights), m); err != nil {
		s.Abort()
		return err
	}
	if opt != nil {
		run.KillPoint("write optimizer " + name)
		if err := opt.Save(s.Path(run.CkptOptim)); err != nil {
			s.Abort()
			return err
		}
	}
	run.KillPoint("write state " + name)
	if err := nodes.WriteFileAtomic(s.Path(run.CkptState), b); err != nil {
		s.Abort()
		return err
	}
	return s.Commit(st.Epoch)
}

// loadCheckpoint restores a checkpoint's node state and RNG states and returns its trainer
// state; the optimizer state is loaded by TrainGradient from the same checkpoint.
func (r *Run) loadCheckpoint(path string) (TrainerState, error) {
	var st TrainerState
	wf, _, sf := run.CheckpointFiles(path)
	b, err := os.ReadFile(sf)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", sf, err)
	}
	st.fromInit()
	m, err := torch.LoadTensors(wf, r.Device)
	if err != nil {
		return st, err
	}
	defer torch.FreeAll(m)
	if err := loadNodeState(r.Pipeline, m); err != nil {
		return st, fmt.Errorf("%s: %w", wf, err)
	}
	if rng, ok := m[rngKey]; ok {
		if err := torch.SetDefaultGeneratorState(rng); err != nil {
			return st, err
		}
	}
	for _, n := range r.Pipeline.Nodes() {
		if g, ok := nodes.UnwrapNode(n).(interface{ SetGeneratorState(*torch.Tensor) error }); ok {
			if t, ok := m[trainerKeys+"gen_"+n.Name()]; ok {
				if err := g.SetGeneratorState(t); err != nil {
					return st, err
				}
			}
		}
	}
	return st, nil
}

// removeOrphanCheckpoints removes, on resume, the epoch checkpoints that the resumed state
// does not know: those a killed process wrote after the checkpoint resumed from (they are
// written again when their epochs are) and pruned ones whose removal a kill interrupted.
func (r *Run) removeOrphanCheckpoints(st TrainerState) {
	known := map[string]bool{}
	for _, b := range st.Best {
		known[filepath.Base(filepath.FromSlash(b.Prefix))] = true
	}
	dir := run.Path(r.Dir, run.CheckpointsDir)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if n := e.Name(); e.IsDir() && strings.HasPrefix(n, "epoch=") && !known[n] && filepath.Join(dir, n) != filepath.Clean(r.resume) {
			if err := run.Remove(dir, n); err == nil {
				r.Log.WithField("checkpoint", filepath.Join(dir, n)).Info("removed a checkpoint the resumed state does not keep")
			}
		}
	}
}
