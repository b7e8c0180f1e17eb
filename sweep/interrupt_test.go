package sweep

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSigtermWhileResolvingPoints: a SIGTERM while a large sweep (--max-points raised to
// 100000 points, some 3 ms each to resolve) resolves its points ends the real `spectraclip
// sweep` process within 2 s, with the one error line and exit status 1 of a sweep
// interrupted while it runs, and leaves nothing behind: no plan.json, and the sweep
// directory it created is gone (before: the SIGTERM was only looked at once every point
// was resolved, minutes later).
func TestSigtermWhileResolvingPoints(t *testing.T) {
	bin := spectraclipBinary(t)
	dir := filepath.Join(t.TempDir(), "sweep")
	cmd := exec.Command(bin, "sweep", "--variant", "pca", "--seeds", "100000", "--max-points", "100000", "--out", dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// the point count is logged before the points are resolved; the lock file is taken
	// right before
	var log []string
	for deadline := time.After(60 * time.Second); ; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the sweep ended before it was signalled: %s", strings.Join(log, "\n"))
			}
			log = append(log, l)
			continue
		case <-deadline:
			t.Fatalf("no sweep lock in %s after 60 s: %s", dir, strings.Join(log, "\n"))
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(filepath.Join(dir, ".sweep.lock")); err == nil {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // well into the points
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for l := range lines {
			log = append(log, l)
		}
		done <- cmd.Wait()
	}()
	select {
	case err = <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("the sweep still ran 2 s after SIGTERM")
	}
	took := time.Since(t0)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1 (as a sweep interrupted while it runs)", err)
	}
	last := log[len(log)-1]
	if !strings.HasPrefix(last, "error: sweep interrupted") || !strings.Contains(last, "rerun the same command") {
		t.Errorf("last line %q, want the interrupted sweep's error line", last)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("the interrupted sweep left %s behind (%d entries)", dir, len(entries))
	}
	t.Logf("ended %v after SIGTERM: %s", took.Round(time.Millisecond), last)
}
