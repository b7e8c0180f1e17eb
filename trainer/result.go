package trainer

import (
	"encoding/json"
	"fmt"
	"image"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/spectraclip/spectraclip/config"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/report"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// Train runs a whole trainrun: statistical fit, gradient epochs, evaluation of the best
// checkpoint on val and test, metrics.json, the saved pipeline and the report.
// A fresh run that fails before its first complete checkpoint removes what it created.
func Train(cfg *config.Config, o Options) (res *run.Result, err error) {
	r, err := Prepare(cfg, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.discard()
		}
		r.Close()
	}()
	t0 := time.Now()
	if r.resume == "" {
		if err := r.FitStatistics(); err != nil {
			return nil, err
		}
	}
	if err := r.TrainGradient(); err != nil {
		return nil, err
	}
	trainSec := time.Since(t0).Seconds()
	return r.Finish(trainSec)
}

// Finish restores the best checkpoint (if any), evaluates val and test, and writes
// metrics.json, pipeline.yaml (+ weights) and report.md.
func (r *Run) Finish(trainSec float64) (*run.Result, error) {
	res := &run.Result{Name: r.Cfg.Name, Variant: r.Cfg.Variant, TrainSeconds: trainSec,
		Device: r.Device.String(), Threads: torch.NumThreads(), LibTorch: torch.Version(), Seed: r.Cfg.Training.Seed,
		History: r.History, Dir: r.Dir}
	for _, h := range r.History {
		if h.Epoch > 0 {
			res.Epochs++
		}
	}
	res.Trained = res.Epochs > 0
	// data-parallel: rank 0 has committed its last checkpoint before any rank reads the best
	if err := r.barrier(); err != nil {
		return nil, fmt.Errorf("waiting for the other ranks: %w", err)
	}
	if best, info := r.bestCheckpoint(); best != "" {
		m, err := torch.LoadTensors(filepath.Join(best, run.CkptWeights), r.Device)
		if err != nil {
			return nil, err
		}
		err = loadNodeState(r.Pipeline, m)
		torch.FreeAll(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", best, err)
		}
		if rel, err := filepath.Rel(r.Dir, best); err == nil {
			res.Checkpoint = filepath.ToSlash(rel)
		} else {
			res.Checkpoint = best
		}
		ep := info.Epoch
		res.CheckpointEpoch = &ep
		f := logrus.Fields{"checkpoint": best, "epoch": info.Epoch, "monitor": r.Cfg.Training.Callbacks.Checkpoint.Monitor, "value": info.Value}
		if info.Epoch == 0 {
			f["initialisation"] = true // no training epoch did better on validation
		}
		r.Log.WithFields(f).Info("evaluating the best checkpoint")
	} else {
		r.Log.WithField("run", r.Dir).Info(info.Why)
	}
	if err := r.syncState("evaluation"); err != nil {
		return nil, err
	}
	res.Detector = run.DetectorName(r.Pipeline)
	val, err := r.Evaluate("val", nodes.StageVal, 4)
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	test, err := r.Evaluate("test", nodes.StageTest, 8)
	if err != nil {
		return nil, fmt.Errorf("test: %w", err)
	}
	res.Val, res.Test = val.Metrics, test.Metrics
	if test.Seconds > 0 {
		res.InferenceFPS = float64(test.Frames) / test.Seconds
	}
	res.SelectedBands = r.selectedBands()
	testStep := int64(0) // one past the last epoch's step
	if n := len(r.History); n > 0 {
		testStep = int64(r.History[n-1].Epoch + 1)
	}
	for _, k := range slices.Sorted(maps.Keys(res.Test)) {
		_ = r.TB.AddScalar("test/"+k, res.Test[k], testStep)
	}
	if !r.leader() {
		return res, nil // rank 0 writes the results
	}
	if err := run.WriteResult(r.Dir, res); err != nil {
		return nil, err
	}
	if err := r.Pipeline.Save(run.Path(r.Dir, run.PipelineFile)); err != nil {
		return nil, fmt.Errorf("save pipeline: %w", err)
	}
	if err := r.writeReport(res, test); err != nil {
		r.Log.WithError(err).Warn("report incomplete")
	}
	f := logrus.Fields{"run": r.Dir, "fps": math.Round(res.InferenceFPS*10) / 10}
	for _, k := range []string{"iou", "f1_score", "average_precision", "auroc"} {
		f["test_"+k] = round4(res.Test[k])
	}
	r.Log.WithFields(f).Info("finished")
	return res, nil
}

// bestInfo describes the checkpoint Finish evaluates, or why there is none.
type bestInfo struct {
	Epoch int
	Value float64
	Why   string
}

// bestCheckpoint finds the best complete top-k checkpoint of this run from the records the
// top-k checkpoints carry themselves (state.json "self"), by the checkpoint monitor's mode;
// ties go to the earlier epoch, as in the ranking kept while training. Checkpoints of epochs
// after the last one trained are ignored. With none, Why says which weights are evaluated.
func (r *Run) bestCheckpoint() (string, bestInfo) {
	lastEpoch := -1
	if n := len(r.History); n > 0 {
		lastEpoch = r.History[n-1].Epoch
	}
	current := "the weights after the statistical fit (no gradient epochs)"
	if lastEpoch > 0 {
		current = fmt.Sprintf("the weights of the last trained epoch (%d)", lastEpoch)
	} else if lastEpoch == 0 {
		current = "the initialised weights (epoch 0, no training epoch completed)"
	}
	cc := r.Cfg.Training.Callbacks.Checkpoint
	if lastEpoch < 0 {
		return "", bestInfo{Why: "no best checkpoint: evaluating " + current}
	}
	if !cc.Enabled || cc.SaveTopK == 0 {
		return "", bestInfo{Why: "no top-k checkpoints (callbacks.checkpoint disabled or save_top_k: 0): evaluating " + current}
	}
	var cands []CheckpointInfo
	dirs := map[string]string{}
	for _, c := range run.Complete(run.Path(r.Dir, run.CheckpointsDir)) {
		if c.Manifest.Epoch > lastEpoch || filepath.Base(c.Dir) == run.LastCheckpoint {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.Dir, run.CkptState))
		if err != nil {
			continue
		}
		var st TrainerState
		if json.Unmarshal(b, &st) != nil || st.Self == nil || math.IsNaN(st.Self.Value) {
			continue
		}
		st.fromInit()
		cands = append(cands, *st.Self)
		dirs[st.Self.Prefix] = c.Dir
	}
	if len(cands) == 0 {
		return "", bestInfo{Why: "no complete top-k checkpoint found in " + run.Path(r.Dir, run.CheckpointsDir) + ": evaluating " + current}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Epoch < cands[j].Epoch })
	sortBest(cands, cc.Mode)
	return dirs[cands[0].Prefix], bestInfo{Epoch: cands[0].Epoch, Value: cands[0].Value}
}

func (r *Run) selectedBands() []run.BandInfo {
	for _, n := range r.Pipeline.Nodes() {
		if sb, ok := nodes.UnwrapNode(n).(interface {
			SelectedBands([]float32) ([]int, []float32, error)
		}); ok {
			idx, wl, err := sb.SelectedBands(r.Data.Wavelengths)
			if err != nil {
				return nil
			}
			out := make([]run.BandInfo, len(idx))
			for i := range idx {
				out[i] = run.BandInfo{Channel: i, Band: idx[i], Wavelength: wl[i]}
			}
			return out
		}
	}
	return nil
}

func (r *Run) writeReport(res *run.Result, test *Evaluation) error {
	dir := r.Dir
	rep := report.Report{Title: "spectraclip run " + res.Name}
	rep.Summary = []report.KV{{Key: "variant", Value: res.Variant}, {Key: "detector", Value: res.Detector},
		{Key: "device", Value: res.Device}, {Key: "threads", Value: fmt.Sprint(res.Threads)}, {Key: "LibTorch", Value: res.LibTorch},
		{Key: "epochs", Value: fmt.Sprint(res.Epochs)}, {Key: "train seconds", Value: fmt.Sprintf("%.1f", res.TrainSeconds)},
		{Key: "inference FPS (test split)", Value: fmt.Sprintf("%.2f", res.InferenceFPS)}}
	if res.Checkpoint != "" {
		rep.Summary = append(rep.Summary, report.KV{Key: "checkpoint", Value: res.Checkpoint})
	}
	if res.CheckpointEpoch != nil && *res.CheckpointEpoch == 0 {
		rep.Notes = append(rep.Notes, "The evaluated checkpoint is epoch 0, the initialisation: no training epoch did better on validation.")
	}
	cols := []string{"iou", "precision", "recall", "f1_score", "average_precision", "auroc"}
	tab := report.Table{Title: "Metrics (pooled over all pixels of the split)", RowHeader: "split", Columns: cols}
	for _, row := range []struct {
		n string
		m map[string]float64
	}{{"val", res.Val}, {"test", res.Test}} {
		vals := make([]float64, len(cols))
		for i, c := range cols {
			vals[i] = row.m[c]
		}
		tab.Rows = append(tab.Rows, report.Row{Name: row.n, Values: vals})
	}
	rep.Tables = append(rep.Tables, tab)
	if len(res.SelectedBands) > 0 {
		s := "Selected bands:"
		for _, b := range res.SelectedBands {
			s += fmt.Sprintf(" %d (%.0f nm)", b.Band, b.Wavelength)
		}
		rep.Notes = append(rep.Notes, s)
	}
	var errs []error
	add := func(caption, name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		rep.Images = append(rep.Images, report.ImageLink{Caption: caption, Path: name})
	}
	if len(r.History) > 0 {
		loss := map[string][]report.XY{}
		iou := map[string][]report.XY{}
		lr := map[string][]report.XY{}
		for _, h := range r.History {
			x := float64(h.Epoch) // 0: the initialisation (validation only)
			if !math.IsNaN(float64(h.TrainLoss)) {
				loss["train"] = append(loss["train"], report.XY{X: x, Y: float64(h.TrainLoss)})
			}
			if !math.IsNaN(float64(h.ValLoss)) {
				loss["val"] = append(loss["val"], report.XY{X: x, Y: float64(h.ValLoss)})
			}
			iou["val iou"] = append(iou["val iou"], report.XY{X: x, Y: h.Val["iou"]})
			iou["val AP"] = append(iou["val AP"], report.XY{X: x, Y: h.Val["average_precision"]})
			lr["lr"] = append(lr["lr"], report.XY{X: x, Y: h.LR})
		}
		add("Loss", "loss.png", report.LinePlot(filepath.Join(dir, "loss.png"), "Loss", "epoch", "loss", loss))
		add("Validation IoU and AP", "iou.png", report.LinePlot(filepath.Join(dir, "iou.png"), "Validation metrics", "epoch", "value", iou))
		add("Learning rate", "lr.png", report.LinePlot(filepath.Join(dir, "lr.png"), "Learning rate", "epoch", "lr", lr))
	}
	fpr, tpr := test.Acc.ROCCurve()
	add("ROC (test)", "roc.png", report.ROCPlot(filepath.Join(dir, "roc.png"), map[string]report.Curve{res.Variant: {X: fpr, Y: tpr, Area: res.Test["auroc"]}}))
	rec, prec := test.Acc.PRCurve()
	add("Precision-recall (test)", "pr.png", report.PRPlot(filepath.Join(dir, "pr.png"), map[string]report.Curve{res.Variant: {X: rec, Y: prec, Area: res.Test["average_precision"]}}))
	if means, err := ClassMeans(r.Data, 4); err == nil {
		wl := make([]float64, len(r.Data.Wavelengths))
		for i, w := range r.Data.Wavelengths {
			wl[i] = float64(w)
		}
		var sel []float64
		for _, b := range res.SelectedBands {
			sel = append(sel, float64(b.Wavelength))
		}
		add("Mean spectra per class (selected bands marked)", "bands.png", report.BandPlot(filepath.Join(dir, "bands.png"), wl, means, sel))
	}
	var tiles []image.Image
	var labels []string
	for _, smp := range test.Samples {
		if hm, err := report.Heatmap(smp.Scores, smp.H, smp.W); err == nil {
			tiles = append(tiles, hm)
			labels = append(labels, fmt.Sprintf("frame %d scores", smp.FrameID))
		}
		if smp.Decision != nil {
			if ci, err := report.ConfusionImage(smp.Decision, smp.Target, smp.H, smp.W); err == nil {
				tiles = append(tiles, ci)
				labels = append(labels, fmt.Sprintf("frame %d TP/FP/FN", smp.FrameID))
			}
		}
	}
	if len(tiles) > 0 {
		add("Example anomaly maps (test) and decisions: TP green, FP red, FN yellow", "maps.png", report.ImageGrid(filepath.Join(dir, "maps.png"), tiles, 4, labels))
	}
	if err := report.WriteMarkdown(run.Path(dir, run.ReportFile), rep); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
