// Package procattr starts child processes that die with the process that starts them.
package procattr

import "syscall"

// DieWithParent returns attributes that make the kernel SIGKILL a child when the thread
// that started it exits (Pdeathsig), as it does when this process dies, SIGKILL included.
// The caller keeps the starting goroutine on its thread (runtime.LockOSThread) from
// exec.Cmd.Start until the child has been waited for: the Go runtime may otherwise end that
// thread while the child still runs, and the child would die with it.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
