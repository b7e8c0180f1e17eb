package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/config"
)

// TestFlagBounds: thread, worker, batch, size and point-count flags beyond their documented
// maxima are refused up front, naming the flag and the bound (before: infer --threads 100000
// did not end in 60 s, a 10^6-point sweep resolved its points silently for minutes, sweep -c
// FIFO blocked forever and -c /dev/zero ran out of memory).
func TestFlagBounds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sweep.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := fmt.Sprint(config.MaxThreads() + 1)
	out := filepath.Join(dir, "sw")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"infer", "--run", filepath.Join(dir, "none"), "--input", dir, "--out", out, "--threads", "100000"}, []string{"--threads", "100000", fmt.Sprint(config.MaxThreads())}},
		{[]string{"infer", "--run", filepath.Join(dir, "none"), "--input", dir, "--out", out, "--batch", "100000"}, []string{"--batch", "1024"}},
		{[]string{"sweep", "--variant", "pca", "--seeds", "1000000", "--out", out}, []string{"1000000 points", "10000", "--max-points"}},
		{[]string{"sweep", "--variant", "pca,drcnn", "--seeds", "3", "--max-points", "5", "--out", out}, []string{"6 points", "2 trainruns", "3 seeds", "5"}},
		{[]string{"sweep", "--variant", "pca", "--seeds", "100000000000", "--out", out}, []string{"seeds", "1000000"}},
		{[]string{"sweep", "--variant", "pca", "--max-points", "0", "--out", out}, []string{"--max-points"}},
		{[]string{"sweep", "--variant", "pca", "--threads", huge, "--out", out}, []string{"--threads", huge}},
		{[]string{"sweep", "--variant", "pca", "--workers", huge, "--out", out}, []string{"--workers", huge}},
		{[]string{"sweep", "-c", fifo, "--out", out}, []string{fifo, "named pipe"}},
		{[]string{"sweep", "-c", "/dev/zero", "--out", out}, []string{"/dev/zero", "character device"}},
		{[]string{"train", "-c", fifo, "--out", out}, []string{fifo, "named pipe"}},
		{[]string{"bench", "--threads", huge}, []string{"--threads", huge}},
		{[]string{"bench", "--batch", "100000"}, []string{"--batch", "1024"}},
		{[]string{"bench", "--size", "100000x100000"}, []string{"--size", "4096"}},
		{[]string{"bench", "--iters", "1000000000"}, []string{"--iters", "10000"}},
		{[]string{"export-detector", "--builtin", "--out", filepath.Join(dir, "d.pt"), "--image-size", "20000"}, []string{"--image-size", "1024"}},
		{[]string{"synth", "--out", filepath.Join(dir, "synth"), "--frames", "100000000"}, []string{"frames", "100000000", "10000"}},
		{[]string{"train", "--variant", "pca", "--out", out, "--nproc-per-node", "100000"}, []string{"--nproc-per-node", "100000"}},
	} {
		_, err := runCLI(t, tc.args...)
		if err == nil {
			t.Errorf("%s: accepted", strings.Join(tc.args, " "))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", strings.Join(tc.args, " "), err, w)
			}
		}
	}
	for _, p := range []string{out, filepath.Join(dir, "synth")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("a refused command left %s behind", p)
		}
	}
}
