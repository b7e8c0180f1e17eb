package serve

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOptionsValidate: Options.Validate, the one check of a server's options (New runs it,
// serve's command too), takes zero fields as their defaults and refuses the rest with the
// errors of serve's flags (Flags.Check), opening nothing.
func TestOptionsValidate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	runDir := "not/opened" // Validate opens nothing
	for _, c := range []struct {
		o    Options
		want string // "" = valid
	}{
		{Options{Run: runDir}, ""},
		{Options{Run: runDir, MaxWait: NoWait, MaxBytes: 1000, MaxInflight: 4096, Workers: 2, Threads: 3, ShmDir: t.TempDir()}, ""},
		{Options{Run: runDir, MaxBytes: MaxCubeMB << 20, MaxInflight: MaxCubeMB << 20}, ""},
		{Options{}, "--run is required"},
		{Options{Run: runDir, Workers: -1}, "--workers -1: must be ≥ 1 (0 = automatic)"},
		{Options{Run: runDir, Threads: -2}, "--threads -2: must be ≥ 1 (0 = automatic)"},
		{Options{Run: runDir, Threads: MaxThreads + 1}, "--threads 257: must be ≤ 256"},
		{Options{Run: runDir, Timeout: -time.Second}, "--timeout -1s: must be > 0"},
		{Options{Run: runDir, MaxBatch: MaxMaxBatch + 1}, "--max-batch 1025: must be ≤ 1024"},
		{Options{Run: runDir, Queue: -1}, "--queue -1: must be ≥ 1"},
		{Options{Run: runDir, MaxBytes: 2 << 20, MaxInflight: 1 << 20}, "--max-inflight-mb 1: must be ≥ --max-cube-mb (2)"},
		{Options{Run: runDir, ShmDir: file}, "--shm-dir " + file + ": not a folder"},
	} {
		err := c.o.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	// New refuses what Validate refuses, before the run is opened
	if _, err := New(Options{Run: runDir, Workers: -1}); err == nil || !strings.HasPrefix(err.Error(), "--workers -1") {
		t.Errorf("New with --workers -1: %v", err)
	}
}

// TestLoadTestChecksFirst: LoadTest refuses bad options, naming loadtest's flags, before
// it connects (nothing listens on the address given).
func TestLoadTestChecksFirst(t *testing.T) {
	ok := LoadTestOptions{Server: "http://127.0.0.1:1", Size: "8x8", Bands: 3, Clients: []int{1}, Requests: 1}
	for _, c := range []struct {
		edit func(*LoadTestOptions)
		want string
	}{
		{func(o *LoadTestOptions) { o.Server = "" }, "--server is required"},
		{func(o *LoadTestOptions) { o.Size = "0x8" }, `--size "0x8"`},
		{func(o *LoadTestOptions) { o.Bands = 0 }, "--bands 0: must be ≥ 1"},
		{func(o *LoadTestOptions) { o.BenchVariant, o.Bench.Batch = "pca", 0 }, "--bench-batch 0: must be ≥ 1"},
		{func(o *LoadTestOptions) { o.BenchVariant, o.Bench.Batch, o.Bench.Iters = "pca", 1, 1<<30 }, "--bench-iters 1073741824"},
	} {
		o := ok
		c.edit(&o)
		_, err := LoadTest(context.Background(), o)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
}
