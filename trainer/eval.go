package trainer

import (
	"fmt"
	"math"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/run"
)

// ReopenOptions adjust Reopen.
type ReopenOptions struct {
	Data      DataSource  // nil: data.root (a data.scene run needs package scene's source)
	Placement run.Request // --device / --threads over the run's own config
	Log       *logrus.Logger
}

// Reopen reopens a finished run (run.Open) with its data, to evaluate its saved pipeline.
// Close releases it.
func Reopen(dir string, o ReopenOptions) (*Evaluator, error) {
	log := orQuiet(o.Log)
	a, err := run.Open(dir, run.OpenOptions{Placement: o.Placement})
	if err != nil {
		return nil, err
	}
	return withData(a, o, log)
}

// withData makes an evaluator of a reopened run with its data opened (the artefact is
// closed on failure).
func withData(a *run.Artefact, o ReopenOptions, log *logrus.Logger) (*Evaluator, error) {
	var err error
	e := &Evaluator{Cfg: a.Cfg, Dir: a.Dir, Device: a.Device(), Pipeline: a.Pipeline, Registry: a.Registry, Log: log}
	if e.Data, e.pixelMasks, err = openData(a.Cfg, o.Data, log); err != nil {
		a.Close()
		return nil, err
	}
	return e, nil
}

// EvalRun evaluates a finished run's pipeline on a split ("val" or "test").
func EvalRun(dir, split string, o ReopenOptions) (config.Metrics, error) {
	if split != "val" && split != "test" {
		return nil, fmt.Errorf("--split %q (allowed: val, test)", split)
	}
	e, err := Reopen(dir, o)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	st := nodes.StageTest
	if split == "val" {
		st = nodes.StageVal
	}
	ev, err := e.Evaluate(split, st, 0)
	if err != nil {
		return nil, err
	}
	return ev.Metrics, nil
}

// Calibrate finds the F1-optimal score threshold on the validation split and writes it to
// RUN/calibration.json (use it as the TwoStage decider's pixel_threshold).
func Calibrate(dir string, o ReopenOptions) (*run.Calibration, error) {
	a, err := run.Open(dir, run.OpenOptions{Placement: o.Placement})
	if err != nil {
		return nil, err
	}
	// calibration.json is written into the run directory: take its lock like every writer
	// (once the directory is known to be a run), so a calibrate never races a train or
	// another calibrate in the same run.
	lock, err := run.Acquire(dir)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	defer lock.Release()
	log := orQuiet(o.Log)
	e, err := withData(a, o, log)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	ev, err := e.Evaluate("val", nodes.StageVal, 0)
	if err != nil {
		return nil, err
	}
	thr, f1 := ev.Acc.BestF1Threshold()
	c := &run.Calibration{PixelThreshold: config.Float(thr), F1: config.Float(f1), Current: ev.Metrics}
	if math.IsNaN(thr) {
		c.Note = "undefined (no anomaly pixels in the validation split)"
	}
	return c, run.WriteCalibration(dir, c)
}
