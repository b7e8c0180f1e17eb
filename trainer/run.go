package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spectraclip/spectraclip/config"

	"github.com/schollz/progressbar/v3"
	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer/tboard"
)

// Options adjust how a run is prepared.
type Options struct {
	OutDir   string // run directory; "" = <output_dir>/<name>/<timestamp>
	Log      *logrus.Logger
	Progress io.Writer // where progress bars go (os.Stderr in the CLI); nil = none
	Resume   string    // a checkpoint (…/checkpoints/last) of the run in OutDir to resume from
	Registry *nodes.Registry
	// ResumeChanges are the config changes made on resume (see ResumeConfig); they are
	// recorded in the run's resume.json.
	ResumeChanges []config.ConfigChange
	// Dist is the process group of a data-parallel run (package dist); nil: one process.
	// Rank 0 alone writes the run directory; every rank trains its shard.
	Dist Collective
	// Data opens the run's data; nil opens data.root (see OpenRoot). A trainrun with
	// data.scene needs package scene's source (scene.Source, or scene.Lend for a scene
	// loaded already).
	Data DataSource
	// Placement is where the run computes, resolved by the caller (run.Place: flags, config,
	// data-parallel environment); nil = resolved from the config alone. Prepare applies it.
	Placement *run.Placement
}

// DataSource opens a trainrun's data: the dataset, and for a whole-scene run the pixel masks
// of its splits ("train", "val", "test"; nil otherwise).
type DataSource func(cfg *config.Config, log *logrus.Logger) (*dataset.Dataset, map[string][]bool, error)

// Evaluator evaluates a pipeline on a dataset: a trainrun's config, its data (with the pixel
// masks of a whole-scene run's splits), the pipeline on its device and, in a data-parallel
// run, the process group that pools the metrics. Reopen makes one for a finished run; a Run
// (a training in progress) holds one for its validation and test passes.
type Evaluator struct {
	Cfg      *config.Config
	Dir      string
	Device   torch.Device
	Data     *dataset.Dataset
	Pipeline *nodes.Pipeline
	Registry *nodes.Registry
	Log      *logrus.Logger
	progress io.Writer

	pixelMasks map[string][]bool // whole-scene runs: the pixels of each split (DataSource)

	dist Collective // nil: one process
}

// Run is a training in progress: the evaluation side (Evaluator) plus what only training
// has: TensorBoard, the history, the run directory's lock, what a fresh run created, the
// state resumed from, the checkpoints, the fit loops and Finish.
type Run struct {
	Evaluator
	TB      *tboard.Writer
	History []run.EpochRecord
	resume  string // the checkpoint resumed from (after any fallback)
	started time.Time

	lock        *run.Lock      // held from Prepare to Close
	made        *run.OutputDir // what a fresh run created (removed when it fails before its first complete checkpoint)
	resumeState *TrainerState  // the state of the checkpoint resumed from

	tbTemp string // ranks other than 0: their TensorBoard directory, removed at Close
}

// Prepare sets up threads, seeds, device, data and pipeline, and creates the run
// directory with the resolved config. The run directory's state, the data, the plugins and
// the pipeline are all checked before the directory is created or locked, so bad input
// leaves nothing behind (and a refused finished run is not touched); a failure after that
// but before the first write removes what this process created. The run directory is then
// locked for this process until Close. A fresh run refuses a directory that holds a
// complete checkpoint or a finished run, and starts again in one that does not (a run killed
// early). A resume loads its checkpoint (or, when that one is incomplete, the most recent
// complete one, saying so) before it writes anything, so a failed resume leaves the
// directory as it was.
func Prepare(cfg *config.Config, o Options) (r *Run, err error) {
	log := orQuiet(o.Log)
	pl := o.Placement
	if pl == nil {
		p, err := run.Place(cfg, run.Request{})
		if err != nil {
			return nil, err
		}
		pl = &p
	}
	if err := pl.Apply(); err != nil {
		return nil, err
	}
	if err := torch.SetDeterministic(cfg.Training.Trainer.Deterministic); err != nil {
		return nil, fmt.Errorf("training.trainer.deterministic: %w", err)
	}
	if err := torch.SetCachingAllocator(true); err != nil {
		return nil, err
	}
	if err := torch.ManualSeed(cfg.Training.Seed); err != nil {
		return nil, err
	}
	dev := pl.Device
	dir := o.OutDir
	if o.Resume != "" {
		if dir, err = run.ResumeDir(o.Resume, dir); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--resume %s: run directory %s does not exist", o.Resume, dir)
		}
	} else if dir == "" {
		dir = filepath.Join(cfg.OutputDir, cfg.Name, time.Now().Format("2006-01-02_15-04-05"))
	}
	// A data-parallel run: rank 0 owns the run directory (checks, lock, every write); the
	// other ranks use its directory name and only read (a checkpoint to resume from).
	follower := o.Dist != nil && o.Dist.Rank() != 0
	if o.Dist != nil && o.Dist.WorldSize() > 1 {
		if dir, err = agreeDir(o.Dist, dir); err != nil {
			return nil, err
		}
	}
	// Everything that can be checked without writing is checked before the run directory
	// is created or locked: its state, the data, the plugins and the pipeline. A run that
	// fails here leaves nothing behind (and does not touch a finished run's files).
	// A directory another process is writing is refused as such first: its contents are
	// in flux and say nothing about whether it can be resumed or restarted.
	if !follower {
		if err := run.Busy(dir); err != nil {
			return nil, err
		}
	}
	if o.Resume != "" {
		if _, _, err := run.ResolveResume(dir, o.Resume); err != nil {
			return nil, err
		}
	} else if !follower {
		if err := run.Refuse(dir); err != nil {
			return nil, err
		}
	}
	var p *nodes.Pipeline
	var made *run.OutputDir
	var lock *run.Lock
	locked := false // another process holds the run directory: it is theirs, nothing is undone
	defer func() {
		if err != nil {
			if p != nil {
				p.Close()
			}
			if !locked {
				made.Undo()
			}
			lock.Release()
		}
	}()
	if follower {
		// rank 0 opens the data first (it may generate the synthetic set)
		if err := o.Dist.Barrier(); err != nil {
			return nil, fmt.Errorf("waiting for rank 0 to open the data: %w", err)
		}
	}
	var ds *dataset.Dataset
	var masks map[string][]bool
	ds, masks, err = openData(cfg, o.Data, log)
	if err != nil {
		return nil, err
	}
	if o.Dist != nil && !follower && o.Dist.WorldSize() > 1 {
		if err := o.Dist.Barrier(); err != nil {
			return nil, fmt.Errorf("waiting for the other ranks: %w", err)
		}
	}
	reg := o.Registry
	if reg == nil {
		reg = nodes.NewRegistry()
	}
	if err := run.LoadPlugins(reg, cfg); err != nil {
		return nil, err
	}
	if p, err = run.BuildPipeline(cfg, reg, ds); err != nil {
		return nil, err
	}
	if err := p.To(dev); err != nil {
		return nil, err
	}
	if o.Resume == "" && !follower {
		if made, err = run.MakeRunDir(dir); err != nil {
			return nil, err
		}
	}
	if !follower {
		if lock, err = run.Acquire(dir); err != nil {
			locked = errors.Is(err, run.ErrLocked)
			return nil, err
		}
		if lock.Created() {
			made.Note(filepath.Join(dir, run.LockName))
		}
		did, err := run.CleanTemp(dir)
		if err != nil {
			return nil, fmt.Errorf("run directory %s: cleaning up after an interrupted run: %w", dir, err)
		}
		for _, d := range did {
			log.WithField("run", dir).Info(d)
		}
	}
	resume, note := "", ""
	if o.Resume != "" {
		if resume, note, err = run.ResolveResume(dir, o.Resume); err != nil {
			return nil, err
		}
	} else if follower {
		// rank 0 prepares the directory
	} else if err := run.Restartable(dir, log); err != nil {
		return nil, err
	} else {
		made.NoteRunFiles()
	}
	r = &Run{Evaluator: Evaluator{Cfg: cfg, Dir: dir, Device: dev, Data: ds, Pipeline: p, Registry: reg, Log: log, progress: o.Progress, pixelMasks: masks, dist: o.Dist},
		resume: resume, started: time.Now(), lock: lock, made: made}
	y, err := cfg.YAML()
	if err != nil {
		return nil, err
	}
	if resume != "" {
		st, err := r.loadCheckpoint(resume)
		if err != nil {
			return nil, fmt.Errorf("resume %s: %w", resume, err)
		}
		r.resumeState = &st
		r.History = st.History
		if err := r.checkWorldSize(st); err != nil {
			return nil, err
		}
		if note != "" {
			log.WithField("checkpoint", resume).Warn(note)
		}
		if follower {
			// nothing written by ranks other than 0
		} else if len(o.ResumeChanges) > 0 {
			if err := nodes.WriteFileAtomic(run.Path(dir, run.ConfigFile), y); err != nil {
				return nil, err
			}
		}
		if !follower {
			if err := run.RecordResume(dir, resume, note, st.Epoch, o.ResumeChanges); err != nil {
				return nil, err
			}
		}
	} else if !follower {
		if err := os.MkdirAll(run.Path(dir, run.CheckpointsDir), 0o755); err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
		if err := nodes.WriteFileAtomic(run.Path(dir, run.ConfigFile), y); err != nil {
			return nil, err
		}
	}
	tbDir := run.Path(dir, run.TBDir)
	if follower {
		if r.tbTemp, err = followerTB(); err != nil {
			return nil, err
		}
		tbDir = r.tbTemp
	}
	if r.TB, err = tboard.NewWriter(tbDir); err != nil {
		return nil, err
	}
	_ = r.TB.AddText("config", "```\n"+string(y)+"\n```", 0)
	log.WithFields(logrus.Fields{"run": dir, "device": dev.String(), "threads": torch.NumThreads(), "libtorch": torch.Version()}).Info("run prepared")
	if o.Dist != nil {
		// every rank is prepared (rank 0 has written the config) before any reads the data
		if err := o.Dist.Barrier(); err != nil {
			r.TB.Close()
			r.removeTBTemp()
			return nil, fmt.Errorf("waiting for the other ranks to prepare the run: %w", err)
		}
	}
	return r, nil
}

// discard removes the files of a fresh run that failed before its first complete
// checkpoint (it can only be started again); a run with a complete checkpoint stays, to be
// resumed.
func (r *Run) discard() {
	ck := run.Path(r.Dir, run.CheckpointsDir)
	if r.made == nil || len(run.Complete(ck)) > 0 || fileExists(filepath.Join(ck, "last.json")) {
		return
	}
	if r.TB != nil {
		r.TB.Close()
		r.TB = nil
	}
	r.made.Undo()
}

// Close releases the pipeline, flushes TensorBoard and releases the run directory.
func (r *Run) Close() {
	if r.TB != nil {
		r.TB.Close()
	}
	if r.Pipeline != nil {
		r.Pipeline.Close()
	}
	r.removeTBTemp()
	r.lock.Release()
	r.lock = nil
	trimCPUCache() // the pipeline's blocks: a process that goes on (compare) does not need them
}

// Close releases the pipeline.
func (e *Evaluator) Close() {
	if e.Pipeline != nil {
		e.Pipeline.Close()
	}
	trimCPUCache() // the pipeline's blocks: a process that goes on (compare) does not need them
}

func (r *Run) removeTBTemp() {
	if r.tbTemp != "" {
		_ = os.RemoveAll(r.tbTemp)
		r.tbTemp = ""
	}
}

// openData opens the run's data through src, or data.root when src is nil.
func openData(cfg *config.Config, src DataSource, log *logrus.Logger) (*dataset.Dataset, map[string][]bool, error) {
	if src != nil {
		return src(cfg, log)
	}
	if cfg.Data.Scene != nil {
		return nil, nil, fmt.Errorf("data.scene: this command cannot read scenes (it passes no scene source; package scene's Source reads them)")
	}
	ds, err := OpenRoot(cfg, log)
	return ds, nil, err
}

// OpenRoot opens data.root, generating the synthetic Lentils set there first only when
// data.generate_if_missing is on (the shipped synthetic root, or set explicitly).
func OpenRoot(cfg *config.Config, log *logrus.Logger) (*dataset.Dataset, error) {
	log = orQuiet(log)
	root := cfg.Data.Root
	if !cfg.Data.GenerateIfMissing {
		if _, err := os.Stat(filepath.Join(root, dataset.ManifestName)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("data.root %s: no dataset there (%s is missing); check the path, or set data.generate_if_missing=true to generate the synthetic Lentils set there", root, dataset.ManifestName)
		}
	}
	if cfg.Data.GenerateIfMissing {
		sc := dataset.DefaultSynthConfig()
		if err := config.DecodeSynth(cfg.Data.Synth, &sc); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(root, dataset.ManifestName)); err != nil {
			log.WithField("root", root).Info("data root missing: generating the synthetic Lentils set")
		}
		if err := dataset.EnsureSynthetic(root, sc); err != nil {
			return nil, fmt.Errorf("data.root %s: %w", root, err)
		}
	}
	var opts dataset.Options
	if len(cfg.Data.TrainIDs)+len(cfg.Data.ValIDs)+len(cfg.Data.TestIDs) > 0 {
		opts.Splits = &dataset.Splits{Train: cfg.Data.TrainIDs, Val: cfg.Data.ValIDs, Test: cfg.Data.TestIDs}
	}
	ds, err := dataset.OpenWith(root, opts)
	if err != nil {
		return nil, fmt.Errorf("data.root: %w", err)
	}
	return ds, nil
}

func (e *Evaluator) loader(split string, pad bool) (*dataset.Loader, error) {
	return e.Data.NewLoader(split, dataset.LoaderOptions{
		BatchSize: e.Cfg.Data.BatchSize,
		Seed:      e.Cfg.Training.Seed,
		InMemory:  e.Cfg.Data.InMemory,
		Prefetch:  e.Cfg.Data.Prefetch,
		Sampler:   e.sampler(pad),
	})
}

// forEachBatch runs fn on every batch of a split, each frame once (a data-parallel rank takes
// its unpadded shard): an evaluation pass, or the statistical fit's pass over the training
// split. See eachBatch.
func (e *Evaluator) forEachBatch(split string, epoch int, bar string, fn func(ctx *nodes.Context, batch map[string]any) error) error {
	return e.eachBatch(split, epoch, bar, false, fn)
}

// eachBatch runs fn on every batch of a split with a fresh scope per batch; pad: a
// data-parallel rank's shard is padded to the size of every other's (a training epoch). A
// pass is a phase for the caching allocator: it starts and ends trimmed (trimCPUCache).
func (e *Evaluator) eachBatch(split string, epoch int, bar string, pad bool, fn func(ctx *nodes.Context, batch map[string]any) error) error {
	trimCPUCache()
	defer trimCPUCache() // after the scope and the iterator are closed (deferred below)
	l, err := e.loader(split, pad)
	if err != nil {
		return err
	}
	it := l.Epoch(context.Background(), epoch)
	defer it.Close()
	pb := e.bar(l.Len(), bar)
	s := torch.NewScope()
	defer s.Close()
	for i := 0; ; i++ {
		b, err := it.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		s.Reset()
		batch, err := datanode.ToBatch(s, b, e.Device, nil)
		l.Release(b) // the cube is in the tensor now: the loader decodes a later batch into it
		if err != nil {
			return err
		}
		if m, ok := e.pixelMasks[split]; ok {
			if len(m) != b.B*b.H*b.W {
				return fmt.Errorf("%s split: pixel mask of %d values for a batch of %d×%d×%d pixels", split, len(m), b.B, b.H, b.W)
			}
			batch[datanode.KeyPixelMask] = m
		}
		ctx := &nodes.Context{Epoch: epoch, MaxEpochs: e.Cfg.Training.Trainer.MaxEpochs, BatchIdx: i, Scope: s, Device: e.Device}
		if err := fn(ctx, batch); err != nil {
			return err
		}
		if err := s.Err(); err != nil {
			return err
		}
		if pb != nil {
			pb.Add(1)
		}
	}
	if pb != nil {
		pb.Finish()
	}
	return nil
}

func (e *Evaluator) bar(n int, desc string) *progressbar.ProgressBar {
	if e.progress == nil || desc == "" || !e.Cfg.Training.Trainer.EnableProgressBar {
		return nil
	}
	if f, ok := e.progress.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return nil // plain log lines instead when not on a terminal
	}
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(e.progress), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(30))
}

// FitStatistics fits every node that needs a statistical pass, in topological order,
// streaming over the training split (the pipeline run up to each node).
func (r *Run) FitStatistics() error {
	for _, n := range r.Pipeline.Nodes() {
		f, ok := n.(nodes.Fitter)
		if !ok || !f.RequiresFit() {
			continue
		}
		t0 := time.Now()
		if err := f.FitReset(); err != nil {
			return fmt.Errorf("fit %s: %w", n.Name(), err)
		}
		err := r.forEachBatch("train", 0, "fit "+n.Name(), func(ctx *nodes.Context, batch map[string]any) error {
			ctx.Stage = nodes.StageInference
			var in map[string]any
			var err error
			ctx.Scope.NoGrad(func() { in, err = r.Pipeline.FitInputs(ctx, batch, n.Name()) })
			if err != nil {
				return err
			}
			return f.FitBatch(ctx, in)
		})
		if err != nil {
			return fmt.Errorf("fit %s: %w", n.Name(), err)
		}
		if err := r.fitAcrossRanks(n, f); err != nil {
			return err
		}
		if err := f.FitFinish(); err != nil {
			return fmt.Errorf("fit %s: %w", n.Name(), err)
		}
		r.Log.WithFields(logrus.Fields{"node": n.Name(), "seconds": time.Since(t0).Seconds()}).Info("statistical fit done")
	}
	return nil
}

// Evaluation is the pooled result of one pass over a split.
type Evaluation struct {
	Metrics config.Metrics // precision, recall, f1_score, iou, average_precision, auroc
	Loss    float64        // mean of the summed loss nodes (NaN when none ran)
	Acc     *metriccore.Accumulator
	Seconds float64 // wall time of the forward passes
	Frames  int
	Samples []Sample // the first few frames, for reports
}

// Sample keeps one frame's maps for reports and TensorBoard images.
type Sample struct {
	FrameID  int
	H, W     int
	Scores   []float32
	Target   []bool
	Decision []bool
	Reduced  []float32 // H×W×3
	Hsi      []float32 // H×W×3 false colour
}

// metricsSource is what Evaluate needs of a metrics node (nodes/metric.AnomalyMetrics).
type metricsSource interface {
	Reset()
	Count() int64
	Result() map[string]float64
	Take() *metriccore.Accumulator
}

// metricsNode returns the first node of metric_nodes that pools metrics, or "" and nil.
func (e *Evaluator) metricsNode() (string, metricsSource) {
	for _, name := range e.Cfg.MetricNodes {
		if n, ok := e.Pipeline.Node(name); ok {
			if m, ok := nodes.UnwrapNode(n).(metricsSource); ok {
				return name, m
			}
		}
	}
	return "", nil
}

// Evaluate runs the pipeline over a split in the given stage without gradients. The metrics
// are those of the configured metrics node (the first of metric_nodes), pooled over every
// pixel of the split (not a mean of batch means); without one, the evaluation ports are
// pooled with the same defaults (exact AUROC/AP on the raw scores).
func (e *Evaluator) Evaluate(split string, stage nodes.Stage, keep int) (*Evaluation, error) {
	e.Pipeline.SetTraining(false)
	for _, name := range e.Cfg.MetricNodes {
		if n, ok := e.Pipeline.Node(name); ok {
			if rs, ok := nodes.UnwrapNode(n).(interface{ Reset() }); ok {
				rs.Reset()
			}
		}
	}
	mname, mnode := e.metricsNode()
	ev := &Evaluation{Loss: math.NaN()}
	var own *metriccore.Accumulator
	if mnode == nil {
		var err error
		own, err = metriccore.NewAccumulatorOptions(metriccore.Options{Mapping: metriccore.MapAdaptive, ExactLimit: metriccore.DefaultExactLimit})
		if err != nil {
			return nil, err
		}
	}
	var lossSum float64
	var lossN int
	var scores, reduced []float32
	var targets, decisions []bool
	err := e.forEachBatch(split, 0, split, func(ctx *nodes.Context, batch map[string]any) error {
		ctx.Stage = stage
		s := ctx.Scope
		s.SetGradEnabled(false)
		t0 := time.Now()
		out, err := e.Pipeline.Run(ctx, batch, nodes.RunOptions{})
		if err != nil {
			return err
		}
		if err := torch.Synchronize(e.Device); err != nil {
			return err
		}
		ev.Seconds += time.Since(t0).Seconds()
		sh := batch[datanode.KeyShape].([4]int)
		ev.Frames += sh[0]
		if l, ok := out.SumLosses(s, e.Cfg.LossNodes); ok {
			v, err := l.Item()
			if err != nil {
				return err
			}
			lossSum += v
			lossN++
		}
		if own == nil && len(ev.Samples) >= keep {
			return nil // the metrics node pooled this batch; no maps to keep
		}
		sn, sp := config.PortRef(e.Cfg.Evaluation.Scores)
		st, err := out.Tensor(sn, sp)
		if err != nil {
			return fmt.Errorf("evaluation.scores: %w", err)
		}
		tn, tp := config.PortRef(e.Cfg.Evaluation.Targets)
		tt, err := out.Tensor(tn, tp)
		if err != nil {
			return fmt.Errorf("evaluation.targets: %w", err)
		}
		n := int(st.Numel())
		scores, targets = grow(scores, n), growB(targets, n)
		if err := torch.CopyTo(st, scores); err != nil {
			return err
		}
		if err := torch.CopyTo(tt, targets); err != nil {
			return err
		}
		var dec []bool
		if e.Cfg.Evaluation.Decisions != "" {
			dn, dp := config.PortRef(e.Cfg.Evaluation.Decisions)
			dt, err := out.Tensor(dn, dp)
			if err != nil {
				return fmt.Errorf("evaluation.decisions: %w", err)
			}
			decisions = growB(decisions, n)
			if err := torch.CopyTo(dt, decisions); err != nil {
				return err
			}
			dec = decisions
		}
		if own != nil {
			if err := own.Add(scores, targets, dec); err != nil {
				return err
			}
		}
		if len(ev.Samples) < keep {
			var red []float32
			if e.Cfg.Evaluation.Reduced != "" {
				rn, rp := config.PortRef(e.Cfg.Evaluation.Reduced)
				if rt, err := out.Tensor(rn, rp); err == nil {
					reduced = grow(reduced, int(rt.Numel()))
					if err := torch.CopyTo(rt, reduced); err == nil {
						red = reduced
					}
				}
			}
			cube := batch[datanode.KeyCube].(*torch.Tensor)
			hsi, _ := falseColour(s, cube, sh)
			ids := batch[datanode.KeyFrameIDs].([]int)
			hw := sh[1] * sh[2]
			for b := 0; b < sh[0] && len(ev.Samples) < keep; b++ {
				smp := Sample{FrameID: ids[b], H: sh[1], W: sh[2],
					Scores: append([]float32(nil), scores[b*hw:(b+1)*hw]...),
					Target: append([]bool(nil), targets[b*hw:(b+1)*hw]...)}
				if dec != nil {
					smp.Decision = append([]bool(nil), dec[b*hw:(b+1)*hw]...)
				}
				if red != nil && len(red) == sh[0]*hw*3 {
					smp.Reduced = append([]float32(nil), red[b*hw*3:(b+1)*hw*3]...)
				}
				if hsi != nil {
					smp.Hsi = append([]float32(nil), hsi[b*hw*3:(b+1)*hw*3]...)
				}
				ev.Samples = append(ev.Samples, smp)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if e.dist != nil {
		if err := e.poolEvaluate(ev, mname, mnode, own, stage, &lossSum, &lossN); err != nil {
			return nil, fmt.Errorf("%s: pooling across ranks: %w", split, err)
		}
	} else if mnode != nil {
		if mnode.Count() == 0 && ev.Frames > 0 {
			return nil, fmt.Errorf("metrics node %q pooled no pixels in the %s stage (is it connected and does it run in %s?)", mname, stage, stage)
		}
		ev.Metrics = mnode.Result()
		ev.Acc = mnode.Take()
	} else {
		ev.Acc = own
		ev.Metrics = own.Result().Map()
	}
	if lossN > 0 {
		ev.Loss = lossSum / float64(lossN)
	}
	if res := ev.Acc.Result(); !res.Exact {
		e.Log.WithFields(logrus.Fields{"split": split, "auroc_max_error": res.AUROCMaxError, "average_precision_max_error": res.APMaxError}).
			Warn("AUROC and AP come from the histogram fallback (more pixels than exact_max_pixels): approximate within the stated bounds")
	}
	return ev, nil
}

// trimCPUCache hands the caching CPU allocator's free blocks back between phases (a
// statistical fit, a training pass, an evaluation pass): a phase's blocks are reused only at
// their exact sizes, which the next phase rarely asks for, so every block kept adds to the
// next phase's peak (a whole scene's fit, training step and evaluation leave about a cube's
// worth each). Within a pass, batch after batch, the blocks are reused as before. The Go
// heap's garbage (a whole scene's maps and images, a checkpoint) is collected and returned
// too.
func trimCPUCache() {
	_, _ = torch.TrimCPUCache()
	debug.FreeOSMemory()
}

// falseColour picks three bands spread over the spectrum (the reference visualiser's
// 0/20/40 for 61 bands) and min-max scales each image jointly.
func falseColour(s *torch.Scope, cube *torch.Tensor, sh [4]int) ([]float32, error) {
	c := int64(sh[3])
	idx := s.FromInt64([]int64{min(0, c-1), min(20, c-1), min(40, c-1)}, 3)
	x := s.IndexSelect(cube, 3, idx)
	// per-image joint min-max: seen as [B, HW·3, 1, 1], "per image and channel" is per image
	z := s.MinMaxNormalize(s.Reshape(x, int64(sh[0]), int64(sh[1]*sh[2]*3), 1, 1), torch.MinMaxOptions{PerImage: true})
	if err := s.Err(); err != nil {
		s.ClearErr()
		return nil, err
	}
	out := make([]float32, sh[0]*sh[1]*sh[2]*3)
	if err := torch.CopyTo(z, out); err != nil {
		return nil, err
	}
	return out, nil
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func growB(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	return b[:n]
}
