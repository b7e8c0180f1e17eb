// Package infer runs a finished run's pipeline over camera frames and writes its maps: the
// `spectraclip infer` command.
//
// Reading, scoring and writing overlap: one goroutine reads and decodes the next frame straight
// into an input tensor (on the CPU; with the NaN check done block by block while decoding),
// the calling goroutine runs the pipeline on the current one, and another goroutine encodes and
// writes the previous frame's maps. Two input tensors take turns and the queues between the
// stages hold one item each, so memory holds a fixed number of frames however many there are:
// two input tensors, the pipeline's own temporaries and a few output maps.
package infer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer"
)

// Options adjust Run.
type Options struct {
	// NaNPolicy says what a NaN or ±Inf input value does: "error" (the default) fails naming
	// the file and the value's position, "zero" replaces it with 0. For a dataset directory
	// its own nan_policy applies unless this is set.
	NaNPolicy string
	// Outputs selects the files written; the zero value means AllOutputs.
	Outputs Outputs
	// Threads overrides the run's training.threads for LibTorch (0 keeps the run's).
	Threads int
	// Log receives the start-up time and the throughput; nil discards them.
	Log *logrus.Logger

	// onFrame, when set (by tests and benchmarks), is called by the writer after each frame
	// is written, with the number written so far.
	onFrame func(n int)
}

// Summary is what Run reports besides the files.
type Summary struct {
	Frames int
	// StartupSeconds is the time to open the run (config, pipeline, weights) and list the
	// inputs, before the first frame is read.
	StartupSeconds float64
	// FirstFrameSeconds is the time from the end of start-up until the first frame's maps
	// were written (one read, one forward pass with its one-off costs, one write).
	FirstFrameSeconds float64
	// Seconds is the time from the end of start-up until the last frame was written.
	Seconds float64
	// SteadyFPS is the frame rate after the first frame: (frames − 1) divided by the time
	// from the first frame's write to the last one's; 0 with a single frame.
	SteadyFPS float64
}

// Infer runs a finished run's pipeline (inference stage) over ENVI cubes (a header, a folder
// of headers) or a dataset directory, writing per frame a score heatmap PNG, a decision mask
// PNG, the scores and decisions as (H, W) .npy arrays, and one results.json.
func Infer(dir, input, out string, log *logrus.Logger) (int, error) {
	s, err := Run(dir, input, out, Options{Log: log})
	return s.Frames, err
}

// Run is Infer with options. Inputs are checked for NaN/Inf as in training, and a frame whose
// scores are not all finite is an error, never a written result. The outputs go to a staging
// folder beside out that is published only when every input was read, checked, scored and
// written: a bad input (a file that cannot be read, the wrong band count, NaN) leaves no
// output behind.
func Run(dir, input, out string, o Options) (Summary, error) {
	t0 := time.Now()
	var sum Summary
	log := o.Log
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	switch o.NaNPolicy {
	case "", string(dataset.NaNError), string(dataset.NaNZero):
	default:
		return sum, fmt.Errorf("--nan-policy %q (allowed: error, zero)", o.NaNPolicy)
	}
	if o.Outputs == (Outputs{}) {
		o.Outputs = AllOutputs
	}
	if o.Threads < 0 {
		return sum, fmt.Errorf("--threads %d must be 0 (the run's) or positive", o.Threads)
	}
	inputs, err := listInputs(input, dataset.NaNPolicy(o.NaNPolicy))
	if err != nil {
		return sum, err
	}
	// The first frames are read while the run opens (loading the pipeline takes about as
	// long as reading a large frame).
	cpu := runOnCPU(dir)
	// OpenRun switches the allocator too; before the reader allocates its tensors, not while.
	if err := torch.SetCachingAllocator(true); err != nil {
		return sum, err
	}
	rd := startReading(inputs, cpu)
	defer rd.stop()
	r, err := trainer.OpenRun(dir, log)
	if err != nil {
		return sum, err
	}
	defer r.Pipeline.Close()
	if o.Threads > 0 {
		if err := trainer.SetThreads(o.Threads); err != nil {
			return sum, err
		}
	}
	made, err := trainer.MakeOutputDir(filepath.Dir(filepath.Clean(out)))
	if err != nil {
		return sum, fmt.Errorf("--out %s: %w", out, err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), "."+filepath.Base(filepath.Clean(out))+".partial-")
	if err != nil {
		made.Undo()
		return sum, fmt.Errorf("--out %s: %w", out, err)
	}
	fail := func(err error) (Summary, error) {
		_ = os.RemoveAll(stage)
		made.Undo()
		return Summary{}, err
	}
	sum.StartupSeconds = time.Since(t0).Seconds()
	log.Infof("infer: start-up %.2f s (run opened, %d inputs listed; the first frame read meanwhile)", sum.StartupSeconds, len(inputs))

	t1 := time.Now()
	if (r.Device.Type == torch.DeviceCPU) != cpu {
		return fail(fmt.Errorf("run %s: its device changed while it was opened", dir))
	}
	results, firstDone, lastDone, err := stream(r, rd, stage, o.Outputs, o.onFrame, log)
	if err != nil {
		return fail(err)
	}
	if o.Outputs.JSON {
		b, err := json.MarshalIndent(map[string]any{"run": dir, "detector": r.DetectorName(), "frames": results}, "", "  ")
		if err != nil {
			return fail(fmt.Errorf("%s: %w", filepath.Join(out, "results.json"), err))
		}
		if err := nodes.WriteFileAtomic(filepath.Join(stage, "results.json"), b); err != nil {
			return fail(err)
		}
	}
	if err := publish(stage, out, made); err != nil {
		return fail(err)
	}
	sum.Frames = len(results)
	sum.FirstFrameSeconds = firstDone.Sub(t1).Seconds()
	sum.Seconds = lastDone.Sub(t1).Seconds()
	if sum.Frames > 1 {
		sum.SteadyFPS = float64(sum.Frames-1) / lastDone.Sub(firstDone).Seconds()
	}
	log.Infof("infer: %d frames in %.2f s after start-up (first frame %.2f s, then %.2f frames/s)", sum.Frames, sum.Seconds, sum.FirstFrameSeconds, sum.SteadyFPS)
	return sum, nil
}

// runOnCPU reports whether the run's config puts it on the CPU (the default; a config that
// cannot be read is OpenRun's to report).
func runOnCPU(dir string) bool {
	cfg, _, err := trainer.LoadConfig(trainer.LoadOptions{File: filepath.Join(dir, "config.yaml")})
	if err != nil {
		return true
	}
	dev, err := torch.ParseDevice(cfg.Training.Device)
	return err != nil || dev.Type == torch.DeviceCPU
}

// slot is where one frame is decoded. On the CPU it is an input tensor of the frame's shape
// (owned by its own scope) and view, the tensor's memory: the reader decodes the file straight
// into the tensor that the pipeline then reads, with no staging copy. On other devices it is
// a Go buffer that the scorer copies to the device.
type slot struct {
	s    *torch.Scope
	t    *torch.Tensor
	view []float32
	buf  []float32
}

// fit makes the slot's tensor [1, h, w, c].
func (sl *slot) fit(h, w, c int) error {
	shape := []int64{1, int64(h), int64(w), int64(c)}
	if sl.t.Valid() && sameShape(sl.t.Shape(), shape) {
		return nil
	}
	sl.s.Reset()
	sl.t, sl.view = sl.s.Empty(shape, torch.Float32, torch.CPU), nil
	if err := sl.s.Err(); err != nil {
		return err
	}
	v, err := torch.CPUView[float32](sl.t)
	sl.view = v
	return err
}

// loaded is a decoded frame on its way to the scorer, in its slot.
type loaded struct {
	in   input
	cube *dataset.Cube
	sl   *slot
	err  error
}

// scored is a frame's maps on their way to the writer; bufs goes back to the scorer.
type scored struct {
	fo   frameOut
	bufs *outBufs
	dec  bool
}

type outBufs struct {
	scores []float32
	dec    []bool
}

// slots is how many frames may be in memory at once: one being scored while the next is
// decoded (or waits decoded).
const slots = 2

// reading is the reader stage started ahead of the others: it decodes frames into the free
// slots and queues them, from before the run is even open.
type reading struct {
	ctx      context.Context
	cancel   context.CancelFunc
	free     chan *slot
	all      []*slot
	loadedCh chan loaded
	done     chan struct{}
	took     time.Duration // time spent reading and decoding
	once     sync.Once
}

// startReading starts decoding inputs into slots (tensors on the CPU, Go buffers elsewhere).
func startReading(inputs []input, cpu bool) *reading {
	rd := &reading{free: make(chan *slot, slots), loadedCh: make(chan loaded, 1), done: make(chan struct{})}
	rd.ctx, rd.cancel = context.WithCancel(context.Background())
	for i := 0; i < slots; i++ {
		sl := &slot{s: torch.NewScope()}
		rd.all = append(rd.all, sl)
		rd.free <- sl
	}
	go func() {
		defer close(rd.done)
		defer close(rd.loadedCh)
		for _, in := range inputs {
			var sl *slot
			select {
			case sl = <-rd.free:
			case <-rd.ctx.Done():
				return
			}
			tr := time.Now()
			c, err := readInto(sl, in, cpu)
			rd.took += time.Since(tr)
			select {
			case rd.loadedCh <- loaded{in: in, cube: c, sl: sl, err: err}:
			case <-rd.ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return rd
}

// stop ends the reader (at its next step), waits for it and frees the slots.
func (rd *reading) stop() {
	rd.once.Do(func() {
		rd.cancel()
		for range rd.loadedCh {
		}
		<-rd.done
		for _, sl := range rd.all {
			sl.s.Close()
		}
	})
}

// stream scores and writes every frame the reader delivers, the writer one frame behind the
// scorer, and returns the frames' results in input order and when the first and the last
// frame were written. It stops the reader before returning.
func stream(r *trainer.Run, rd *reading, stage string, outs Outputs, onFrame func(int), log *logrus.Logger) ([]frameOut, time.Time, time.Time, error) {
	defer rd.stop()
	var first, last time.Time
	ctx, cancel := rd.ctx, rd.cancel
	var wg sync.WaitGroup
	var writeTime time.Duration

	// Writer: encodes and writes the previous frame while the next one is scored.
	outFree := make(chan *outBufs, 2)
	outFree <- &outBufs{}
	outFree <- &outBufs{}
	writeCh := make(chan scored, 1)
	var results []frameOut
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := newFrameWriter(stage, outs)
		for sc := range writeCh {
			if werr == nil {
				var dec []bool
				if sc.dec {
					dec = sc.bufs.dec
				}
				tw := time.Now()
				err := w.write(&sc.fo, sc.bufs.scores, dec)
				writeTime += time.Since(tw)
				if err != nil {
					werr = err
					cancel()
				} else {
					results = append(results, sc.fo)
					last = time.Now()
					if len(results) == 1 {
						first = last
					}
					if onFrame != nil {
						onFrame(len(results))
					}
				}
			}
			outFree <- sc.bufs
		}
	}()

	var st stageTimes
	err := score(ctx, r, rd.loadedCh, rd.free, outFree, writeCh, &st)
	close(writeCh)
	wg.Wait()
	if err == nil {
		err = werr
	}
	rd.stop()
	log.Debugf("infer: scorer time waiting for frames %.2f s, taking them in %.2f s, in the pipeline %.2f s, copying maps out %.2f s, waiting for the writer %.2f s; reader %.2f s, writer %.2f s",
		st.waitLoad.Seconds(), st.copyIn.Seconds(), st.forward.Seconds(), st.copyOut.Seconds(), st.waitWrite.Seconds(), rd.took.Seconds(), writeTime.Seconds())
	return results, first, last, err
}

// readInto decodes in into sl: on the CPU straight into the slot's tensor when the size is
// known from the header (else it is copied in after reading), elsewhere into its buffer.
func readInto(sl *slot, in input, cpu bool) (*dataset.Cube, error) {
	if !cpu {
		c, next, err := in.load(sl.buf)
		sl.buf = next
		return c, err
	}
	var into []float32
	if h, w, c, ok := in.dims(); ok {
		if err := sl.fit(h, w, c); err != nil {
			return nil, fmt.Errorf("%s: %w", in.path, err)
		}
		into = sl.view
	}
	c, _, err := in.load(into)
	if err != nil {
		return nil, err
	}
	if len(c.Data) > 0 && (len(into) == 0 || &c.Data[0] != &into[0]) {
		// decoded elsewhere (a scene file, a frame a dataset keeps in memory, a header that
		// changed): copy it in
		if err := sl.fit(c.H, c.W, c.C); err != nil {
			return nil, fmt.Errorf("%s: %w", in.path, err)
		}
		copy(sl.view, c.Data)
		c = &dataset.Cube{H: c.H, W: c.W, C: c.C, Data: sl.view, Wavelengths: c.Wavelengths, Source: c.Source}
	}
	return c, nil
}

// stageTimes is where the scorer's time went (logged at debug level).
type stageTimes struct{ waitLoad, copyIn, forward, copyOut, waitWrite time.Duration }

// score runs the pipeline on each loaded frame in the calling goroutine and hands the maps to
// the writer; each slot goes back to the reader as soon as the pipeline's temporaries (which
// may view the input) are freed.
func score(ctx context.Context, r *trainer.Run, loadedCh <-chan loaded, free chan<- *slot, outFree <-chan *outBufs, writeCh chan<- scored, tm *stageTimes) error {
	s := torch.NewScope()
	defer s.Close()
	sn, sp := trainer.PortRef(r.Cfg.Evaluation.Scores)
	dn, dp := trainer.PortRef(r.Cfg.Evaluation.Decisions)
	t := time.Now()
	lap := func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(t)
		t = now
	}
	for l := range loadedCh {
		lap(&tm.waitLoad)
		if l.err != nil {
			return l.err
		}
		c, path, sl := l.cube, l.in.path, l.sl
		s.Reset()
		var batch map[string]any
		if sl.t.Valid() {
			// the batch datanode.ToBatch builds, around the slot's tensor instead of a copy
			batch = map[string]any{
				datanode.KeyCube:        sl.t,
				datanode.KeyClassIDs:    []int32(nil),
				datanode.KeyWavelengths: c.Wavelengths,
				datanode.KeyFrameIDs:    []int{0},
				datanode.KeyShape:       [4]int{1, c.H, c.W, c.C},
			}
		} else {
			b := &dataset.Batch{Cube: c.Data, B: 1, H: c.H, W: c.W, C: c.C, Wavelengths: c.Wavelengths, FrameIDs: []int{0}}
			var err error
			if batch, err = datanode.ToBatch(s, b, r.Device, nil); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		lap(&tm.copyIn)
		s.SetGradEnabled(false)
		nctx := &nodes.Context{Stage: nodes.StageInference, Scope: s, Device: r.Device}
		o, err := r.Pipeline.Run(nctx, batch, nodes.RunOptions{})
		if err != nil {
			return fmt.Errorf("%s (%d bands): %w", path, c.C, err)
		}
		st, err := o.Tensor(sn, sp)
		if err != nil {
			return err
		}
		_ = torch.Synchronize(r.Device)
		lap(&tm.forward)
		var ob *outBufs
		select {
		case ob = <-outFree:
		case <-ctx.Done():
			return nil // the writer failed; it reports why
		}
		ob.scores = grow(ob.scores, int(st.Numel()))
		if err := torch.CopyTo(st, ob.scores); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if bad := dataset.CountNonFinite(ob.scores); bad > 0 {
			return fmt.Errorf("%s: %d of %d anomaly scores are NaN or infinite (the inputs were finite): nothing written", path, bad, len(ob.scores))
		}
		sc := scored{fo: frameOut{Name: l.in.name, Source: path, Height: c.H, Width: c.W}, bufs: ob}
		if dn != "" {
			if dt, err := o.Tensor(dn, dp); err == nil {
				ob.dec = grow(ob.dec, int(dt.Numel()))
				sc.dec = torch.CopyTo(dt, ob.dec) == nil
			}
		}
		for _, n := range r.Pipeline.Nodes() {
			if v, ok := o.Get(n.Name(), "anomaly_score"); ok {
				if t, ok := v.(*torch.Tensor); ok {
					sc.fo.AnomalyScore, _ = t.Item()
				}
			}
		}
		if err := s.Err(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		// Free this frame's temporaries now, then the slot may take the next frame.
		s.Reset()
		free <- sl
		lap(&tm.copyOut)
		select {
		case writeCh <- sc:
		case <-ctx.Done():
			return nil
		}
		lap(&tm.waitWrite)
	}
	return nil
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
