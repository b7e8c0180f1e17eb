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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
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
	// Batch is how many consecutive frames of the same size go through the pipeline together
	// (default 1). Each frame's maps do not depend on the others in its batch.
	Batch int
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
	// FirstFrameSeconds is the time from the end of start-up until the first batch's maps
	// were written (one read, one forward pass with its one-off costs, one write).
	FirstFrameSeconds float64
	// Seconds is the time from the end of start-up until the last frame was written.
	Seconds float64
	// SteadyFPS is the frame rate after the first batch: the frames after it divided by the
	// time from its write to the last one's; 0 with a single batch.
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
	if maxT := config.MaxThreads(); o.Threads < 0 || o.Threads > maxT {
		return sum, fmt.Errorf("--threads %d: out of range 0..%d (0 = the run's training.threads; the limit is 4 per CPU core, at least 64)", o.Threads, maxT)
	}
	if o.Batch < 0 || o.Batch > config.MaxBatchSize {
		return sum, fmt.Errorf("--batch %d: out of range 1..%d", o.Batch, config.MaxBatchSize)
	}
	o.Batch = max(o.Batch, 1)
	inputs, err := listInputs(input, dataset.NaNPolicy(o.NaNPolicy))
	if err != nil {
		return sum, err
	}
	// The first frames are read while the run opens (loading the pipeline takes about as
	// long as reading a large frame).
	cfg, err := run.LoadConfig(dir)
	if err != nil {
		return sum, err
	}
	pl, err := run.Place(cfg, run.Request{Threads: o.Threads, ThreadsFrom: "--threads"})
	if err != nil {
		return sum, err
	}
	cpu := pl.Device.Type == torch.DeviceCPU
	// run.Open switches the allocator too; before the reader allocates its tensors, not while.
	if err := torch.SetCachingAllocator(true); err != nil {
		return sum, err
	}
	rd := startReading(inputs, cpu, o.Batch)
	defer rd.stop()
	r, err := run.Open(dir, run.OpenOptions{Config: cfg, Placed: &pl})
	if err != nil {
		return sum, err
	}
	defer r.Close()
	made, err := run.MakeOutputDir(filepath.Dir(filepath.Clean(out)))
	if err != nil {
		return sum, fmt.Errorf("--out %s: %w", out, err)
	}
	cleanStalePartials(out, log)
	stage, stageLock, err := makeStage(out)
	if err != nil {
		made.Undo()
		return sum, fmt.Errorf("--out %s: %w", out, err)
	}
	defer stageLock.Close()
	fail := func(err error) (Summary, error) {
		_ = os.RemoveAll(stage)
		made.Undo()
		return Summary{}, err
	}
	sum.StartupSeconds = time.Since(t0).Seconds()
	log.Infof("infer: start-up %.2f s (run opened, %d inputs listed; the first frame read meanwhile)", sum.StartupSeconds, len(inputs))

	t1 := time.Now()
	results, firstDone, lastDone, firstN, err := stream(r, rd, stage, o.Outputs, o.onFrame, log)
	if err != nil {
		return fail(err)
	}
	if o.Outputs.JSON {
		b, err := json.MarshalIndent(map[string]any{"run": dir, "detector": run.DetectorName(r.Pipeline), "frames": results}, "", "  ")
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
	if sum.Frames > firstN {
		sum.SteadyFPS = float64(sum.Frames-firstN) / lastDone.Sub(firstDone).Seconds()
	}
	log.Infof("infer: %d frames in %.2f s after start-up (first batch %.2f s, then %.2f frames/s)", sum.Frames, sum.Seconds, sum.FirstFrameSeconds, sum.SteadyFPS)
	return sum, nil
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
func (sl *slot) fit(b, h, w, c int) error {
	shape := []int64{int64(b), int64(h), int64(w), int64(c)}
	if sl.t.Valid() && slices.Equal(sl.t.Shape(), shape) {
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

// loaded is a batch of decoded frames (of one size) on its way to the scorer, in its slot.
type loaded struct {
	ins   []input
	cubes []*dataset.Cube
	sl    *slot
	err   error
}

// scored is a batch's maps on their way to the writer, frame after frame in bufs; bufs goes
// back to the scorer.
type scored struct {
	fos  []frameOut
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

// startReading starts decoding inputs into slots (tensors on the CPU, Go buffers elsewhere),
// up to batch consecutive frames of the same size into one slot.
func startReading(inputs []input, cpu bool, batch int) *reading {
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
		for i := 0; i < len(inputs); {
			group := nextGroup(inputs[i:], batch)
			i += len(group)
			var sl *slot
			select {
			case sl = <-rd.free:
			case <-rd.ctx.Done():
				return
			}
			tr := time.Now()
			cs, err := readGroup(sl, group, cpu)
			rd.took += time.Since(tr)
			select {
			case rd.loadedCh <- loaded{ins: group, cubes: cs, sl: sl, err: err}:
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
func stream(r *run.Artefact, rd *reading, stage string, outs Outputs, onFrame func(int), log *logrus.Logger) (results []frameOut, first, last time.Time, firstN int, err error) {
	defer rd.stop()
	ctx, cancel := rd.ctx, rd.cancel
	var wg sync.WaitGroup
	var writeTime time.Duration

	// Writer: encodes and writes the previous frame while the next one is scored.
	outFree := make(chan *outBufs, 2)
	outFree <- &outBufs{}
	outFree <- &outBufs{}
	writeCh := make(chan scored, 1)
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
				off := 0
				for k := range sc.fos {
					fo := &sc.fos[k]
					n := fo.Height * fo.Width
					var d []bool
					if dec != nil {
						d = dec[off : off+n]
					}
					tw := time.Now()
					err := w.write(fo, sc.bufs.scores[off:off+n], d)
					writeTime += time.Since(tw)
					off += n
					if err != nil {
						werr = err
						cancel()
						break
					}
					results = append(results, *fo)
					last = time.Now()
					if onFrame != nil {
						onFrame(len(results))
					}
				}
			}
			if firstN == 0 && werr == nil {
				first, firstN = last, len(results)
			}
			outFree <- sc.bufs
		}
	}()

	var st stageTimes
	err = score(ctx, r, rd.loadedCh, rd.free, outFree, writeCh, &st)
	close(writeCh)
	wg.Wait()
	if err == nil {
		err = werr
	}
	rd.stop()
	log.Debugf("infer: scorer time waiting for frames %.2f s, taking them in %.2f s, in the pipeline %.2f s, copying maps out %.2f s, waiting for the writer %.2f s; reader %.2f s, writer %.2f s",
		st.waitLoad.Seconds(), st.copyIn.Seconds(), st.forward.Seconds(), st.copyOut.Seconds(), st.waitWrite.Seconds(), rd.took.Seconds(), writeTime.Seconds())
	return results, first, last, firstN, err
}

// nextGroup is the inputs that go into the next batch: up to batch consecutive inputs whose
// size the headers tell and agree on (a single input otherwise).
func nextGroup(inputs []input, batch int) []input {
	if batch <= 1 || len(inputs) == 1 {
		return inputs[:1]
	}
	h, w, c, ok := inputs[0].dims()
	if !ok {
		return inputs[:1]
	}
	n := 1
	for n < len(inputs) && n < batch {
		h2, w2, c2, ok := inputs[n].dims()
		if !ok || h2 != h || w2 != w || c2 != c {
			break
		}
		n++
	}
	return inputs[:n]
}

// readGroup decodes a group of inputs into sl: on the CPU straight into the slot's tensor
// when the size is known from the header (else the cube is copied in after reading),
// elsewhere into its buffer.
func readGroup(sl *slot, group []input, cpu bool) ([]*dataset.Cube, error) {
	if !cpu {
		return readGroupBuffer(sl, group)
	}
	cs := make([]*dataset.Cube, len(group))
	if len(group) == 1 {
		c, err := readOne(sl, group[0])
		cs[0] = c
		return cs, err
	}
	h, w, c, _ := group[0].dims()
	if err := sl.fit(len(group), h, w, c); err != nil {
		return nil, fmt.Errorf("%s: %w", group[0].path, err)
	}
	return loadGroupInto(cs, group, sl.view, h, w, c)
}

// loadGroupInto decodes the group's frames, each h×w×c, one after another into buf (the
// slot's tensor or its Go buffer) and returns the cubes over their part of buf.
func loadGroupInto(cs []*dataset.Cube, group []input, buf []float32, h, w, c int) ([]*dataset.Cube, error) {
	n := h * w * c
	for k, in := range group {
		into := buf[k*n : (k+1)*n : (k+1)*n]
		cube, _, err := in.load(into)
		if err != nil {
			return nil, err
		}
		if cube.H != h || cube.W != w || cube.C != c {
			return nil, fmt.Errorf("%s: cube is %d×%d×%d but its header said %d×%d×%d", in.path, cube.H, cube.W, cube.C, h, w, c)
		}
		if &cube.Data[0] != &into[0] {
			copy(into, cube.Data) // a frame a dataset keeps in memory
		}
		cs[k] = &dataset.Cube{H: h, W: w, C: c, Data: into, Wavelengths: cube.Wavelengths, Source: cube.Source}
	}
	return cs, nil
}

// readGroupBuffer decodes a group into the slot's Go buffer (devices other than the CPU).
func readGroupBuffer(sl *slot, group []input) ([]*dataset.Cube, error) {
	cs := make([]*dataset.Cube, len(group))
	if len(group) == 1 {
		c, next, err := group[0].load(sl.buf)
		sl.buf, cs[0] = next, c
		return cs, err
	}
	h, w, c, _ := group[0].dims()
	n := h * w * c
	if cap(sl.buf) < len(group)*n {
		sl.buf = make([]float32, len(group)*n)
	}
	sl.buf = sl.buf[:len(group)*n]
	return loadGroupInto(cs, group, sl.buf, h, w, c)
}

// readOne decodes one input into sl, refitting the slot's tensor to whatever size it has.
func readOne(sl *slot, in input) (*dataset.Cube, error) {
	var into []float32
	if h, w, c, ok := in.dims(); ok {
		if err := sl.fit(1, h, w, c); err != nil {
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
		if err := sl.fit(1, c.H, c.W, c.C); err != nil {
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
func score(ctx context.Context, r *run.Artefact, loadedCh <-chan loaded, free chan<- *slot, outFree <-chan *outBufs, writeCh chan<- scored, tm *stageTimes) error {
	s := torch.NewScope()
	defer s.Close()
	sn, sp := config.PortRef(r.Cfg.Evaluation.Scores)
	dn, dp := config.PortRef(r.Cfg.Evaluation.Decisions)
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
		c, path, sl, nb := l.cubes[0], l.ins[0].path, l.sl, len(l.cubes)
		s.Reset()
		ids := make([]int, nb)
		for k := range ids {
			ids[k] = k
		}
		var batch map[string]any
		if sl.t.Valid() {
			// the batch datanode.ToBatch builds, around the slot's tensor instead of a copy
			batch = map[string]any{
				datanode.KeyCube:        sl.t,
				datanode.KeyClassIDs:    []int32(nil),
				datanode.KeyWavelengths: c.Wavelengths,
				datanode.KeyFrameIDs:    ids,
				datanode.KeyShape:       [4]int{nb, c.H, c.W, c.C},
			}
		} else {
			data := c.Data
			if nb > 1 {
				data = sl.buf
			}
			b := &dataset.Batch{Cube: data, B: nb, H: c.H, W: c.W, C: c.C, Wavelengths: c.Wavelengths, FrameIDs: ids}
			var err error
			if batch, err = datanode.ToBatch(s, b, r.Device(), nil); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		lap(&tm.copyIn)
		s.SetGradEnabled(false)
		nctx := &nodes.Context{Stage: nodes.StageInference, Scope: s, Device: r.Device()}
		o, err := r.Pipeline.Run(nctx, batch, nodes.RunOptions{})
		if err != nil {
			return fmt.Errorf("%s (%d bands): %w", path, c.C, err)
		}
		st, err := o.Tensor(sn, sp)
		if err != nil {
			return err
		}
		_ = torch.Synchronize(r.Device())
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
		px := len(ob.scores) / nb
		sc := scored{bufs: ob}
		for k, in := range l.ins {
			if bad := dataset.CountNonFinite(ob.scores[k*px : (k+1)*px]); bad > 0 {
				return fmt.Errorf("%s: %d of %d anomaly scores are NaN or infinite (the inputs were finite): nothing written", in.path, bad, px)
			}
			sc.fos = append(sc.fos, frameOut{Name: in.name, Source: in.path, Height: c.H, Width: c.W})
		}
		if dn != "" {
			if dt, err := o.Tensor(dn, dp); err == nil {
				ob.dec = grow(ob.dec, int(dt.Numel()))
				sc.dec = torch.CopyTo(dt, ob.dec) == nil
			}
		}
		for _, n := range r.Pipeline.Nodes() {
			if v, ok := o.Get(n.Name(), "anomaly_score"); ok {
				if t, ok := v.(*torch.Tensor); ok {
					if a, err := torch.Values[float64](t); err == nil && len(a) > 0 {
						for k := range sc.fos {
							sc.fos[k].AnomalyScore = a[min(k, len(a)-1)]
						}
					}
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

// partialPrefix starts the name of out's staging folders: "."+base(out)+".partial-".
func partialPrefix(out string) string { return "." + filepath.Base(filepath.Clean(out)) + ".partial-" }

// makeStage creates out's staging folder and returns it with an open handle that holds an
// exclusive flock on it until the command ends: the mark of a live infer, which
// cleanStalePartials leaves alone. The folder is made under another name and renamed to its
// ".partial-" name only once locked, so that no ".partial-" folder of a live infer is ever
// unlocked.
func makeStage(out string) (string, *os.File, error) {
	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(out))+".staging-")
	if err != nil {
		return "", nil, err
	}
	f, err := lockDir(tmp, syscall.LOCK_EX)
	if err != nil {
		os.Remove(tmp)
		return "", nil, err
	}
	stage := filepath.Join(parent, partialPrefix(out)+strings.TrimPrefix(filepath.Base(tmp), "."+filepath.Base(filepath.Clean(out))+".staging-"))
	if err := atomicfile.Rename(tmp, stage); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", nil, err
	}
	return stage, f, nil
}

// lockDir opens the directory p (not a link to one) and takes how (LOCK_EX or LOCK_SH)
// without waiting.
func lockDir(p string, how int) (*os.File, error) {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	if err := syscall.Flock(fd, how|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: p, Err: err}
	}
	return f, nil
}

// cleanStalePartials removes the staging folders a killed infer left beside out (#25 item
// 4): out's own ".partial-" folders (and ".staging-" ones older than a minute) that no live
// infer holds locked. Other folders, links and folders of other outputs are never touched;
// a folder that cannot be removed is left for the next run (a warning, not an error).
func cleanStalePartials(out string, log *logrus.Logger) {
	parent := filepath.Dir(filepath.Clean(out))
	base := "." + filepath.Base(filepath.Clean(out))
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		staging := strings.HasPrefix(n, base+".staging-")
		if !strings.HasPrefix(n, base+".partial-") && !staging {
			continue
		}
		p := filepath.Join(parent, n)
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue // a link or a file: not a staging folder of ours
		}
		if staging && time.Since(fi.ModTime()) < time.Minute {
			continue // maybe being locked and renamed right now
		}
		f, err := lockDir(p, syscall.LOCK_EX)
		if err != nil {
			continue // held by a live infer (or not ours to open)
		}
		err = os.RemoveAll(p)
		f.Close()
		if err != nil {
			log.Warnf("infer: could not remove %s, left by an interrupted infer: %v", p, err)
			continue
		}
		log.Infof("infer: removed %s, left by an interrupted infer", p)
	}
}
