// Package bench is `spectraclip bench`: frames per second per variant, stage by stage, the
// detector alone and training steps per second, on random cubes already in memory, each
// variant in a process of its own so that its peak RSS is its own.
package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/nodes/detect"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// Options configure Bench.
type Options struct {
	Variants []string
	Detector string // TorchScript detector file ("" = the built-in one), or a compiled package (*.pt2) alone
	// Compiled is the detector as an AOTInductor package (.pt2): it scores (runtime aoti)
	// while training steps keep the TorchScript detector.
	Compiled   string
	Device     string
	Batch      int
	H, W       int
	Threads    int
	Iters      int
	Warmup     int
	TrainIters int
	Half       bool
	AllowTF32  *bool // nil: LibTorch's defaults
	// Isolate runs each variant in a child process of the running executable, so that
	// each variant starts from a fresh process and its peak RSS (VmHWM) is its own.
	// Without it the variants share this process and its caching allocator. The running
	// executable must call ChildMain first thing in main (or TestMain): that is where a
	// child does its work.
	Isolate bool
	// Flags name the bounded options in errors: the flags of the command that set them
	// (loadtest's --bench-threads, ...). Empty names are bench's own flags.
	Flags FlagNames `json:",omitzero"`
}

// FlagNames are the flags that set Options' bounded fields, as errors name them.
type FlagNames struct {
	Threads, Batch, Size, Iters, Warmup, TrainIters string
}

// withDefaults fills the names left empty with bench's own flags.
func (n FlagNames) withDefaults() FlagNames {
	for _, f := range []struct {
		name *string
		def  string
	}{{&n.Threads, "--threads"}, {&n.Batch, "--batch"}, {&n.Size, "--size"}, {&n.Iters, "--iters"}, {&n.Warmup, "--warmup"}, {&n.TrainIters, "--train-iters"}} {
		if *f.name == "" {
			*f.name = f.def
		}
	}
	return n
}

// Variant holds one variant's figures; stage times are seconds per batch.
type Variant struct {
	Variant string `json:"variant"`
	// Runtime is what ran the detector's forward passes ("torchscript" or "aoti").
	Runtime string  `json:"detector_runtime"`
	FPS     float64 `json:"fps"`
	// DetectorFPS is the detector node alone (pre-processing, module, post-processing) on
	// the reducer's output, timed in the same loop as FPS, alternating with it.
	DetectorFPS float64 `json:"detector_fps"`
	// CPUmsPerFrame is the process's CPU time (user + system, all threads) per frame over
	// the same timed pipeline iterations as FPS: what a frame costs in CPU, where FPS is
	// what it costs in wall time (intra-op threads that wait for work count too).
	CPUmsPerFrame    float64            `json:"cpu_ms_per_frame"`
	TrainStepsPerSec float64            `json:"train_steps_per_s"`
	Stages           map[string]float64 `json:"stages"`
	AroundDetector   float64            `json:"around_detector_s"`
	FusedNormalizer  bool               `json:"fused_normalizer"`
	CopyBytesPerSec  float64            `json:"cube_copy_bytes_per_s"`
	RSSStartMB       float64            `json:"rss_start_mb"`
	RSSEndMB         float64            `json:"rss_end_mb"`
	// PeakRSSMB is the variant's own peak resident set (its child process's VmHWM; in
	// one process, the high-water mark since the variant started).
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// Report is what `spectraclip bench --json` prints.
type Report struct {
	Variants []Variant `json:"variants"`
	Threads  int       `json:"threads"`
	Device   string    `json:"device"`
	LibTorch string    `json:"libtorch"`
	Batch    int       `json:"batch"`
	Size     string    `json:"size"`
	Bands    int       `json:"bands"`
	Detector string    `json:"detector"`
	// Runtime is what ran the detector's forward passes: "torchscript" or "aoti".
	Runtime string `json:"detector_runtime"`
	// BLAS is the BLAS library LibTorch's CPU matrix products ran on (torch.BLAS's kind).
	BLAS      string  `json:"blas"`
	PeakRSSMB float64 `json:"peak_rss_mb"` // the largest variant's
	Isolated  bool    `json:"isolated"`    // each variant ran in its own process
	CUDAPeak  int64   `json:"cuda_peak_bytes,omitempty"`
	// TF32Matmul and TF32Conv say whether CUDA float32 matmuls and convolutions were
	// allowed to use TF32 (LibTorch's defaults unless --allow-tf32 was given).
	TF32Matmul bool `json:"tf32_matmul"`
	TF32Conv   bool `json:"tf32_conv"`
}

// MaxSide is the largest frame side bench takes (--size): a 1024×4096×4096×61 float32 batch
// would already be far beyond memory; see also config.MaxBatchSize.
const MaxSide = 4096

// MaxIters bounds --iters, --warmup and --train-iters.
const MaxIters = 10000

// ParseSize reads "HxW".
func ParseSize(s string) (int, int, error) {
	a, b, ok := strings.Cut(strings.ToLower(s), "x")
	h, err1 := strconv.Atoi(a)
	w, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || h < 1 || w < 1 || h > MaxSide || w > MaxSide {
		return 0, 0, fmt.Errorf("--size %q: want HxW with sides 1..%d, e.g. 256x256", s, MaxSide)
	}
	return h, w, nil
}

var reducerNodes = map[string][]string{
	"pca":      {"pca", "pca_output_normalizer"},
	"drcnn":    {"channel_mixer"},
	"concrete": {"concrete_selector"},
}

// Run measures inference FPS per variant stage by stage, the detector alone, and
// training steps per second, on random cubes of the given size.
//
// Bounds: Threads 0..config.MaxThreads(), Batch up to config.MaxBatchSize (1024), sides up to
// MaxSide (4096), Iters, Warmup and TrainIters up to MaxIters (10000).
func Run(o Options) (*Report, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Batch < 1 {
		o.Batch = 4
	}
	if o.H == 0 {
		o.H, o.W = 256, 256
	}
	if o.Iters < 1 {
		o.Iters = 5
	}
	if o.TrainIters < 0 {
		o.TrainIters = 0
	}
	if len(o.Variants) == 0 {
		o.Variants = config.VariantNames
	}
	pl, err := run.Place(nil, run.Request{Device: o.Device, DeviceFrom: "--device", Threads: o.Threads, ThreadsFrom: "--threads", TF32: o.AllowTF32})
	if err != nil {
		return nil, err
	}
	if err := pl.Apply(); err != nil {
		return nil, err
	}
	if err := torch.SetCachingAllocator(true); err != nil {
		return nil, err
	}
	dev := pl.Device
	rep := &Report{Threads: torch.NumThreads(), Device: dev.String(), LibTorch: torch.Version(), Batch: o.Batch,
		Size: fmt.Sprintf("%dx%d", o.H, o.W), Bands: 61, Detector: o.Detector, BLAS: torch.BLAS().Kind}
	if rep.Detector == "" {
		rep.Detector = "builtin"
	}
	if o.Compiled != "" {
		rep.Detector += " + " + o.Compiled
	}
	if rep.TF32Matmul, rep.TF32Conv, err = torch.AllowTF32(); err != nil {
		return nil, err
	}
	rep.Isolated = o.Isolate
	for _, v := range o.Variants {
		var bv *Variant
		if o.Isolate {
			var cudaPeak int64
			bv, cudaPeak, err = runChild(v, o)
			rep.CUDAPeak = max(rep.CUDAPeak, cudaPeak)
		} else {
			// the high-water mark restarts at the current RSS (what earlier variants left
			// cached counts in it: only a child process gives a variant a clean start)
			resetPeakRSS()
			bv, err = benchVariant(v, o, dev)
			if bv != nil {
				bv.PeakRSSMB = procstat.MB("VmHWM:")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", v, err)
		}
		rep.Variants = append(rep.Variants, *bv)
		rep.PeakRSSMB = max(rep.PeakRSSMB, bv.PeakRSSMB)
		rep.Runtime = bv.Runtime
	}
	if !o.Isolate && dev.Type == torch.DeviceCUDA {
		_, _, rep.CUDAPeak, _ = torch.CUDAMemory(dev)
	}
	return rep, nil
}

// Check refuses options beyond Run's bounds, each error naming its flag (o.Flags).
func (o Options) Check() error {
	n := o.Flags.withDefaults()
	if err := config.CheckThreads(n.Threads, o.Threads); err != nil {
		return err
	}
	if o.Batch > config.MaxBatchSize {
		return fmt.Errorf("%s %d: over the maximum of %d", n.Batch, o.Batch, config.MaxBatchSize)
	}
	if o.H > MaxSide || o.W > MaxSide {
		return fmt.Errorf("%s %dx%d: sides must be 1..%d", n.Size, o.H, o.W, MaxSide)
	}
	for _, it := range []struct {
		flag string
		n    int
	}{{n.Iters, o.Iters}, {n.Warmup, o.Warmup}, {n.TrainIters, o.TrainIters}} {
		if it.n > MaxIters {
			return fmt.Errorf("%s %d: over the maximum of %d", it.flag, it.n, MaxIters)
		}
	}
	return nil
}

// benchEnv is one variant's pipeline with a random batch, ready to time: what both
// `spectraclip bench` and the Go benchmarks run.
type benchEnv struct {
	cfg       *config.Config
	p         *nodes.Pipeline
	dev       torch.Device
	batch     map[string]any
	cube      []float32 // nil once cubeT holds it
	cubeBytes int64
	copyBPS   float64 // plain copy of the cube's bytes, bytes per second
	cubeT     *torch.Tensor
	keep, s   *torch.Scope
	opt       *torch.Optimizer
	B, H, W   int
	C         int
	variant   string
}

func newBenchEnv(variant string, o Options, dev torch.Device) (*benchEnv, error) {
	ov := []string{"training.device=" + dev.String(), "data.batch_size=" + strconv.Itoa(o.Batch)}
	if o.Detector != "" {
		ov = append(ov, "pipeline.detector.detector_path="+o.Detector)
		if detect.IsCompiledFile(o.Detector) {
			// a package alone is forward only: no training steps through it
			ov = append(ov, "pipeline.detector.enable_gradients=false")
		}
	}
	if o.Compiled != "" {
		ov = append(ov, "pipeline.detector.compiled_path="+o.Compiled, "pipeline.detector.runtime=aoti")
	}
	if o.Half {
		ov = append(ov, "pipeline.detector.use_half_precision=true")
	}
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: variant, Overrides: ov})
	if err != nil {
		return nil, err
	}
	p, err := run.BuildPipeline(cfg, nodes.NewRegistry(), nil)
	if err != nil {
		return nil, err
	}
	e := &benchEnv{cfg: cfg, p: p, dev: dev, B: o.Batch, H: o.H, W: o.W, C: 61, variant: variant, keep: torch.NewScope(), s: torch.NewScope()}
	if err := p.To(dev); err != nil {
		e.close()
		return nil, err
	}
	B, H, W, C := e.B, e.H, e.W, e.C
	rng := rand.New(rand.NewPCG(1, 2))
	e.cube = make([]float32, B*H*W*C)
	for i := range e.cube {
		e.cube[i] = rng.Float32()
	}
	ids := make([]int32, B*H*W)
	for i := range ids {
		if rng.Float64() < 0.02 {
			ids[i] = 3
		} else {
			ids[i] = 1
		}
	}
	// a plain copy of the cube's bytes, the yardstick for the stages around the detector,
	// measured before the pipeline's memory grows; then the Go copies are given back, so
	// that a variant's peak RSS is the pipeline's (the cube lives on in cubeT)
	dst := make([]float32, len(e.cube))
	copy(dst, e.cube) // fault the pages in first: the yardstick is the copy, not the allocation
	t1 := time.Now()
	for i := 0; i < 3; i++ {
		copy(dst, e.cube)
	}
	e.copyBPS = float64(3*len(e.cube)*4) / time.Since(t1).Seconds()
	e.cubeT = torch.FromSlice(e.keep, dev, e.cube, int64(B), int64(H), int64(W), int64(C))
	e.cubeBytes = int64(len(e.cube) * 4)
	dst, e.cube = nil, nil
	debug.FreeOSMemory()
	if err := e.keep.Err(); err != nil {
		e.close()
		return nil, err
	}
	e.batch = map[string]any{datanode.KeyCube: e.cubeT, datanode.KeyClassIDs: ids, datanode.KeyWavelengths: []float32(nil),
		datanode.KeyFrameIDs: make([]int, B), datanode.KeyShape: [4]int{B, H, W, C}}
	if err := e.fit(); err != nil {
		e.close()
		return nil, err
	}
	// the fit's float64 temporaries stay cached at sizes inference never asks for
	if _, err := torch.TrimCPUCache(); err != nil {
		e.close()
		return nil, err
	}
	e.p.SetTraining(false)
	return e, nil
}

func (e *benchEnv) close() {
	e.opt.Free()
	e.s.Close()
	e.keep.Close()
	e.p.Close()
}

// fit runs the statistical fit of every node that needs one on the random batch.
func (e *benchEnv) fit() error {
	s := e.s
	for _, n := range e.p.Nodes() {
		f, ok := n.(nodes.Fitter)
		if !ok || !f.RequiresFit() {
			continue
		}
		s.Reset()
		ctx := &nodes.Context{Stage: nodes.StageInference, Scope: s, Device: e.dev}
		s.SetGradEnabled(false)
		if err := f.FitReset(); err != nil {
			return err
		}
		in, err := e.p.FitInputs(ctx, e.batch, n.Name())
		if err != nil {
			return err
		}
		if err := f.FitBatch(ctx, in); err != nil {
			return err
		}
		if err := f.FitFinish(); err != nil {
			return err
		}
	}
	return nil
}

// infer runs the whole pipeline once in the inference stage.
func (e *benchEnv) infer() error {
	e.s.Reset()
	e.s.SetGradEnabled(false)
	ctx := &nodes.Context{Stage: nodes.StageInference, Scope: e.s, Device: e.dev}
	_, err := e.p.Run(ctx, e.batch, nodes.RunOptions{})
	return err
}

// trainStep runs one optimisation step (forward, losses, backward, AdamW).
func (e *benchEnv) trainStep() error {
	if len(e.cfg.LossNodes) == 0 {
		return fmt.Errorf("variant %s has no loss nodes", e.variant)
	}
	if e.opt == nil {
		params := e.p.Parameters()
		ts := make([]*torch.Tensor, len(params))
		for i, pr := range params {
			ts[i] = pr.Tensor
		}
		opt, err := torch.NewOptimizer(torch.AdamW, ts, torch.OptimConfig{LR: 1e-3})
		if err != nil {
			return err
		}
		e.opt = opt
	}
	e.p.SetTraining(true)
	defer e.p.SetTraining(false)
	s := e.s
	s.Reset()
	s.SetGradEnabled(true)
	ctx := &nodes.Context{Stage: nodes.StageTrain, Scope: s, Device: e.dev, MaxEpochs: 8}
	out, err := e.p.Run(ctx, e.batch, nodes.RunOptions{})
	if err != nil {
		return err
	}
	loss, ok := out.SumLosses(s, e.cfg.LossNodes)
	if !ok {
		return fmt.Errorf("variant %s: no loss in the train stage", e.variant)
	}
	if err := e.opt.ZeroGrad(); err != nil {
		return err
	}
	s.Backward(loss, nil, false)
	if err := s.Err(); err != nil {
		return err
	}
	return e.opt.Step()
}

func benchVariant(variant string, o Options, dev torch.Device) (*Variant, error) {
	e, err := newBenchEnv(variant, o, dev)
	if err != nil {
		return nil, err
	}
	defer e.close()
	p, s, cfg, cubeT := e.p, e.s, e.cfg, e.cubeT
	B, H, W := e.B, e.H, e.W
	bv := &Variant{Variant: variant, Stages: map[string]float64{}, Runtime: detect.RuntimeTorchScript}
	for _, n := range p.Nodes() {
		if d, ok := nodes.UnwrapNode(n).(interface{ Runtime() string }); ok {
			bv.Runtime = d.Runtime()
		}
	}
	sync := func() { _ = torch.Synchronize(dev) }
	run := e.infer
	for i := 0; i < o.Warmup; i++ {
		if err := run(); err != nil {
			return nil, err
		}
	}
	sync()
	// The detector alone runs on the reducer's output for this batch, interleaved with the
	// whole pipeline iteration by iteration, so that both see the same machine load and
	// their ratio holds on a busy machine.
	last := reducerNodes[variant][len(reducerNodes[variant])-1]
	rs := torch.NewScope()
	defer rs.Close()
	rs.SetGradEnabled(false)
	rout, err := p.Run(&nodes.Context{Stage: nodes.StageInference, Scope: rs, Device: dev}, e.batch, nodes.RunOptions{Only: []string{last}})
	if err != nil {
		return nil, err
	}
	var rgb *torch.Tensor
	for _, port := range []string{"rgb", "projected", "normalized"} {
		if t, err := rout.Tensor(last, port); err == nil {
			rgb = t
			break
		}
	}
	detNode, _ := p.Node("detector")
	if rgb == nil || detNode == nil {
		return nil, fmt.Errorf("variant %s: no reducer output from %s or no detector node", variant, last)
	}
	detAloneRun := func() error {
		s.Reset()
		s.SetGradEnabled(false)
		_, err := detNode.Forward(&nodes.Context{Stage: nodes.StageInference, Scope: s, Device: dev}, map[string]any{"rgb_image": rgb})
		return err
	}
	bv.RSSStartMB = procstat.MB("VmRSS:")
	var tPipe, tDet time.Duration
	var cpuPipe float64
	for i := 0; i < o.Iters; i++ {
		c0 := procstat.CPUSeconds()
		t0 := time.Now()
		if err := run(); err != nil {
			return nil, err
		}
		sync()
		t1 := time.Now()
		cpuPipe += procstat.CPUSeconds() - c0
		if err := detAloneRun(); err != nil {
			return nil, err
		}
		sync()
		tPipe += t1.Sub(t0)
		tDet += time.Since(t1)
	}
	bv.FPS = float64(B*o.Iters) / tPipe.Seconds()
	bv.CPUmsPerFrame = 1000 * cpuPipe / float64(B*o.Iters)
	bv.DetectorFPS = float64(B*o.Iters) / tDet.Seconds()
	bv.RSSEndMB = procstat.MB("VmRSS:")
	// stage by stage
	norm, _ := p.Node("normalizer")
	detN, _ := p.Node("detector")
	dec, _ := p.Node("decider")
	det, ok := detN.(interface {
		Preprocess(*torch.Scope, *torch.Tensor) (*torch.Tensor, error)
		RunModule(*torch.Scope, *torch.Tensor) (*torch.Tensor, *torch.Tensor, error)
		Postprocess(*torch.Scope, *torch.Tensor, int64, int64) (*torch.Tensor, error)
	})
	if norm == nil || !ok || dec == nil {
		return nil, fmt.Errorf("variant %s: expected nodes normalizer, detector and decider", variant)
	}
	stage := map[string]time.Duration{}
	for it := 0; it < o.Iters; it++ {
		s.Reset()
		s.SetGradEnabled(false)
		ctx := &nodes.Context{Stage: nodes.StageInference, Scope: s, Device: dev}
		mark := time.Now()
		lap := func(name string) {
			sync()
			stage[name] += time.Since(mark)
			mark = time.Now()
		}
		// as Pipeline.Run does: a fitted global normaliser is folded into the reducer
		var x any = cubeT
		scale, shift, fused := 0.0, 0.0, false
		if src, ok := nodes.UnwrapNode(norm).(nodes.AffineSource); ok {
			scale, shift, fused = src.InputAffine()
		}
		if !fused {
			out, err := norm.Forward(ctx, map[string]any{"data": cubeT})
			if err != nil {
				return nil, err
			}
			x = out["normalized"]
		}
		bv.FusedNormalizer = fused
		lap("normalize")
		for i, rn := range reducerNodes[variant] {
			n, ok := p.Node(rn)
			if !ok {
				return nil, fmt.Errorf("variant %s: node %s missing", variant, rn)
			}
			var o map[string]any
			var err error
			if sink, ok := nodes.UnwrapNode(n).(nodes.AffineSink); ok && fused && i == 0 {
				o, err = sink.ForwardAffine(ctx, map[string]any{"data": x}, scale, shift)
			} else {
				o, err = n.Forward(ctx, map[string]any{"data": x})
			}
			if err != nil {
				return nil, err
			}
			for _, port := range []string{"rgb", "projected", "normalized"} {
				if v, ok := o[port]; ok {
					x = v
					break
				}
			}
		}
		lap("reduce")
		pre, err := det.Preprocess(s, x.(*torch.Tensor))
		if err != nil {
			return nil, err
		}
		lap("detector_pre")
		pix, _, err := det.RunModule(s, pre)
		if err != nil {
			return nil, err
		}
		lap("detector")
		scores, err := det.Postprocess(s, pix, int64(H), int64(W))
		if err != nil {
			return nil, err
		}
		lap("post")
		if _, err := dec.Forward(ctx, map[string]any{"logits": scores}); err != nil {
			return nil, err
		}
		lap("decide")
	}
	var total float64
	for k, d := range stage {
		bv.Stages[k] = d.Seconds() / float64(o.Iters)
		total += bv.Stages[k]
	}
	bv.AroundDetector = total - bv.Stages["detector"]
	bv.CopyBytesPerSec = e.copyBPS
	// training steps
	if o.TrainIters > 0 && len(cfg.LossNodes) > 0 && !detect.IsCompiledFile(o.Detector) {
		if err := e.trainStep(); err != nil {
			return nil, err
		}
		sync()
		t2 := time.Now()
		for i := 0; i < o.TrainIters; i++ {
			if err := e.trainStep(); err != nil {
				return nil, err
			}
		}
		sync()
		bv.TrainStepsPerSec = float64(o.TrainIters) / time.Since(t2).Seconds()
	}
	return bv, nil
}

// WriteTable prints a report as a table.
func WriteTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "device %s · %d threads · LibTorch %s · BLAS %s · batch %d × %s × %d bands · detector %s (%s) · TF32 matmul %s, conv %s\n\n",
		r.Device, r.Threads, r.LibTorch, r.BLAS, r.Batch, r.Size, r.Bands, r.Detector, r.Runtime, onOff(r.TF32Matmul), onOff(r.TF32Conv))
	fmt.Fprintf(w, "%-9s %9s %10s %12s %10s %10s %10s %10s %10s %10s %10s %12s %8s\n", "variant", "FPS", "CPU ms/fr", "detector FPS", "train st/s", "norm ms", "reduce ms", "pre ms", "det ms", "post ms", "decide ms", "RSS MB s→e", "peak MB")
	for _, v := range r.Variants {
		ms := func(k string) float64 { return v.Stages[k] * 1000 }
		fmt.Fprintf(w, "%-9s %9.2f %10.1f %12.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %5.0f→%-5.0f %9.0f\n", v.Variant, v.FPS, v.CPUmsPerFrame, v.DetectorFPS, v.TrainStepsPerSec,
			ms("normalize"), ms("reduce"), ms("detector_pre"), ms("detector"), ms("post"), ms("decide"), v.RSSStartMB, v.RSSEndMB, v.PeakRSSMB)
	}
	how := "each variant in its own process"
	if !r.Isolated {
		how = "all variants in one process; a variant's peak includes what earlier ones left cached"
	}
	fmt.Fprintf(w, "\npeak RSS %.0f MB (largest variant; %s)\n", r.PeakRSSMB, how)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
