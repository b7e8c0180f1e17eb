package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/torch"
)

// BinPath is the spectraclip binary TestMain builds for every test of this package.
var BinPath string

// peakRSS is the built testdata/peakrss.c, which measures a run's own peak RSS (RunOptions.PeakRSS).
var peakRSS string

// libDir holds the copy of libspectraclip_c.so that runs load ("" with $CHAOS_BIN).
var libDir string

// repoRoot is the module root (the parent of this package's directory).
var repoRoot string

// ASLimit is the address-space limit (prlimit --as) the CLI runs under: enough for LibTorch
// and a small training run, far below what a reader that believes a bomb's header would take.
// It is 3 GiB above the address space this build's LibTorch takes at start, which this test
// process (linking the same libraries) measures: about 0.9 GB with Debian's 1.13, 2.7 GB with
// PyPI's CUDA 2.11, which maps cuDNN, cuBLAS and NCCL whether or not there is a GPU.
var ASLimit int64 = 4 << 30

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if vm := procstat.MB("VmSize:"); vm > 0 {
		ASLimit = int64(vm*(1<<20)) + 3<<30
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	repoRoot = filepath.Dir(wd)
	tmp, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(tmp)
	peakRSS = filepath.Join(tmp, "peakrss")
	if out, err := exec.Command("cc", "-O2", "-o", peakRSS, filepath.Join(wd, "testdata", "peakrss.c")).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: building testdata/peakrss.c: %v\n%s", err, out)
		return 2
	}
	if b := os.Getenv("CHAOS_BIN"); b != "" {
		// A binary built elsewhere (e.g. for a machine without Go).
		BinPath = b
		return m.Run()
	}
	BinPath = filepath.Join(tmp, "spectraclip")
	build := exec.Command("go", "build", "-o", BinPath, "./cmd/spectraclip")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: building the CLI: %v\n%s", err, out)
		return 2
	}
	// Keep a copy of the C shim the binary was linked against: a rebuild of build/ during a
	// long run must not change (or truncate) the library under running cases. The binary's
	// RUNPATH yields to LD_LIBRARY_PATH.
	lib, err := os.ReadFile(filepath.Join(repoRoot, torch.BuildDir, "libspectraclip_c.so"))
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "libspectraclip_c.so"), lib, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: copying the C shim: %v\n", err)
		return 2
	}
	libDir = tmp
	return m.Run()
}

// Result is what one CLI run did.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Exit           int    // exit status; -1 when killed by a signal
	Signal         string // the signal that ended it, if any
	TimedOut       bool
	Elapsed        time.Duration
	MaxRSSKiB      int64
}

// RunOptions control one CLI run.
type RunOptions struct {
	Dir     string        // working directory (default: a fresh temporary directory)
	Env     []string      // extra environment (KEY=VALUE), added to a minimal base
	Timeout time.Duration // default 120 s
	ASBytes int64         // address-space limit; default ASLimit, < 0: none
	Stdin   string
	// PeakRSS measures the run's own peak RSS through peakrss (a small C parent that forks
	// it): ru_maxrss of a process this (large) test process starts also counts the test
	// process's own peak, since Go starts children with vfork.
	PeakRSS bool
}

// baseEnv is the environment every run starts from: no SPECTRACLIP_* of the caller, one
// LibTorch thread, a private plugin cache.
func baseEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SPECTRACLIP_") || strings.HasPrefix(kv, "OMP_NUM_THREADS=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "OMP_NUM_THREADS=1", "SPECTRACLIP_PLUGIN_CACHE="+filepath.Join(dir, ".plugin-cache"))
	if libDir != "" {
		env = append(env, "LD_LIBRARY_PATH="+libDir+string(os.PathListSeparator)+os.Getenv("LD_LIBRARY_PATH"))
	}
	return env
}

// RunCLI runs the built CLI with args under prlimit --as and a timeout.
func RunCLI(t testing.TB, o RunOptions, args ...string) Result {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Timeout == 0 {
		o.Timeout = 120 * time.Second
	}
	if o.ASBytes == 0 {
		o.ASBytes = ASLimit
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	name, argv := BinPath, args
	if o.ASBytes > 0 {
		name, argv = "prlimit", append([]string{fmt.Sprintf("--as=%d", o.ASBytes), "--", BinPath}, args...)
	}
	var rssFile string
	if o.PeakRSS {
		rssFile = filepath.Join(t.TempDir(), "peak-rss")
		name, argv = peakRSS, append([]string{rssFile, name}, argv...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = o.Dir
	cmd.Env = append(baseEnv(o.Dir), o.Env...)
	cmd.Stdin = strings.NewReader(o.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	r.TimedOut = ctx.Err() != nil
	if ps := cmd.ProcessState; ps != nil {
		r.Exit = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Signal = ws.Signal().String()
		}
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSSKiB = ru.Maxrss
		}
		if rssFile != "" {
			b, err := os.ReadFile(rssFile)
			kib, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil || perr != nil {
				t.Fatalf("peakrss wrote no peak RSS for %q: %v %v", args, err, perr)
			}
			r.MaxRSSKiB = kib
		}
	} else if err != nil {
		r.Exit = -1
		r.Stderr += "\n(could not start: " + err.Error() + ")"
	}
	return r
}
