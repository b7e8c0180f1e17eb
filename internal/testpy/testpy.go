// Package testpy names the Python that tests run to compare against an independent
// implementation (numpy, torch.load, the AdaCLIP exporter).
package testpy

import (
	"os"
	"os/exec"
)

// System is Debian's Python, with python3-torch 1.13 and numpy (make deps).
const System = "/usr/bin/python3"

// Python is $PYTHON when it is set (make ... TORCH=pip points it at the project's virtual
// environment, whose torch 2.11 is the LibTorch the shim was built against; the GPU check at
// the GPU machine's PyTorch), resolved on PATH, else System.
func Python() string {
	if p := os.Getenv("PYTHON"); p != "" {
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
		return p
	}
	return System
}
