package trainer

// What package infer needs from a reopened run, exported without moving run.go's helpers.

// OutputDir records what a command created for its output directory, so that a failure
// removes exactly that (see makeDir).
type OutputDir struct{ m *madePaths }

// MakeOutputDir creates dir and its missing parents, noting which ones this process made.
func MakeOutputDir(dir string) (*OutputDir, error) {
	m, err := makeDir(dir)
	if err != nil {
		return nil, err
	}
	return &OutputDir{m: m}, nil
}

// Note records paths about to be written inside an output directory that existed before.
func (d *OutputDir) Note(paths ...string) {
	if d != nil {
		d.m.note(paths...)
	}
}

// Undo removes what was made. It is safe on nil.
func (d *OutputDir) Undo() {
	if d != nil {
		d.m.undo()
	}
}
