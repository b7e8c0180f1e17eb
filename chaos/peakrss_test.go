package chaos

import (
	"os/exec"
	"testing"
)

// TestPeakRSSMeasuresTheRunOnly checks the harness's RSS measure against what a run is known to
// hold: with 512 MiB touched in this test process, a process that holds nothing (sleep) must
// read under 64 MiB, and one that fills 300 MiB (Python's bytearray of that size) at least 300
// MiB and under 512 MiB. Plain ru_maxrss from this process's own children reads this process's
// peak for both (checked too, so the test shows why the wrapper exists).
func TestPeakRSSMeasuresTheRunOnly(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal(err)
	}
	ballast := make([]byte, 512<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		min, max int64 // KiB
	}{
		{"nothing", []string{"sleep", "0.1"}, 0, 64 << 10},
		{"300 MiB", []string{py, "-c", "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"}, 300 << 10, 512 << 10},
	} {
		r := runPlain(t, tc.args, true)
		if r.Exit != 0 || r.MaxRSSKiB < tc.min || r.MaxRSSKiB >= tc.max {
			t.Errorf("%s: exit %d, peak RSS %d KiB; want [%d, %d) KiB\n%s", tc.name, r.Exit, r.MaxRSSKiB, tc.min, tc.max, r.Stderr)
		}
		if plain := runPlain(t, tc.args, false); plain.MaxRSSKiB < 512<<10 {
			t.Logf("%s: plain ru_maxrss %d KiB no longer counts this process's 512 MiB", tc.name, plain.MaxRSSKiB)
		}
	}
	_ = ballast[len(ballast)-1]
}

// runPlain runs args (not the CLI) the way RunCLI runs the CLI, without an address-space limit.
func runPlain(t *testing.T, args []string, peak bool) Result {
	t.Helper()
	saved := BinPath
	BinPath = args[0]
	defer func() { BinPath = saved }()
	return RunCLI(t, RunOptions{ASBytes: -1, PeakRSS: peak}, args[1:]...)
}
