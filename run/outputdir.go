package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// OutputDir records what a command created, so that it can remove exactly that when it
// fails: the top-most missing directory of its output directory, or (in an output directory
// that existed) the files it noted before writing them.
type OutputDir struct {
	dir   string
	top   string   // "" when the output directory existed
	files []string // noted inside an existing output directory
}

// MakeOutputDir creates dir (and its missing parents) and notes what it made: only directories
// this process's own mkdir created count (another process may create the same ones).
func MakeOutputDir(dir string) (*OutputDir, error) {
	m := &OutputDir{dir: dir}
	var missing []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
		up := filepath.Dir(d)
		if up == d {
			break
		}
		d = up
	}
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], 0o755)
		if err == nil {
			if m.top == "" {
				m.top = missing[i]
			}
			continue
		}
		if fi, serr := os.Stat(missing[i]); errors.Is(err, fs.ErrExist) && serr == nil && fi.IsDir() {
			continue // made by another process meanwhile
		}
		m.Undo()
		return nil, err
	}
	return m, nil
}

// MakeRunDir creates a fresh run's directory.
func MakeRunDir(dir string) (*OutputDir, error) {
	m, err := MakeOutputDir(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	return m, nil
}

// Note records the paths that do not exist yet (about to be written) inside an output
// directory that existed; in a directory this process created, everything goes anyway.
func (m *OutputDir) Note(paths ...string) {
	if m == nil || m.top != "" {
		return
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil && !slices.Contains(m.files, p) {
			m.files = append(m.files, p)
		}
	}
}

// NoteRunFiles notes the run files that are absent just before a fresh run writes them.
func (m *OutputDir) NoteRunFiles() {
	if m == nil {
		return
	}
	for _, f := range []string{ConfigFile, ResumeFile, CheckpointsDir, TBDir, MetricsFile, PipelineFile, WeightsFile, ReportFile, ReportDir} {
		m.Note(filepath.Join(m.dir, f))
	}
}

// Undo removes what was made. It is safe on nil.
func (m *OutputDir) Undo() {
	if m == nil {
		return
	}
	if m.top != "" {
		_ = os.RemoveAll(m.top)
		return
	}
	for _, f := range m.files {
		_ = os.RemoveAll(f)
	}
}
