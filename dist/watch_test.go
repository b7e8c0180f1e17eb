package dist

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envWatchHelper makes TestWatchHelper, in a process of this test binary, act as a worker
// that watches its launcher's pipe.
const envWatchHelper = "DIST_TEST_WATCH_HELPER"

// TestWatchHelper is the worker of TestWatchLauncherEndsTheWorker; otherwise it does nothing.
func TestWatchHelper(t *testing.T) {
	if os.Getenv(envWatchHelper) == "" {
		return
	}
	if err := WatchLauncher(); err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(3)
	}
	if _, ok := os.LookupEnv(EnvLauncherFD); ok {
		os.Stdout.WriteString("error: " + EnvLauncherFD + " is still set\n")
		os.Exit(4)
	}
	os.Stdout.WriteString("watching\n")
	time.Sleep(2 * time.Minute)
	os.Exit(0)
}

// TestWatchLauncherEndsTheWorker: a real worker process watching a pipe lives while the
// pipe's write end is open and is SIGKILLed (by itself) once this process, standing for the
// launcher, closes it. No parent-death signal is involved: the parent lives on, so only the
// pipe can end the worker.
func TestWatchLauncherEndsTheWorker(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := exec.Command(os.Args[0], "-test.run=^TestWatchHelper$")
	c.Env = append(os.Environ(), envWatchHelper+"=1", EnvLauncherFD+"=3")
	c.ExtraFiles = []*os.File{r}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer func() { _ = c.Process.Kill() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "watching\n" {
		t.Fatalf("the worker did not start watching: %q", line)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("the worker ended while the launcher's end was open: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	w.Close()
	closed := time.Now()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("worker: %v, want death by SIGKILL", err)
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("worker: %v, want death by SIGKILL", err)
		}
		t.Logf("the worker was gone %v after the pipe closed", time.Since(closed).Round(time.Millisecond))
	case <-time.After(30 * time.Second): // a hang guard, not a speed check
		t.Fatal("the worker still runs 30 s after the launcher's end of the pipe closed")
	}
}

// TestWatchLauncherBadValue: a variable that names no pipe is one error line naming it;
// without the variable nothing is watched.
func TestWatchLauncherBadValue(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct{ v, want string }{
		{"x", `SPECTRACLIP_LAUNCHER_FD="x": not a descriptor above 2`},
		{"1", `SPECTRACLIP_LAUNCHER_FD="1": not a descriptor above 2`},
		{strconv.Itoa(int(f.Fd())), "is not the launcher's pipe"},
		{"987654", "descriptor 987654 is not the launcher's pipe"},
	} {
		t.Setenv(EnvLauncherFD, c.v)
		err := WatchLauncher()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%s: %v, want one line with %q", EnvLauncherFD, c.v, err, c.want)
		}
	}
	os.Unsetenv(EnvLauncherFD)
	if err := WatchLauncher(); err != nil {
		t.Errorf("without %s: %v", EnvLauncherFD, err)
	}
}
