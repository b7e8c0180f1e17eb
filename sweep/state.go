package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spectraclip/spectraclip/nodes"
)

// Status is where a point stands.
type Status string

// The statuses of a point. A point without a state file is pending; a point found
// "running" by a later sweep was interrupted (its process died with the sweep).
const (
	Pending     Status = "pending"
	Running     Status = "running"
	Done        Status = "done"
	Failed      Status = "failed"
	Interrupted Status = "interrupted"
)

// State is one point's record, in SWEEP/state/<id>.json, rewritten atomically at every
// transition.
type State struct {
	Index  int    `json:"index"`
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Attempts counts the train processes started for the point; Completions those that
	// finished successfully (it stays 1 however often the sweep is rerun).
	Attempts    int    `json:"attempts"`
	Completions int    `json:"completions"`
	ExitCode    *int   `json:"exit_code,omitempty"`
	Signal      string `json:"signal,omitempty"`
	Error       string `json:"error,omitempty"`
	// Command reproduces the point from scratch (`cd WORKDIR && ... spectraclip train ...`);
	// Argv is what the last attempt ran (with --resume when it resumed).
	Command   string   `json:"command"`
	Argv      []string `json:"argv,omitempty"`
	Resumed   string   `json:"resumed_from,omitempty"`
	Started   string   `json:"started,omitempty"`
	Finished  string   `json:"finished,omitempty"`
	Seconds   float64  `json:"seconds,omitempty"`
	Host      string   `json:"host,omitempty"`
	PID       int      `json:"pid,omitempty"`
	Worker    int      `json:"worker"`
	GPU       string   `json:"gpu,omitempty"`
	Threads   int      `json:"threads,omitempty"`
	SlurmTask string   `json:"slurm_task,omitempty"`
	Log       string   `json:"log,omitempty"`
}

func statePath(dir, id string) string { return filepath.Join(dir, "state", id+".json") }

// LoadState reads a point's state; a missing file is a pending point.
func LoadState(dir string, p *Point) (*State, error) {
	b, err := os.ReadFile(statePath(dir, p.ID))
	if errors.Is(err, os.ErrNotExist) {
		return &State{Index: p.Index, ID: p.ID, Status: Pending}, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir, p.ID), err)
	}
	if s.ID != p.ID {
		return nil, fmt.Errorf("%s: holds point %q", statePath(dir, p.ID), s.ID)
	}
	s.Index = p.Index
	return &s, nil
}

// save writes the state atomically (temporary file, fsync, rename).
func (s *State) save(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return nodes.WriteFileAtomic(statePath(dir, s.ID), b)
}

// fileLock is an exclusive flock, released when its holder dies.
type fileLock struct{ f *os.File }

func lockFile(path, what string) (*fileLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", what, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another spectraclip sweep process (pid %s holds %s)", what, strings.TrimSpace(string(b)), path)
		}
		return nil, fmt.Errorf("%s: lock %s: %w", what, path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &fileLock{f: f}, nil
}

func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
