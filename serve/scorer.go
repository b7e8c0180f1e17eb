// Package serve is the inference service: a trained run's pipeline behind gRPC and HTTP
// handlers that share one dynamic batcher (bounded queue, back-pressure, deadlines),
// Prometheus metrics and a live page.
package serve

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/nodes/decide"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// Frame is one cube to score: H×W×C float32 values, channels last.
type Frame struct {
	H, W, C     int
	Data        []float32
	Wavelengths []float32 // nil: the run's own
	ID          string

	buf *[]byte // pooled request bytes that Data aliases; back to the pool once scored

	// With Data nil: the values as little-endian float32 bytes, in order, still in the
	// transport's buffers (gRPC); freePieces releases them. The batcher copies them into its
	// staging tensor and checks them for NaN/Inf there.
	pieces     [][]byte
	freePieces func()
	// With Data nil: the values in a shared-memory file (shm.go), read by the batcher
	// straight into its staging tensor and checked there.
	shm *shmSource

	scanned   bool // Data was checked for NaN/Inf as it was read: nonFinite holds the result
	nonFinite int  // index of the first NaN/Inf in Data, -1 if none (when scanned)
}

// release gives the frame's pooled request bytes back; Data must not be used afterwards.
func (f *Frame) release() {
	if f == nil {
		return
	}
	if f.buf != nil {
		putBuf(f.buf)
		f.buf, f.Data = nil, nil
	}
	if f.freePieces != nil {
		f.freePieces()
		f.freePieces, f.pieces = nil, nil
	}
	if f.shm != nil {
		f.shm.close()
		f.shm = nil
	}
}

// staged says whether the frame's values are still elsewhere (transport pieces or a
// shared-memory file): the batcher copies them into its staging tensor with stage.
func (f *Frame) staged() bool { return f.Data == nil && (f.pieces != nil || f.shm != nil) }

// stage copies the values of a staged() frame into dst (values() long) and returns the
// index of the first NaN/Inf (-1: none).
func (f *Frame) stage(dst []float32) (int, error) {
	if f.shm != nil {
		return f.shm.read(dst)
	}
	return f.copyPieces(dst), nil
}

// values is the number of values the frame holds.
func (f *Frame) values() int {
	if f.Data == nil && f.shm != nil {
		return f.shm.n
	}
	if f.Data == nil && f.pieces != nil {
		n := 0
		for _, p := range f.pieces {
			n += len(p)
		}
		return n / 4
	}
	return len(f.Data)
}

// copyPieces copies the values of a frame held as transport pieces into dst (values()
// long), checking each stretch for NaN/Inf right after it is copied, while in the cache; it
// returns the index of the first NaN/Inf, or -1. It may stop at the first.
func (f *Frame) copyPieces(dst []float32) int {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*len(dst))
	n, checked := 0, 0
	for _, p := range f.pieces {
		n += copy(b[n:], p)
		if upto := n / 4; upto > checked {
			if i := firstUnusable(dst[checked:upto]); i >= 0 {
				return checked + i
			}
			checked = upto
		}
	}
	return -1
}

// nonFiniteError names the place of value v, the i-th (a NaN or Inf), in a frame of width w
// and c bands.
func nonFiniteError(v float32, i, w, c int) error {
	px, b := i/c, i%c
	if x := float64(v); !math.IsNaN(x) && !math.IsInf(x, 0) {
		return fmt.Errorf("value %g at row %d, column %d, band %d is too large: magnitudes of 2^50 (%.3g) or more overflow float32 inside the pipeline (normalisation, band mixing); rescale the cube",
			v, px/w, px%w, b, float64(MaxAbsValue))
	}
	return fmt.Errorf("value %v (NaN/Inf) at row %d, column %d, band %d", v, px/w, px%w, b)
}

// Result is what scoring one frame gives.
type Result struct {
	ImageScore    float64 // the image-level score of the scorer's ImageRule
	Decision      bool    // ImageScore ≥ the rule's threshold: the frame holds an anomaly
	AnomalyPixels int     // pixels flagged in a frame decided anomalous (0 otherwise)
	H, W          int
	Scores        []float32 // H×W
	Decisions     []bool    // H×W, the run's decider's map as infer writes it; nil when the run has no decider
}

// ImageRule is how a frame's image-level decision is made from its anomaly map (the map
// of evaluation.scores, as infer writes it):
//
//   - image score: the mean of the frame's k highest map values, k = max(1, ⌈TopKFraction·H·W⌉)
//     (the TwoStageBinaryDecider's image score);
//   - decision: image score ≥ Threshold;
//   - anomaly pixels: in a frame decided anomalous, the pixels whose value reaches
//     PixelThreshold, or (PixelThreshold NaN) those the run's decider flags; 0 otherwise.
//
// Where the threshold comes from (Source): the run's TwoStageBinaryDecider (its
// top_k_fraction and image_threshold: the decision is its image gate); else the run's
// calibration.json (`spectraclip calibrate`), whose F1-optimal pixel threshold serves as
// both thresholds; else the TwoStageBinaryDecider defaults, the top 0.1 % mean ≥ 0.5.
type ImageRule struct {
	TopKFraction   float64 `json:"top_k_fraction"`
	Threshold      float64 `json:"threshold"`
	PixelThreshold float64 `json:"-"` // NaN: the decider's pixels
	Source         string  `json:"source"`
}

// String says the rule in one line.
func (r ImageRule) String() string {
	px := "the decider's pixels"
	if !math.IsNaN(r.PixelThreshold) {
		px = fmt.Sprintf("pixels ≥ %.6g", r.PixelThreshold)
	}
	return fmt.Sprintf("image score = mean of the top %.3g %% of the map; decision = score ≥ %.6g (%s); counted: %s", 100*r.TopKFraction, r.Threshold, r.Source, px)
}

// Default image rule: the TwoStageBinaryDecider's defaults.
const (
	defaultTopKFraction   = 0.001
	defaultImageThreshold = 0.5
)

// imageRule finds the run's image rule (see ImageRule).
func imageRule(dir string, r *run.Artefact, decNode string) (ImageRule, error) {
	if n, ok := r.Pipeline.Node(decNode); ok && decNode != "" {
		if ts, ok := nodes.UnwrapNode(n).(*decide.TwoStageBinaryDecider); ok {
			return ImageRule{TopKFraction: ts.TopKFraction, Threshold: ts.ImageThreshold, PixelThreshold: math.NaN(),
				Source: fmt.Sprintf("the image gate of decider %q (TwoStageBinaryDecider)", decNode)}, nil
		}
	}
	t, ok, err := run.CalibratedThreshold(dir)
	if err != nil {
		return ImageRule{}, err
	}
	if ok {
		return ImageRule{TopKFraction: defaultTopKFraction, Threshold: t, PixelThreshold: t, Source: "calibration.json pixel_threshold"}, nil
	}
	return ImageRule{TopKFraction: defaultTopKFraction, Threshold: defaultImageThreshold, PixelThreshold: math.NaN(),
		Source: "default: no calibration.json in the run (spectraclip calibrate writes one)"}, nil
}

// Scorer runs a finished run's pipeline (inference stage) on batches of frames, with the
// same calls package infer makes, so that one frame scored here equals infer's output bit
// for bit. It is not safe for concurrent use: the batcher owns it.
type Scorer struct {
	run         *run.Artefact
	Bands       int
	Wavelengths []float32
	FrameH      int // the run's data frame size (for warm-up); 0 when unknown
	FrameW      int
	scoresNode  string
	scoresPort  string
	decNode     string
	decPort     string
	Rule        ImageRule // how the image-level decision is made
	scope       *torch.Scope
}

// OpenScorer opens the run in dir. The band count and the default wavelengths come from
// the run's data root when it is there, else from bands (which must then be > 0).
func OpenScorer(dir string, device string, bands int, log *logrus.Logger) (*Scorer, error) {
	return OpenScorerWith(dir, ScorerOptions{Device: device, Bands: bands, Log: log})
}

// ScorerOptions adjust OpenScorerWith.
type ScorerOptions struct {
	Device string // "" = the run's own
	// Placed is the placement resolved already (the server resolves it once for all its
	// workers); nil = Device over the run's config. Config is the run's config when read
	// already.
	Placed *run.Placement
	Config *config.Config
	Bands  int // band count when the run's data root is gone
	// ImageThreshold, when set, is the image-level decision threshold, over the run's
	// calibration.json and decider (the image score and the pixel rule stay theirs).
	ImageThreshold *float64
	Log            *logrus.Logger
}

// requireFinished refuses a directory without a saved pipeline.
func requireFinished(dir string) error {
	if _, err := os.Stat(run.Path(dir, run.PipelineFile)); err != nil {
		return fmt.Errorf("--run %s: not a finished run (no %s): %w", dir, run.PipelineFile, err)
	}
	return nil
}

// OpenScorerWith is OpenScorer with options.
func OpenScorerWith(dir string, o ScorerOptions) (*Scorer, error) {
	bands := o.Bands
	if err := requireFinished(dir); err != nil {
		return nil, err
	}
	r, err := run.Open(dir, run.OpenOptions{Config: o.Config, Placed: o.Placed,
		Placement: run.Request{Device: o.Device, DeviceFrom: "--device"}})
	if err != nil {
		return nil, err
	}
	s := &Scorer{run: r, Bands: bands, scope: torch.NewScope()}
	s.scoresNode, s.scoresPort = config.PortRef(r.Cfg.Evaluation.Scores)
	s.decNode, s.decPort = config.PortRef(r.Cfg.Evaluation.Decisions)
	if s.scoresNode == "" {
		s.Close()
		return nil, fmt.Errorf("run %s: evaluation.scores is not set: nothing to serve", dir)
	}
	if s.Rule, err = imageRule(dir, r, s.decNode); err != nil {
		s.Close()
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	if t := o.ImageThreshold; t != nil {
		if math.IsNaN(*t) || math.IsInf(*t, 0) {
			s.Close()
			return nil, fmt.Errorf("--image-threshold %v: want a finite number", *t)
		}
		s.Rule.Threshold, s.Rule.Source = *t, "--image-threshold"
	}
	if root := r.Cfg.Data.Root; root != "" {
		if _, err := os.Stat(filepath.Join(root, dataset.ManifestName)); err == nil {
			ds, err := dataset.OpenWith(root, dataset.Options{})
			if err == nil {
				s.Bands, s.Wavelengths = ds.Bands, ds.Wavelengths
				if len(ds.Frames) > 0 {
					if smp, err := ds.Load(ds.Frames[0].ID); err == nil {
						s.FrameH, s.FrameW = smp.H, smp.W
					}
				}
			}
		}
	}
	if s.Bands <= 0 {
		s.Close()
		return nil, fmt.Errorf("run %s: its data root %q is not there to tell the band count; pass --bands", dir, r.Cfg.Data.Root)
	}
	if len(s.Wavelengths) != s.Bands {
		s.Wavelengths = make([]float32, s.Bands)
		for i := range s.Wavelengths {
			s.Wavelengths[i] = float32(i + 1)
		}
	}
	return s, nil
}

// Device is the device the pipeline runs on.
func (s *Scorer) Device() torch.Device { return s.run.Device() }

// Close frees the pipeline.
func (s *Scorer) Close() {
	if s.scope != nil {
		s.scope.Close()
		s.scope = nil
	}
	if s.run != nil {
		s.run.Close()
	}
}

// Check says whether a frame can be scored: the band count, finite values, a consistent size.
func (s *Scorer) Check(f *Frame) error {
	if f.H <= 0 || f.W <= 0 || f.C <= 0 {
		return fmt.Errorf("cube shape (%d, %d, %d): every dimension must be > 0", f.H, f.W, f.C)
	}
	if f.C != s.Bands {
		return fmt.Errorf("cube has %d bands, the run's pipeline takes %d", f.C, s.Bands)
	}
	if n := f.values(); n != f.H*f.W*f.C {
		return fmt.Errorf("cube shape (%d, %d, %d) needs %d values, got %d", f.H, f.W, f.C, f.H*f.W*f.C, n)
	}
	if f.Wavelengths != nil && len(f.Wavelengths) != f.C {
		return fmt.Errorf("%d wavelengths for %d bands", len(f.Wavelengths), f.C)
	}
	if f.staged() {
		return nil // checked for NaN/Inf as they are staged (Frame.stage)
	}
	i := f.nonFinite
	if !f.scanned {
		i = firstUnusable(f.Data)
	}
	if i >= 0 {
		return nonFiniteError(f.Data[i], i, f.W, f.C)
	}
	return nil
}

// firstNonFinite is the index of the first NaN or ±Inf in v, or -1. It reads the values
// two at a time as 64-bit words, without a branch per value: with the sign bits cleared, a
// value's exponent is all ones (NaN, Inf) exactly when adding 1 to its exponent carries into
// the sign bit, so OR-ing those sums over 16 values and testing the two sign bits finds a
// NaN/Inf among them; only then are the 16 looked at one by one. BenchmarkFirstNonFinite:
// on 32 KiB in the cache 2.3× the speed of a compare per value, on a 16 MB cube read from
// memory 1.2×.
func firstNonFinite(v []float32) int { return firstExpAtLeast(v, 0xff) }

// MaxAbsValue is the largest magnitude a cube's value may have: 2^50 ≈ 1.1e15. Larger
// finite values (3e38, say) pass a NaN/Inf check but overflow float32 to Inf inside the
// pipeline — the min-max normaliser keeps them as large, the band mixer sums 61 of them
// times its weights, a detector squares them — and the scores come out NaN (#25 item 10);
// they are refused up front instead. Real cubes are reflectances (about 0 to 1) or counts
// (at most 65535 for 16-bit sensors).
const MaxAbsValue = 1 << 50

// maxAbsExp is MaxAbsValue's biased float32 exponent: a value is refused when its exponent
// is at least this.
const maxAbsExp = 127 + 50

// firstUnusable is the index of the first value of a cube that cannot be scored: a NaN,
// ±Inf, or a magnitude ≥ MaxAbsValue; -1 if none.
func firstUnusable(v []float32) int { return firstExpAtLeast(v, maxAbsExp) }

// firstExpAtLeast is the index of the first value in v whose biased exponent is at least e
// (0xff: NaN or ±Inf), or -1; the word-wise scan of firstNonFinite.
func firstExpAtLeast(v []float32, e uint32) int {
	const (
		abs  = 0x7fffffff_7fffffff
		sign = 0x80000000_80000000
	)
	one := uint64(256-e)<<23 | uint64(256-e)<<55 // carries into the sign bit when the exponent is ≥ e
	u := float32Bits(v)
	exp := e << 23
	i := 0
	if len(u) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(u)))%8 != 0 {
		// a slice starting between two words (a chunk cut after an odd value): one value
		// alone, then the words
		if u[0]&0x7fffffff >= exp {
			return 0
		}
		i = 1
	}
	if n := (len(u) - i) / 16 * 16; n > 0 {
		w := unsafe.Slice((*uint64)(unsafe.Pointer(&u[i])), n/2)
		k := 0
		for ; k < len(w); k += 8 {
			x := w[k : k+8 : k+8]
			f := (x[0]&abs + one) | (x[1]&abs + one) | (x[2]&abs + one) | (x[3]&abs + one) |
				(x[4]&abs + one) | (x[5]&abs + one) | (x[6]&abs + one) | (x[7]&abs + one)
			if f&sign != 0 {
				break
			}
		}
		i += 2 * k
	}
	for ; i < len(u); i++ {
		if u[i]&0x7fffffff >= exp {
			return i
		}
	}
	return -1
}

// Score runs one forward over frames of one shape (checked with Check) and returns a
// result per frame.
func (s *Scorer) Score(frames []*Frame) ([]Result, error) {
	if len(frames) == 0 {
		return nil, nil
	}
	f0 := frames[0]
	wl := f0.Wavelengths
	for _, f := range frames[1:] {
		if f.H != f0.H || f.W != f0.W || f.C != f0.C {
			return nil, fmt.Errorf("batch mixes shapes (%d,%d,%d) and (%d,%d,%d)", f0.H, f0.W, f0.C, f.H, f.W, f.C)
		}
	}
	sc := s.scope
	sc.Reset()
	shape := []int64{int64(len(frames)), int64(f0.H), int64(f0.W), int64(f0.C)}
	var cube *torch.Tensor
	if s.run.Device().Type == torch.DeviceCPU {
		// one copy per frame straight into the batch tensor (no Go-side concatenation)
		cube = sc.Empty(shape, torch.Float32, torch.CPU)
		for i, f := range frames {
			if sc.Err() != nil {
				break
			}
			if err := torch.CopyFrom(sc.Narrow(cube, 0, int64(i), 1), f.Data); err != nil {
				return nil, fmt.Errorf("batch of %d frames: %w", len(frames), err)
			}
		}
	} else {
		data := f0.Data
		if len(frames) > 1 {
			data = make([]float32, 0, len(frames)*len(f0.Data))
			for _, f := range frames {
				data = append(data, f.Data...)
			}
		}
		cube = torch.FromSlice(sc, s.run.Device(), data, shape...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("batch of %d frames: %w", len(frames), err)
	}
	raw, err := s.forward(cube, wl)
	if err != nil {
		return nil, err
	}
	return s.results(raw)
}

// rawScores are one forward's outputs, copied out of the tensors.
type rawScores struct {
	n, h, w int
	scores  []float32 // n×h×w
	dec     []bool    // n×h×w, nil when the run has no decider
	img     []float32 // n image scores
}

// forward runs the pipeline (inference stage) in s.scope on cube, a [N, H, W, C] float32
// tensor (on the CPU or the run's device) of frames whose wavelengths are wl (nil: the
// run's own), and copies its maps and image scores out. The caller resets s.scope.
func (s *Scorer) forward(cube *torch.Tensor, wl []float32) (*rawScores, error) {
	if wl == nil {
		wl = s.Wavelengths
	}
	sc := s.scope
	shape := cube.Shape()
	if len(shape) != 4 {
		return nil, fmt.Errorf("batch tensor of shape %v: want [N, H, W, C]", shape)
	}
	n, h, w, c := int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3])
	if cube.Device() != s.run.Device() {
		cube = sc.To(cube, s.run.Device(), torch.Float32)
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("batch of %d frames to %s: %w", n, s.run.Device(), err)
		}
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	// what datanode.ToBatch gives, with the tensor built by the caller
	batch := map[string]any{datanode.KeyCube: cube, datanode.KeyClassIDs: []int32(nil), datanode.KeyWavelengths: wl,
		datanode.KeyFrameIDs: ids, datanode.KeyShape: [4]int{n, h, w, c}}
	sc.SetGradEnabled(false)
	ctx := &nodes.Context{Stage: nodes.StageInference, Scope: sc, Device: s.run.Device()}
	o, err := s.run.Pipeline.Run(ctx, batch, nodes.RunOptions{})
	if err != nil {
		return nil, err
	}
	st, err := o.Tensor(s.scoresNode, s.scoresPort)
	if err != nil {
		return nil, err
	}
	raw := &rawScores{n: n, h: h, w: w}
	if raw.scores, err = st.Float32s(); err != nil {
		return nil, err
	}
	if len(raw.scores) != n*h*w {
		return nil, fmt.Errorf("%s.%s: %d values for %d frames of %d×%d", s.scoresNode, s.scoresPort, len(raw.scores), n, h, w)
	}
	if s.decNode != "" {
		if dt, err := o.Tensor(s.decNode, s.decPort); err == nil {
			if raw.dec, err = dt.Bools(); err != nil {
				return nil, err
			}
			if len(raw.dec) != n*h*w {
				return nil, fmt.Errorf("%s.%s: %d values for %d frames of %d×%d", s.decNode, s.decPort, len(raw.dec), n, h, w)
			}
		}
	}
	// the image score: the top-k mean of each frame's map (TwoStageBinaryDecider.ImageScores)
	sc.NoGrad(func() {
		x := sc.Reshape(st, int64(n), int64(h), int64(w), -1)
		raw.img, err = (&decide.TwoStageBinaryDecider{TopKFraction: s.Rule.TopKFraction}).ImageScores(sc, x).Float32s()
	})
	if err == nil {
		err = sc.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("image scores: %w", err)
	}
	if len(raw.img) != n {
		return nil, fmt.Errorf("image scores: %d for %d frames", len(raw.img), n)
	}
	return raw, nil
}

// results makes each frame's Result (decision, anomaly pixels) from a forward's outputs.
func (s *Scorer) results(raw *rawScores) ([]Result, error) {
	n := raw.h * raw.w
	thr, pixThr := float32(s.Rule.Threshold), float32(s.Rule.PixelThreshold)
	out := make([]Result, raw.n)
	for i := range out {
		r := Result{H: raw.h, W: raw.w, Scores: raw.scores[i*n : (i+1)*n : (i+1)*n]}
		if j := firstNonFinite(r.Scores); j >= 0 {
			bad := 0
			for _, v := range r.Scores[j:] {
				if x := float64(v); math.IsNaN(x) || math.IsInf(x, 0) {
					bad++
				}
			}
			return nil, fmt.Errorf("%d of %d anomaly scores are NaN or infinite (the inputs were finite)", bad, n)
		}
		if raw.dec != nil {
			r.Decisions = raw.dec[i*n : (i+1)*n : (i+1)*n]
		}
		r.ImageScore = float64(raw.img[i])
		r.Decision = raw.img[i] >= thr // compared in float32, as the decider's gate
		if r.Decision {
			switch {
			case !math.IsNaN(s.Rule.PixelThreshold):
				for _, v := range r.Scores {
					if v >= pixThr {
						r.AnomalyPixels++
					}
				}
			case r.Decisions != nil:
				for _, v := range r.Decisions {
					if v {
						r.AnomalyPixels++
					}
				}
			}
		}
		out[i] = r
	}
	return out, nil
}
