package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/spectraclip/spectraclip/config"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/nodes/detect"
	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// OpenRun reopens a finished run: its resolved config, its data and its saved pipeline
// (with the evaluated weights).
func OpenRun(dir string, log *logrus.Logger) (*Run, error) {
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	cfg, _, err := config.LoadConfig(config.LoadOptions{File: filepath.Join(dir, "config.yaml")})
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

// OpenDataFrom is OpenData with a scene already loaded: open (Options.Scene) opens
// data.scene; other data opens as in OpenData.
func (r *Run) OpenDataFrom(open SceneOpener) error {
	if open == nil || r.Cfg.Data.Scene == nil {
		return r.openData()
	}
	ds, masks, err := open(r.Cfg)
	if err != nil {
		return err
	}
	r.Data, r.pixelMasks = ds, masks
	return nil
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
func EvalRun(dir, split string, log *logrus.Logger) (config.Metrics, error) {
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
	PixelThreshold config.Float   `json:"pixel_threshold"`
	F1             config.Float   `json:"f1_at_threshold"`
	Note           string         `json:"note,omitempty"`
	Current        config.Metrics `json:"current_decider_metrics"`
	File           string         `json:"file"`
}

// Calibrate finds the F1-optimal score threshold on the validation split and writes it to
// RUN/calibration.json (use it as the TwoStage decider's pixel_threshold).
func Calibrate(dir string, log *logrus.Logger) (*Calibration, error) {
	r, err := OpenRun(dir, log)
	if err != nil {
		return nil, err
	}
	// calibration.json is written into the run directory: take its lock like every writer
	// (once the directory is known to be a run), so a calibrate never races a train or
	// another calibrate in the same run.
	lock, err := run.Acquire(dir)
	if err != nil {
		r.Pipeline.Close()
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer lock.Release()
	defer r.Pipeline.Close()
	if err := r.openData(); err != nil {
		return nil, err
	}
	ev, err := r.Evaluate("val", nodes.StageVal, 0)
	if err != nil {
		return nil, err
	}
	thr, f1 := ev.Acc.BestF1Threshold()
	c := &Calibration{PixelThreshold: config.Float(thr), F1: config.Float(f1), Current: ev.Metrics, File: filepath.Join(dir, "calibration.json")}
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
	Input     string       `json:"input"`
	Detector  string       `json:"detector"`
	H         int          `json:"height"`
	W         int          `json:"width"`
	C         int          `json:"bands"`
	HasTruth  bool         `json:"has_ground_truth"`
	Anomalies int          `json:"anomaly_pixels"`
	AUROC     config.Float `json:"pixel_roc_auc"` // NaN (null) when undefined
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
	res := &SceneResult{Input: path, Detector: "rx", H: cube.H, W: cube.W, C: cube.C, Seconds: time.Since(t0).Seconds(), AUROC: config.Float(math.NaN())}
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
			res.AUROC = config.Float(metriccore.ExactAUROC(scores, labels))
		}
	}
	return res, nil
}

// firstNonFinite finds the first NaN or ±Inf of a cube.
func firstNonFinite(c *dataset.Cube) (row, col, band int, v float32, found bool) {
	i := dataset.FirstNonFinite(c.Data)
	if i < 0 {
		return 0, 0, 0, 0, false
	}
	px := i / c.C
	return px / c.W, px % c.W, i % c.C, c.Data[i], true
}

// OpenData opens a reopened run's data (data.root or data.scene with its pixel masks).
func (r *Run) OpenData() error { return r.openData() }
