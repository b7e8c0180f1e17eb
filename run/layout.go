package run

import (
	"os"
	"path/filepath"
)

// The layout of a run directory: every file name a run holds, in one place.
//
//	RUN/config.yaml            the resolved trainrun (ConfigFile)
//	RUN/pipeline.yaml          the saved pipeline, with RUN/pipeline.weights.pt beside it
//	RUN/metrics.json           the finished run's results (MetricsFile, Result)
//	RUN/calibration.json       written by `spectraclip calibrate` (CalibrationFile)
//	RUN/resume.json            one record per resume (ResumeFile)
//	RUN/report.md, RUN/*.png   the report
//	RUN/checkpoints/NAME/      checkpoints: weights.pt, optim.pt, state.json, manifest.json
//	RUN/tb/                    TensorBoard event files
//	RUN/.lock                  the writer's lock (LockName)
const (
	ConfigFile      = "config.yaml"
	PipelineFile    = "pipeline.yaml"
	WeightsFile     = "pipeline.weights.pt" // nodes.WeightsPath(PipelineFile)
	MetricsFile     = "metrics.json"
	CalibrationFile = "calibration.json"
	ResumeFile      = "resume.json"
	ReportFile      = "report.md"
	ReportDir       = "report"
	CheckpointsDir  = "checkpoints"
	TBDir           = "tb"

	// LastCheckpoint is the checkpoint a run keeps of its latest epoch (CheckpointsDir/last).
	LastCheckpoint = "last"
	// The files of one checkpoint directory (besides ManifestName).
	CkptWeights = "weights.pt"
	CkptOptim   = "optim.pt"
	CkptState   = "state.json"
)

// Path is the path of a run file (one of the names above) in the run directory dir.
func Path(dir, name string) string { return filepath.Join(dir, name) }

// CheckpointPath is the path of checkpoint name (e.g. LastCheckpoint, "epoch=03") of the run
// in dir.
func CheckpointPath(dir, name string) string { return filepath.Join(dir, CheckpointsDir, name) }

// exists reports whether p exists (whatever it is).
func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Has reports whether the run directory dir holds the run file name.
func Has(dir, name string) bool { return exists(Path(dir, name)) }
