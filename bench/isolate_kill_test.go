package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/internal/procstat"
)

// parentEnv makes TestBenchParentProcess a real bench parent for
// TestIsolatedChildDiesWithParent.
const parentEnv = "SPECTRACLIP_BENCH_TEST_PARENT"

// TestBenchParentProcess is a helper, not a test: in a process started by
// TestIsolatedChildDiesWithParent it runs an isolated bench whose child measures for minutes.
func TestBenchParentProcess(t *testing.T) {
	if os.Getenv(parentEnv) == "" {
		t.Skip("the parent process of TestIsolatedChildDiesWithParent")
	}
	_, err := Run(Options{Variants: []string{"pca"}, Device: "cpu", Batch: 8, H: 256, W: 256, Threads: 1, Iters: MaxIters, Isolate: true})
	t.Fatalf("the bench ended before it was killed: %v", err)
}

// TestIsolatedChildDiesWithParent: an isolated bench's child process dies with its parent.
// A real bench process (this test binary, re-run) starts its child, is SIGKILLed, and the
// child must be gone within 5 s (before: it measured on, 12 minutes of CPU in the field).
func TestIsolatedChildDiesWithParent(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(self, "-test.run=^TestBenchParentProcess$", "-test.count=1")
	parent.Env = append(os.Environ(), parentEnv+"=1")
	var out bytes.Buffer
	parent.Stdout, parent.Stderr = &out, &out
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()
	var child procstat.Proc
	for deadline := time.Now().Add(60 * time.Second); child.PID == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the bench started no child process in 60 s")
		}
		kids, err := procstat.Children(parent.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kids { // the bench child: started with childEnv (the parent may start others)
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", k.PID))
			if err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+childEnv+"=")) {
				child = k
			}
		}
	}
	// the child runs its bench (not only the start of the process) before its parent dies
	time.Sleep(time.Second)
	if !child.Alive() {
		st, err := procstat.ReadStat(child.PID)
		t.Fatalf("the child %d ended on its own (%+v, %v); the parent wrote:\n%s", child.PID, st, err, out.Bytes())
	}
	defer func() { // never leave it behind, whatever the outcome
		if child.Alive() {
			_ = syscall.Kill(child.PID, syscall.SIGKILL)
		}
	}()
	t0 := time.Now()
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	for child.Alive() {
		if time.Since(t0) > 5*time.Second {
			t.Fatalf("the child %d still runs 5 s after its parent was SIGKILLed", child.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the child %d was gone %v after its parent's SIGKILL", child.PID, time.Since(t0).Round(100*time.Microsecond))
}
