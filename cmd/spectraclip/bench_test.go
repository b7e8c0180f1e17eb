package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

type benchJSON struct {
	Variants []struct {
		Variant   string  `json:"variant"`
		FPS       float64 `json:"fps"`
		PeakRSSMB float64 `json:"peak_rss_mb"`
	} `json:"variants"`
	Isolated bool `json:"isolated"`
}

func checkIsolatedBench(t *testing.T, how, out string) {
	t.Helper()
	var r benchJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%s: bench json %q: %v", how, out, err)
	}
	if !r.Isolated || len(r.Variants) != 1 || r.Variants[0].Variant != "pca" || r.Variants[0].FPS <= 0 || r.Variants[0].PeakRSSMB <= 0 {
		t.Fatalf("%s: the isolated bench's child reported no figures: %+v", how, r)
	}
}

// The bench command isolates its variant by default: its child process re-runs this
// executable, which must answer as a bench child (bench.ChildMain, called by main and by
// this test binary's TestMain) and report its figures.
func TestBenchIsolatedChild(t *testing.T) {
	args := []string{"bench", "--variant", "pca", "--batch", "1", "--size", "16x16", "--iters", "1", "--warmup", "0", "--train-iters", "0", "--threads", "1", "--device", "cpu", "--json"}
	// in this process: the child is this test binary, started through TestMain
	checkIsolatedBench(t, "in process", mustRun(t, args...))
	// as the program: main runs the bench command, its child starts as the program again
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envAsMain+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spectraclip %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	checkIsolatedBench(t, "as main", stdout.String())
}
