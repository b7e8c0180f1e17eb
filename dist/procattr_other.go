//go:build !linux

package dist

import (
	"errors"
	"syscall"
)

// workerAttr: no parent-death signal or process group here; the workers watch the
// launcher's pipe (WatchLauncher).
func workerAttr(pgid int) *syscall.SysProcAttr { return nil }

func signalGroup(pgid int, sig syscall.Signal) error { return errors.ErrUnsupported }

func closeOnExec(fd int) {}

func isPipe(fd int) bool { return fd > 2 }
