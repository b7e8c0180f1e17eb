package main

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/dataset"
)

// syncBuffer is a bytes.Buffer safe to write from the serve goroutine and read here.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeAndScore: `serve` on a trained run, `score --server` over HTTP and gRPC gives
// the same score map as `infer` on the same file, bit for bit; SIGTERM stops serve with
// exit status 0 (a nil error); loadtest against it answers every request.
func TestServeAndScore(t *testing.T) {
	dir, runDir, file := servableRun(t)
	mustRun(t, "infer", "--run", runDir, "--input", file, "--out", filepath.Join(dir, "infer"))
	want, err := os.ReadFile(filepath.Join(dir, "infer", "cam_scores.npy"))
	if err != nil {
		t.Fatal(err)
	}

	shmDir := t.TempDir()
	srv := startServeInProcess(t, "--run", runDir, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--shm-dir", shmDir)
	m := []string{"", srv.http, srv.grpc}
	for _, server := range []string{"http://" + m[1], "grpc://" + m[2]} {
		maps := t.TempDir()
		line := mustRun(t, "score", "--server", server, "--map-out", maps, file)
		if !strings.Contains(line, `"file":"`+file+`"`) || !strings.Contains(line, `"anomaly_pixels":`) {
			t.Errorf("%s: score printed %q", server, line)
		}
		got, err := os.ReadFile(filepath.Join(maps, "cam_scores.npy"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the served score map differs from infer's", server)
		}
	}
	if _, err := runCLI(t, "score", "--server", "http://"+m[1], filepath.Join(dir, "missing.npy")); err == nil || !strings.Contains(err.Error(), "missing.npy") {
		t.Errorf("a missing file: %v", err)
	}
	lt := mustRun(t, "loadtest", "--server", "grpc://"+m[2], "--clients", "1,3", "--requests", "6", "--size", "32x32")
	if !regexp.MustCompile(`(?m)^\| 1 \| 6 \| 6 \| 0 \|`).MatchString(lt) || !regexp.MustCompile(`(?m)^\| 3 \| 6 \| 6 \| 0 \|`).MatchString(lt) {
		t.Errorf("loadtest table:\n%s", lt)
	}
	// through shared memory: the cube written once, named by every request, removed after
	lt = mustRun(t, "loadtest", "--server", "grpc://"+m[2], "--clients", "2", "--requests", "4", "--warmup", "1", "--size", "32x32", "--shm", shmDir)
	if !regexp.MustCompile(`(?m)^\| 2 \| 4 \| 4 \| 0 \|`).MatchString(lt) {
		t.Errorf("loadtest --shm table:\n%s", lt)
	}
	if left, _ := os.ReadDir(shmDir); len(left) != 0 {
		t.Errorf("loadtest --shm left %d file(s) in %s", len(left), shmDir)
	}
	srv.stop(t)
}

// TestServeFlagErrors: --max-batch 0 (which used to mean the default 8), --queue 0 and a
// negative --max-wait are refused with an error naming the flag, before the run is opened.
func TestServeFlagErrors(t *testing.T) {
	dir := t.TempDir() // not a run: a flag error must come first
	for _, c := range [][]string{
		{"--max-batch", "0", "--max-batch 0: must be ≥ 1"},
		{"--max-batch", "-2", "--max-batch -2: must be ≥ 1"},
		{"--queue", "0", "--queue 0: must be ≥ 1"},
		{"--max-wait", "-1ms", "--max-wait -1ms: must be ≥ 0"},
		{"--workers", "-1", "--workers -1: must be ≥ 1"},
		{"--threads", "-3", "--threads -3: must be ≥ 1"},
	} {
		_, err := runCLI(t, "serve", "--run", dir, "--addr", "127.0.0.1:0", "--grpc-addr", "", c[0], c[1])
		if err == nil || !strings.Contains(err.Error(), c[2]) {
			t.Errorf("serve %s %s: %v, want an error saying %q", c[0], c[1], err, c[2])
		}
	}
}

// inProcessServe is a `serve` started in this process with args (after "serve"), and the
// addresses it printed.
type inProcessServe struct {
	http, grpc string
	done       chan error
}

// startServeInProcess runs `spectraclip --log-level warn serve args...` in this process and waits
// (up to 60 s) until it says where it listens.
func startServeInProcess(t *testing.T, args ...string) *inProcessServe {
	t.Helper()
	var out, errOut syncBuffer
	cmd := NewRootCmd(&out, &errOut)
	cmd.SetArgs(append([]string{"--log-level", "warn", "serve"}, args...))
	s := &inProcessServe{done: make(chan error, 1)}
	go func() { s.done <- cmd.Execute() }()
	re := regexp.MustCompile(`http (\S+) grpc (\S+)`)
	var m []string
	for i := 0; i < 600 && m == nil; i++ {
		select {
		case err := <-s.done:
			t.Fatalf("serve ended: %v %s", err, errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		m = re.FindStringSubmatch(out.String())
	}
	if m == nil {
		t.Fatalf("serve did not say where it listens: %q", out.String())
	}
	s.http, s.grpc = m[1], m[2]
	return s
}

// stop sends this process SIGTERM (serve drains and returns) and checks that serve ends
// without an error within 60 s.
func (s *inProcessServe) stop(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop within 60 s of SIGTERM")
	}
}

// servableRun trains a one-epoch pca run on tiny data in a new folder dir and writes a fresh
// random 32×32×61 cube to score as dir/cam.npy.
func servableRun(t *testing.T) (dir, runDir, file string) {
	t.Helper()
	dir = t.TempDir()
	runDir = filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "pca", "--out", runDir}, tiny(dir, "1")...)...)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	cube := make([]float32, 32*32*61)
	for i := range cube {
		cube[i] = rng.Float32()
	}
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, cube, 32, 32, 61); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "cam.npy")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, runDir, file
}
