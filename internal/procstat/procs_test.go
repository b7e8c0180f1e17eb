package procstat

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestChildrenAndAlive: a real child (sleep) is listed among this process's children with
// the parent, group and start time the kernel reports for it (independent check: the pid
// exec returned, our own pid and group); after SIGKILL it is no longer alive, as a zombie
// before it is reaped and after; a Proc with another start time is not alive.
func TestChildrenAndAlive(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Skip("no sleep(1): ", err)
	}
	defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(kids, func(p Proc) bool { return p.PID == c.Process.Pid })
	if i < 0 {
		t.Fatalf("pid %d not among the children %v", c.Process.Pid, kids)
	}
	p := kids[i]
	st, err := ReadStat(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getpid() || st.PGRP != syscall.Getpgrp() || st.Start != p.Start || p.Start == 0 {
		t.Fatalf("stat %+v: want parent %d, group %d, start %d", st, os.Getpid(), syscall.Getpgrp(), p.Start)
	}
	if !p.Alive() {
		t.Fatal("a sleeping child is not alive")
	}
	if (Proc{PID: p.PID, Start: p.Start + 1}).Alive() {
		t.Fatal("a Proc with another start time (a reused pid) counts as alive")
	}
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("still alive 10 s after SIGKILL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := ReadStat(p.PID); err != nil || st.State != 'Z' {
		t.Fatalf("not yet reaped: want a zombie, got %+v, %v", st, err)
	}
	_ = c.Wait()
	if p.Alive() {
		t.Fatal("alive after it was reaped")
	}
}
