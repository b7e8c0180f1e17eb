package sweep

import "syscall"

// childAttr makes a train process die with the sweep (SIGKILL when the thread that started
// it exits), so a killed sweep leaves no orphan writing into a run directory.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
