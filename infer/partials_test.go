package infer

import (
	"bufio"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPartialChild is the child process of TestInferRemovesStalePartials: it makes a staging
// folder beside $SC_PARTIAL_OUT the way infer does, locks it, writes a frame into it, says
// "ready" and waits to be killed.
func TestPartialChild(t *testing.T) {
	out := os.Getenv("SC_PARTIAL_OUT")
	if out == "" {
		t.Skip("run by TestInferRemovesStalePartials")
	}
	d, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "frame_000_scores.npy"), []byte("half a frame"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
}

// TestInferRemovesStalePartials: the staging folders an infer killed with SIGKILL leaves
// beside its output (#25 item 4), and unlocked ones as older versions left them, are removed
// by the next infer into that output; a staging folder a live infer holds, another output's,
// a link named like one (and what it points to) and a plain file named like one are left
// as they are.
func TestInferRemovesStalePartials(t *testing.T) {
	if os.Getenv("SC_PARTIAL_OUT") != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	runDir := trainTiny(t, dir, "pca", 1)
	in := filepath.Join(dir, "in")
	writeFrames(t, in, 2, 32, 32, 11)
	parent := filepath.Join(dir, "res")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(parent, "maps")
	prefix := ".maps.partial-"

	// a real infer-like process killed while it held its staging folder
	cmd := exec.Command(os.Args[0], "-test.run=^TestPartialChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SC_PARTIAL_OUT="+out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := globOne(t, filepath.Join(parent, prefix+"*"))

	mk := func(name string) string {
		p := filepath.Join(parent, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 100)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(p, "frame_001_scores.npy"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unlocked := mk(prefix + "old123")     // as an infer before the lock left it
	live := mk(prefix + "live456")        // a live infer's: locked by this process
	other := mk(".other.partial-789")     // another output's
	outside := mk("elsewhere")            // what a link points to
	oldStaging := mk(".maps.staging-old") // made but never locked and renamed, long ago
	newStaging := mk(".maps.staging-new") // maybe being renamed right now
	long := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(oldStaging, long, long); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(parent, prefix+"link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(parent, prefix+"file")
	if err := os.WriteFile(plain, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 2; round++ {
		if _, err := Run(runDir, in, out, Options{}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, p := range []string{killed, unlocked, oldStaging} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("round %d: the stale %s is still there", round, filepath.Base(p))
			}
		}
		for _, p := range []string{live, other, outside, newStaging} {
			if _, err := os.Stat(filepath.Join(p, "frame_001_scores.npy")); err != nil {
				t.Errorf("round %d: %s lost its file: %v", round, filepath.Base(p), err)
			}
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("round %d: the link %s was removed or replaced (%v)", round, link, err)
		}
		if b, err := os.ReadFile(plain); err != nil || string(b) != "not a folder" {
			t.Errorf("round %d: the file %s changed (%v)", round, plain, err)
		}
		if _, err := os.Stat(filepath.Join(out, "results.json")); err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		ents, _ := os.ReadDir(parent)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 7 {
			t.Errorf("round %d: %s holds %v, want maps and the six it must keep", round, parent, names)
		}
	}
}

func globOne(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) != 1 {
		t.Fatalf("%s: %v", pattern, m)
	}
	return m[0]
}
