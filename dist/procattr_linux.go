package dist

import "syscall"

// workerAttr makes a worker die with the launcher: SIGKILL when the thread that started it
// exits (Launch keeps its goroutine on that thread; the pipe of WatchLauncher covers the
// rest), and a process group of the workers' own, led by the first worker (pgid 0: its
// own pid), so that one signal reaches them all and a terminal's Ctrl-C reaches them
// through the launcher, once.
func workerAttr(pgid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Pgid: pgid}
}

// signalGroup sends sig to every process of the group pgid.
func signalGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

// isPipe reports whether fd is an open pipe.
func isPipe(fd int) bool {
	var st syscall.Stat_t
	return syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFIFO
}
