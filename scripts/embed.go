// Package scripts carries the Python detector exporter inside the Go binary, so that
// `spectraclip export-detector --aoti` works from an installed binary without the source
// tree: it writes the files to a temporary folder and runs them with the user's Python.
package scripts

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed export_adaclip.py adaclip_model.py builtin_detector.py
var exporter embed.FS

// ExporterFiles are the embedded files; Exporter is the one to run.
var ExporterFiles = []string{"export_adaclip.py", "adaclip_model.py", "builtin_detector.py"}

// Exporter is the script that writes detectors (TorchScript, or .pt2 with --aoti).
const Exporter = "export_adaclip.py"

// WriteExporter writes the exporter and the modules it imports into dir and returns the
// path of the script to run.
func WriteExporter(dir string) (string, error) {
	for _, name := range ExporterFiles {
		b, err := exporter.ReadFile(name)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", fmt.Errorf("writing the exporter: %w", err)
		}
	}
	return filepath.Join(dir, Exporter), nil
}
