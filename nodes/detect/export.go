package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spectraclip/spectraclip/scripts"
)

// EnvPython names the Python that compiles detector packages (it needs torch 2.6 or newer,
// the same version as the LibTorch that will run the package); "" = python3 on PATH.
const EnvPython = "SPECTRACLIP_PYTHON"

// CompileOptions configure CompileBuiltin.
type CompileOptions struct {
	Out       string // the package to write, *.pt2
	ImageSize int    // the detector's input side (0 = the built-in default)
	Device    string // "cpu" or "cuda": packages run only on the device kind they were compiled for
	MaxBatch  int    // the largest batch the package takes (1..16; 0 = 16)
	Half      bool   // float16 (CUDA only)
	Python    string // the Python with torch ≥ 2.6 ("" = $SPECTRACLIP_PYTHON, else python3)
	Log       io.Writer
}

// CompileBuiltin writes the built-in detector as an AOTInductor package: the TorchScript this
// program generates is rebuilt in eager PyTorch and compiled by the exporter carried in the
// binary (scripts/export_adaclip.py --aoti --builtin-from), which checks the package against
// the TorchScript before it moves it into place.
func CompileBuiltin(o CompileOptions) error {
	if !strings.HasSuffix(o.Out, ".pt2") {
		return fmt.Errorf("--out %s: an AOTInductor package is named *.pt2", o.Out)
	}
	if o.Device == "" {
		o.Device = "cpu"
	}
	if o.Device != "cpu" && o.Device != "cuda" {
		return fmt.Errorf("--device %q: a package is compiled for cpu or cuda", o.Device)
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 16
	}
	if o.MaxBatch < 1 || o.MaxBatch > 16 {
		return fmt.Errorf("--max-batch %d: must be in 1..16", o.MaxBatch)
	}
	py := o.Python
	if py == "" {
		py = os.Getenv(EnvPython)
	}
	if py == "" {
		py = "python3"
	}
	tmp, err := os.MkdirTemp("", "spectraclip-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ts := tmp + "/builtin.pt"
	if err := WriteBuiltin(ts, BuiltinOptions{ImageSize: o.ImageSize}); err != nil {
		return err
	}
	script, err := scripts.WriteExporter(tmp)
	if err != nil {
		return err
	}
	args := []string{script, "--aoti", "--builtin-from", ts, "--out", o.Out, "--device", o.Device, "--max-batch", strconv.Itoa(o.MaxBatch)}
	if o.Half {
		args = append(args, "--half")
	}
	cmd := exec.Command(py, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if o.Log != nil {
		cmd.Stderr = io.MultiWriter(&out, o.Log)
	}
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		last := lines[len(lines)-1]
		if errorsIsNotFound(err) {
			return fmt.Errorf("compiling a package needs Python with torch 2.6 or newer: %s: %v (set --python or %s)", py, err, EnvPython)
		}
		return fmt.Errorf("%s %s: %v: %s", py, scripts.Exporter, err, last)
	}
	return nil
}

// errorsIsNotFound: the Python could not be started (not found, not executable).
func errorsIsNotFound(err error) bool {
	var ee *exec.Error
	return errors.As(err, &ee)
}
