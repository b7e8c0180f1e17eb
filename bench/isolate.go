package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/spectraclip/spectraclip/internal/procattr"
)

// childEnv carries a child's options (JSON) from runChild to ChildMain in the child.
const childEnv = "SPECTRACLIP_BENCH_CHILD"

// ChildMain is the entry point of an isolated bench's child process. Run with
// Options.Isolate re-runs the running executable (os.Executable) once per variant with its
// options in the environment; every program that may run an isolated bench (the spectraclip
// binary, and any test binary whose tests do) calls ChildMain first thing in main (TestMain
// for a test binary) and, when isChild, exits with code at once:
//
//	if code, isChild := bench.ChildMain(); isChild {
//		os.Exit(code)
//	}
//
// In a child, ChildMain measures its one variant, prints its Report as JSON on stdout and
// returns the exit status with isChild true; anywhere else it does nothing and returns
// (0, false). Nothing else in this package acts on the environment: linking it never turns
// a program into a bench child by itself.
func ChildMain() (code int, isChild bool) {
	spec, ok := os.LookupEnv(childEnv)
	if !ok {
		return 0, false
	}
	_ = os.Unsetenv(childEnv) // not inherited by anything the child starts
	return childMain(spec), true
}

func childMain(spec string) int {
	var o Options
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %s: %v\n", childEnv, err)
		return 2
	}
	o.Isolate = false
	rep, err := Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %v\n", err)
		return 1
	}
	return 0
}

// runChild measures one variant in a child process of the running executable and
// returns its figures with its own peak RSS (and CUDA peak bytes).
func runChild(variant string, o Options) (*Variant, int64, error) {
	if _, ok := os.LookupEnv(childEnv); ok {
		// this process was started as a child but never ran ChildMain: starting another
		// child would re-run the same program again, without end
		return nil, 0, fmt.Errorf("child process: this program was started as an isolated bench's child (%s) but does not call bench.ChildMain first", childEnv)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, 0, fmt.Errorf("child process: %w", err)
	}
	o.Variants, o.Isolate = []string{variant}, false
	spec, err := json.Marshal(o)
	if err != nil {
		return nil, 0, err
	}
	// ChildMain ignores the arguments; a test binary that lacks the hook runs none of its
	// tests with them (rather than all of them) and fails at once with an unreadable report
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// The child dies with this process, however it ends (SIGKILL included): the kernel
	// SIGKILLs it when the thread that started it exits (Pdeathsig), so the goroutine stays
	// on that thread until the child has been waited for.
	cmd.SysProcAttr = procattr.DieWithParent()
	runtime.LockOSThread()
	runErr := cmd.Run()
	runtime.UnlockOSThread()
	os.Stderr.Write(stderr.Bytes()) // the child's warnings, as one process would print them
	if runErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, 0, fmt.Errorf("child process %s: %v: %s", exe, runErr, msg)
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || len(rep.Variants) != 1 {
		return nil, 0, fmt.Errorf("child process %s: unreadable report %q (%v; does the program call bench.ChildMain first?)", exe, truncate(stdout.String(), 200), err)
	}
	v := rep.Variants[0]
	v.PeakRSSMB = rep.PeakRSSMB
	return &v, rep.CUDAPeak, nil
}

// resetPeakRSS restarts the process's VmHWM at its current RSS (Linux ≥ 4.0); where that
// fails the peak simply keeps counting from the process start.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
