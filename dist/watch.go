package dist

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// EnvLauncherFD tells a worker started by Launch which of its descriptors is the read end
// of the launcher's lifeline: a pipe whose only write end the launcher holds, so that the
// kernel closes it, and the worker reads end of file, when the launcher dies (SIGKILL
// included).
const EnvLauncherFD = "SPECTRACLIP_LAUNCHER_FD"

// WatchLauncher makes this process, a worker of Launch, SIGKILL itself as soon as its
// launcher is gone: the same end as the parent-death signal, without its caveats (it is
// tied to the launcher's thread and to Linux). Killed, not stopped cleanly: its output went
// to the launcher, and nothing may write the run directory once the launch is over (a
// checkpoint is always complete or absent, and the run resumes from the last complete one).
// The variable is removed from the environment (it is no config key, and no child of the
// worker watches the pipe). Without EnvLauncherFD it does nothing; a value that is not a
// pipe's descriptor is a one-line error.
func WatchLauncher() error {
	v, ok := os.LookupEnv(EnvLauncherFD)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(EnvLauncherFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q: not a descriptor above 2 (the data-parallel launcher sets it)", EnvLauncherFD, v)
	}
	// checked before an *os.File owns it: a file's finalizer would close another's descriptor
	if !isPipe(fd) {
		return fmt.Errorf("%s=%d: descriptor %d is not the launcher's pipe (the data-parallel launcher sets it)", EnvLauncherFD, fd, fd)
	}
	closeOnExec(fd)
	f := os.NewFile(uintptr(fd), "the launcher's lifeline")
	go func() {
		b := make([]byte, 64)
		for {
			_, err := f.Read(b) // the launcher never writes: this returns at its death
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return // not the pipe any more: the parent-death signal still stands
			}
		}
		p, _ := os.FindProcess(os.Getpid())
		_ = p.Kill()
		select {} // the signal is on its way
	}()
	return nil
}
