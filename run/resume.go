package run

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/nodes"
)

// ResumeDir is the run directory of a checkpoint (RUN/checkpoints/NAME → RUN); out, when
// given, must be that directory.
func ResumeDir(ckpt, out string) (string, error) {
	c := strings.TrimSuffix(strings.TrimSuffix(filepath.Clean(ckpt), ".json"), ".weights.pt")
	dir := filepath.Dir(filepath.Dir(c))
	if filepath.Base(filepath.Dir(c)) != CheckpointsDir {
		return "", fmt.Errorf("--resume %s: want a checkpoint of a run, RUN/checkpoints/NAME (e.g. RUN/checkpoints/last)", ckpt)
	}
	if out != "" {
		a, err1 := filepath.Abs(out)
		b, err2 := filepath.Abs(dir)
		if err1 != nil || err2 != nil || a != b {
			return "", fmt.Errorf("--resume %s is a checkpoint of run %s, not of --out %s", ckpt, dir, out)
		}
	}
	return dir, nil
}

// ResolveResume finds the checkpoint to resume from: the one asked for when it is complete,
// else the most recent complete one (with a note saying so). A checkpoint of the older
// three-file layout (…/last.json, …) is used as it is: it carries no checksums.
func ResolveResume(dir, ckpt string) (string, string, error) {
	c := strings.TrimSuffix(strings.TrimSuffix(filepath.Clean(ckpt), ".json"), ".weights.pt")
	if fi, err := os.Stat(c); (err != nil || !fi.IsDir()) && exists(c+".json") && exists(c+".weights.pt") {
		return c, "checkpoint " + c + " has the older three-file layout without checksums: it cannot be verified", nil
	}
	got, _, note, err := Resolve(c)
	if err != nil {
		return "", "", fmt.Errorf("--resume: %w; nothing to resume in %s: start it again without --resume (a run directory without a complete checkpoint is reused)", err, dir)
	}
	return got, note, nil
}

// Refuse is the part of Restartable that writes nothing: it refuses a directory that
// holds a complete checkpoint or a finished run, or that is not a directory.
func Refuse(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil // created later (a path under a file fails there, naming it)
	}
	if !fi.IsDir() {
		return fmt.Errorf("run directory %s: not a directory", dir)
	}
	ck := Path(dir, CheckpointsDir)
	if cks := Complete(ck); len(cks) > 0 || exists(filepath.Join(ck, LastCheckpoint+".json")) {
		name := filepath.Join(ck, LastCheckpoint)
		if len(cks) > 0 && !exists(name) {
			name = cks[len(cks)-1].Dir
		}
		return fmt.Errorf("run directory %s already holds a run with a complete checkpoint: resume it with --resume %s, or choose another --out", dir, name)
	}
	if exists(Path(dir, MetricsFile)) {
		return fmt.Errorf("run directory %s holds a finished run: choose another --out", dir)
	}
	// Only a directory that a spectraclip run wrote (it takes its lock before writing
	// anything) is started again: a user's own folder holding a config.yaml is not emptied.
	if exists(Path(dir, ConfigFile)) && !exists(Path(dir, LockName)) {
		return fmt.Errorf("run directory %s holds a config.yaml that no spectraclip run wrote (no %s): choose another --out", dir, LockName)
	}
	return nil
}

// Restartable checks that a fresh run may use dir. A directory that holds a complete
// checkpoint or a finished run is refused; one left by a run killed before its first
// complete checkpoint is emptied of that run's files and reused.
func Restartable(dir string, log *logrus.Logger) error {
	if err := Refuse(dir); err != nil {
		return err
	}
	if !exists(Path(dir, ConfigFile)) {
		return nil
	}
	log.WithField("run", dir).Warn("the run directory holds a run that was stopped before its first complete checkpoint: starting it again")
	for _, f := range []string{ConfigFile, ResumeFile, TBDir, CheckpointsDir} {
		if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("run directory %s: %w", dir, err)
		}
	}
	return nil
}

// ResumeRecord is one entry of a run's resume.json.
type ResumeRecord struct {
	Time       string                `json:"time"`
	Checkpoint string                `json:"checkpoint"` // relative to the run directory
	Epoch      int                   `json:"epoch"`      // the last completed epoch of that checkpoint
	Note       string                `json:"note,omitempty"`
	Changes    []config.ConfigChange `json:"changes,omitempty"`
}

// RecordResume appends a record of this resume to the run's resume.json.
func RecordResume(dir, ckpt, note string, epoch int, changes []config.ConfigChange) error {
	p := Path(dir, ResumeFile)
	var recs []ResumeRecord
	if b, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(b, &recs); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	rel, err := filepath.Rel(dir, ckpt)
	if err != nil {
		rel = ckpt
	}
	recs = append(recs, ResumeRecord{Time: time.Now().UTC().Format(time.RFC3339), Checkpoint: filepath.ToSlash(rel), Epoch: epoch, Note: note, Changes: changes})
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nodes.WriteFileAtomic(p, b)
}

// ResumeConfig loads the config of the run a checkpoint belongs to (its config.yaml) with
// the overrides and environment of the resuming command (lo) applied. When lo also names a
// variant or a config file, that config is composed instead and must match the run's. Any
// difference but ResumeSafeKeys is refused; the changes are returned to be recorded.
func ResumeConfig(ckpt, out string, lo config.LoadOptions) (*config.Config, []config.ConfigChange, error) {
	dir, err := ResumeDir(ckpt, out)
	if err != nil {
		return nil, nil, err
	}
	file := Path(dir, ConfigFile)
	if !exists(file) {
		return nil, nil, fmt.Errorf("--resume %s: %s not found: not a run directory", ckpt, file)
	}
	base, _, err := config.LoadConfig(config.LoadOptions{File: file})
	if err != nil {
		return nil, nil, fmt.Errorf("run %s: %w", dir, err)
	}
	if lo.Variant == "" && lo.File == "" {
		lo.File = file
	}
	cfg, _, err := config.LoadConfig(lo)
	if err != nil {
		return nil, nil, fmt.Errorf("resume %s: %w", dir, err)
	}
	changes, err := config.Diff(base, cfg)
	if err != nil {
		return nil, nil, err
	}
	var bad []string
	for _, c := range changes {
		if !slices.Contains(config.ResumeSafeKeys, c.Key) {
			bad = append(bad, fmt.Sprintf("%s from %v to %v", c.Key, c.From, c.To))
		}
	}
	if len(bad) > 0 {
		return nil, nil, fmt.Errorf("resume %s: a resumed run keeps its own config (%s), but this command changes %s (allowed on resume: %s); start a new run to change them", dir, file, strings.Join(bad, ", "), strings.Join(config.ResumeSafeKeys, ", "))
	}
	return cfg, changes, nil
}
