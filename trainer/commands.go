package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/nodes/detect"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer/report"
)

// OpenRun reopens a finished run: its resolved config, its data and its saved pipeline
// (with the evaluated weights).
func OpenRun(dir string, log *logrus.Logger) (*Run, error) {
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	cfg, _, err := LoadConfig(LoadOptions{File: filepath.Join(dir, "config.yaml")})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	if err := SetThreads(cfg.Training.Threads); err != nil {
		return nil, err
	}
	if err := torch.SetCachingAllocator(true); err != nil {
		return nil, err
	}
	dev, err := torch.ParseDevice(cfg.Training.Device)
	if err != nil {
		return nil, err
	}
	reg := nodes.NewRegistry()
	if err := loadPlugins(reg, cfg); err != nil {
		return nil, err
	}
	// LibTorch's loader would block forever on a FIFO: only regular files are loaded.
	for _, f := range []string{"pipeline.yaml", "pipeline.weights.pt"} {
		if p := filepath.Join(dir, f); fileExists(p) {
			if err := dataset.CheckRegular(p, "run "+dir+":"); err != nil {
				return nil, err
			}
		}
	}
	p, err := nodes.Load(filepath.Join(dir, "pipeline.yaml"), reg, dev)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	r := &Run{Cfg: cfg, Dir: dir, Device: dev, Pipeline: p, Registry: reg, Log: log}
	return r, nil
}

func (r *Run) openData() error {
	ds, masks, err := openData(r.Cfg, r.Log)
	if err != nil {
		return err
	}
	r.Data, r.pixelMasks = ds, masks
	return nil
}

// EvalRun evaluates a finished run's pipeline on a split.
func EvalRun(dir, split string, log *logrus.Logger) (Metrics, error) {
	if split != "val" && split != "test" {
		return nil, fmt.Errorf("--split %q (allowed: val, test)", split)
	}
	r, err := OpenRun(dir, log)
	if err != nil {
		return nil, err
	}
	defer r.Pipeline.Close()
	if err := r.openData(); err != nil {
		return nil, err
	}
	st := nodes.StageTest
	if split == "val" {
		st = nodes.StageVal
	}
	ev, err := r.Evaluate(split, st, 0)
	if err != nil {
		return nil, err
	}
	return ev.Metrics, nil
}

// Calibration is the F1-optimal absolute pixel threshold found on the validation split.
// Without anomaly pixels in the validation split there is no such threshold: PixelThreshold
// is NaN (null in JSON) and Note says why.
type Calibration struct {
	PixelThreshold Float   `json:"pixel_threshold"`
	F1             Float   `json:"f1_at_threshold"`
	Note           string  `json:"note,omitempty"`
	Current        Metrics `json:"current_decider_metrics"`
	File           string  `json:"file"`
}

// Calibrate finds the F1-optimal score threshold on the validation split and writes it to
// RUN/calibration.json (use it as the TwoStage decider's pixel_threshold).
func Calibrate(dir string, log *logrus.Logger) (*Calibration, error) {
	r, err := OpenRun(dir, log)
	if err != nil {
		return nil, err
	}
	defer r.Pipeline.Close()
	if err := r.openData(); err != nil {
		return nil, err
	}
	ev, err := r.Evaluate("val", nodes.StageVal, 0)
	if err != nil {
		return nil, err
	}
	thr, f1 := ev.Acc.BestF1Threshold()
	c := &Calibration{PixelThreshold: Float(thr), F1: Float(f1), Current: ev.Metrics, File: filepath.Join(dir, "calibration.json")}
	if math.IsNaN(thr) {
		c.Note = "undefined (no anomaly pixels in the validation split)"
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	return c, nodes.WriteFileAtomic(c.File, b)
}

// SceneResult is what `spectraclip detect` reports.
type SceneResult struct {
	Input     string `json:"input"`
	Detector  string `json:"detector"`
	H         int    `json:"height"`
	W         int    `json:"width"`
	C         int    `json:"bands"`
	HasTruth  bool   `json:"has_ground_truth"`
	Anomalies int    `json:"anomaly_pixels"`
	AUROC     Float  `json:"pixel_roc_auc"` // NaN (null) when undefined
	// AUROCNote says why AUROC is undefined ("undefined (no anomaly pixels)"); empty otherwise.
	AUROCNote string  `json:"pixel_roc_auc_note,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// DetectScene runs global RX on a whole scene and, with ground truth, its pixel ROC AUC.
func DetectScene(path, cubeVar, gtVar string) (*SceneResult, error) {
	cube, gt, err := dataset.LoadScene(path, dataset.SceneOptions{CubeVar: cubeVar, GTVar: gtVar})
	if err != nil {
		return nil, err
	}
	if row, col, band, v, bad := firstNonFinite(cube); bad {
		return nil, fmt.Errorf("%s: value %v (NaN/Inf) at row %d, column %d, band %d: RX needs finite values (mask or replace them first)", path, v, row, col, band)
	}
	t0 := time.Now()
	scores, err := detect.RX(cube.Data, cube.H, cube.W, cube.C)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := &SceneResult{Input: path, Detector: "rx", H: cube.H, W: cube.W, C: cube.C, Seconds: time.Since(t0).Seconds(), AUROC: Float(math.NaN())}
	if gt != nil {
		labels := make([]bool, len(gt.IDs))
		for i, v := range gt.IDs {
			labels[i] = v != 0
			if labels[i] {
				res.Anomalies++
			}
		}
		res.HasTruth = true
		switch res.Anomalies {
		case 0:
			res.AUROCNote = "undefined (no anomaly pixels)"
		case len(labels):
			res.AUROCNote = "undefined (no normal pixels)"
		default:
			res.AUROC = Float(metriccore.ExactAUROC(scores, labels))
		}
	}
	return res, nil
}

// InferOptions adjust Infer.
type InferOptions struct {
	// NaNPolicy says what a NaN or ±Inf input value does: "error" (the default) fails naming
	// the file and the value's position, "zero" replaces it with 0. For a dataset directory
	// its own nan_policy applies unless this is set.
	NaNPolicy string
}

// Infer runs a finished run's pipeline (inference stage) over ENVI cubes (a header, a folder
// of headers) or a dataset directory, writing per frame a score heatmap PNG, a decision
// mask PNG, the scores and decisions as (H, W) .npy arrays, and one results.json.
func Infer(dir, input, out string, log *logrus.Logger) (int, error) {
	return InferWith(dir, input, out, InferOptions{}, log)
}

// InferWith is Infer with options. Inputs are checked for NaN/Inf as in training, and a
// frame whose scores are not all finite is an error, never a written result.
func InferWith(dir, input, out string, o InferOptions, log *logrus.Logger) (int, error) {
	switch o.NaNPolicy {
	case "", string(dataset.NaNError), string(dataset.NaNZero):
	default:
		return 0, fmt.Errorf("--nan-policy %q (allowed: error, zero)", o.NaNPolicy)
	}
	r, err := OpenRun(dir, log)
	if err != nil {
		return 0, err
	}
	defer r.Pipeline.Close()
	cubes, err := inferInputs(input, dataset.NaNPolicy(o.NaNPolicy))
	if err != nil {
		return 0, err
	}
	// Each frame's maps are written as soon as it is scored, into a staging folder beside
	// --out, so memory holds one frame at a time; the folder is published only when every
	// input was read, checked and scored: a bad input (a file that cannot be read, the wrong
	// band count, NaN) leaves no output behind.
	made, err := makeDir(filepath.Dir(filepath.Clean(out)))
	if err != nil {
		return 0, fmt.Errorf("--out %s: %w", out, err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(out)), "."+filepath.Base(filepath.Clean(out))+".partial-")
	if err != nil {
		made.undo()
		return 0, fmt.Errorf("--out %s: %w", out, err)
	}
	fail := func(err error) (int, error) {
		_ = os.RemoveAll(stage)
		made.undo()
		return 0, err
	}
	var results []frameOut
	s := torch.NewScope()
	defer s.Close()
	for _, ic := range cubes {
		s.Reset()
		c, err := ic.load()
		if err != nil {
			return fail(err)
		}
		b := &dataset.Batch{Cube: c.Data, B: 1, H: c.H, W: c.W, C: c.C, Wavelengths: c.Wavelengths, FrameIDs: []int{0}}
		batch, err := datanode.ToBatch(s, b, r.Device, nil)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", ic.path, err))
		}
		s.SetGradEnabled(false)
		ctx := &nodes.Context{Stage: nodes.StageInference, Scope: s, Device: r.Device}
		o, err := r.Pipeline.Run(ctx, batch, nodes.RunOptions{})
		if err != nil {
			return fail(fmt.Errorf("%s (%d bands): %w", ic.path, c.C, err))
		}
		sn, sp := portRef(r.Cfg.Evaluation.Scores)
		st, err := o.Tensor(sn, sp)
		if err != nil {
			return fail(err)
		}
		scores, err := st.Float32s()
		if err != nil {
			return fail(err)
		}
		if bad := countNonFinite(scores); bad > 0 {
			return fail(fmt.Errorf("%s: %d of %d anomaly scores are NaN or infinite (the inputs were finite): nothing written", ic.path, bad, len(scores)))
		}
		fo := frameOut{Name: ic.name, Source: ic.path, Height: c.H, Width: c.W}
		var dec []bool
		if dn, dp := portRef(r.Cfg.Evaluation.Decisions); dn != "" {
			if dt, err := o.Tensor(dn, dp); err == nil {
				if d, err := dt.Bools(); err == nil {
					dec = d
				}
			}
		}
		for _, n := range r.Pipeline.Nodes() {
			if v, ok := o.Get(n.Name(), "anomaly_score"); ok {
				if t, ok := v.(*torch.Tensor); ok {
					fo.AnomalyScore, _ = t.Item()
				}
			}
		}
		if err := writeInferFrame(stage, &fo, scores, dec); err != nil {
			return fail(err)
		}
		results = append(results, fo)
	}
	b, err := json.MarshalIndent(map[string]any{"run": dir, "detector": r.detectorName(), "frames": results}, "", "  ")
	if err != nil {
		return fail(fmt.Errorf("%s: %w", filepath.Join(out, "results.json"), err))
	}
	if err := nodes.WriteFileAtomic(filepath.Join(stage, "results.json"), b); err != nil {
		return fail(err)
	}
	if err := publish(stage, out, made); err != nil {
		return fail(err)
	}
	return len(results), nil
}

// writeInferFrame writes one frame's maps (PNG heat map and decisions, (H, W) .npy scores and
// decisions) into dir and names them in fo.
func writeInferFrame(dir string, fo *frameOut, scores []float32, dec []bool) error {
	h, w := fo.Height, fo.Width
	if dec != nil {
		nf := 0
		u8 := make([]uint8, len(dec))
		for i, v := range dec {
			if v {
				nf++
				u8[i] = 1
			}
		}
		fo.Flagged = float64(nf) / float64(len(dec))
		if img, err := report.MaskImage(dec, h, w); err == nil {
			fo.Decisions = fo.Name + "_decisions.png"
			if err := report.SavePNG(filepath.Join(dir, fo.Decisions), img); err != nil {
				return err
			}
		}
		fo.DecisionsNPY = fo.Name + "_decisions.npy"
		if err := writeNPY(filepath.Join(dir, fo.DecisionsNPY), u8, h, w); err != nil {
			return err
		}
	}
	hm, err := report.Heatmap(scores, h, w)
	if err != nil {
		return err
	}
	fo.Heatmap = fo.Name + "_scores.png"
	if err := report.SavePNG(filepath.Join(dir, fo.Heatmap), hm); err != nil {
		return err
	}
	fo.Scores = fo.Name + "_scores.npy"
	return writeNPY(filepath.Join(dir, fo.Scores), scores, h, w)
}

// publish moves a finished staging folder to out: in one rename when out does not exist, else
// file by file into it with results.json last (noting each new path in made, so that a
// failure part-way removes what this command added and nothing else).
func publish(stage, out string, made *madePaths) error {
	if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(stage, out); err != nil {
			return fmt.Errorf("--out %s: %w", out, err)
		}
		return nil
	}
	ents, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[j].Name() == "results.json" && ents[i].Name() != "results.json" })
	for _, e := range ents {
		dst := filepath.Join(out, e.Name())
		made.note(dst)
		if err := os.Rename(filepath.Join(stage, e.Name()), dst); err != nil {
			return fmt.Errorf("--out %s: %w", out, err)
		}
	}
	return os.Remove(stage)
}

// frameOut is one frame of infer's results.json.
type frameOut struct {
	Name         string  `json:"name"`
	Source       string  `json:"source"`
	Height       int     `json:"height"`
	Width        int     `json:"width"`
	AnomalyScore float64 `json:"anomaly_score"`
	Flagged      float64 `json:"flagged_fraction"`
	Heatmap      string  `json:"heatmap_png"`
	Decisions    string  `json:"decisions_png,omitempty"`
	DecisionsNPY string  `json:"decisions_npy,omitempty"`
	Scores       string  `json:"scores_npy"`
}

type inferCube struct {
	name, path string
	load       func() (*dataset.Cube, error)
}

// inferInputs lists the cubes of --input. Each loader applies the NaN policy: policy, or
// for a dataset directory its own nan_policy when policy is empty, else "error".
func inferInputs(input string, policy dataset.NaNPolicy) ([]inferCube, error) {
	st, err := os.Stat(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	checked := func(path string, load func() (*dataset.Cube, error)) func() (*dataset.Cube, error) {
		return func() (*dataset.Cube, error) {
			c, err := load()
			if err != nil {
				return nil, err
			}
			return c, checkFinite(c, path, policy)
		}
	}
	if !st.IsDir() {
		return []inferCube{{name: strings.TrimSuffix(filepath.Base(input), filepath.Ext(input)), path: input, load: checked(input, func() (*dataset.Cube, error) {
			c, _, err := dataset.LoadScene(input, dataset.SceneOptions{})
			return c, err
		})}}, nil
	}
	if _, err := os.Stat(filepath.Join(input, dataset.ManifestName)); err == nil {
		ds, err := dataset.OpenWith(input, dataset.Options{NaNPolicy: policy})
		if err != nil {
			return nil, err
		}
		var out []inferCube
		for _, f := range ds.Frames {
			id, path := f.ID, f.Path
			out = append(out, inferCube{name: fmt.Sprintf("frame_%03d", id), path: path, load: func() (*dataset.Cube, error) {
				smp, err := ds.Load(id)
				if err != nil {
					return nil, err
				}
				c := &dataset.Cube{H: smp.H, W: smp.W, C: smp.C, Data: smp.Cube, Wavelengths: ds.Wavelengths, Source: path}
				return c, checkFinite(c, path, ds.NaNPolicy)
			}})
		}
		return out, nil
	}
	hdrs, _ := filepath.Glob(filepath.Join(input, "*.hdr"))
	sort.Strings(hdrs)
	if len(hdrs) == 0 {
		return nil, fmt.Errorf("--input %s: no dataset.yaml and no ENVI headers (*.hdr) found", input)
	}
	var out []inferCube
	for _, h := range hdrs {
		h := h
		out = append(out, inferCube{name: strings.TrimSuffix(filepath.Base(h), ".hdr"), path: h, load: checked(h, func() (*dataset.Cube, error) { return dataset.ReadENVI(h) })})
	}
	return out, nil
}

// checkFinite applies a NaN policy to a cube: "zero" replaces NaN and ±Inf with 0, anything
// else fails at the first such value, naming the file and its position.
func checkFinite(c *dataset.Cube, path string, policy dataset.NaNPolicy) error {
	for i, v := range c.Data {
		f := float64(v)
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			continue
		}
		if policy == dataset.NaNZero {
			c.Data[i] = 0
			continue
		}
		px, b := i/c.C, i%c.C
		return fmt.Errorf("%s: value %v (NaN/Inf) at row %d, column %d, band %d; use --nan-policy zero (or nan_policy: zero in a dataset.yaml) to replace NaN/Inf with 0", path, v, px/c.W, px%c.W, b)
	}
	return nil
}

// firstNonFinite finds the first NaN or ±Inf of a cube.
func firstNonFinite(c *dataset.Cube) (row, col, band int, v float32, found bool) {
	for i, x := range c.Data {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			px := i / c.C
			return px / c.W, px % c.W, i % c.C, x, true
		}
	}
	return 0, 0, 0, 0, false
}

func countNonFinite(v []float32) int {
	n := 0
	for _, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			n++
		}
	}
	return n
}

// writeNPY writes a float32 or uint8 map as an (h, w) .npy array, atomically.
func writeNPY(path string, v any, h, w int) error {
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, v, h, w); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := nodes.WriteFileAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// OpenData opens a reopened run's data (data.root or data.scene with its pixel masks).
func (r *Run) OpenData() error { return r.openData() }
